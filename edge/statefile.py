"""Small files in the state directory, written so that others cannot read them and a crash
or a planted symlink cannot corrupt them.

The state directory holds what the device must not leak or lose (the outbox, what detectors
learnt, the command replay guard): a directory the runtime creates is ``0700`` and every
file in it ``0600``, whatever the umask. ``write_atomically`` writes a whole file to a new
temporary name in the same directory (``O_EXCL``: never through an existing file or
symlink), fsyncs it, renames it over the old one and fsyncs the directory, so that after a
power cut the file is the old one or the new one, never a mix or nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and its parents) if missing; the directory itself ``0700``.

    A directory that already exists keeps its mode: it is the user's (or the installer's)
    and may be shared on purpose; the files in it are ``0600`` all the same.
    """
    directory = Path(path)
    if not directory.is_dir():
        directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        # mkdir's mode is masked by the umask; the directory is ours, so set it exactly.
        os.chmod(directory, DIR_MODE)
    return directory


def private_file(path: str | Path) -> None:
    """Create ``path`` empty and ``0600`` if missing, never through a symlink; an existing
    regular file of ours loses any group and other permission bits."""
    flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        if os.fstat(fd).st_mode & 0o077:
            try:
                os.fchmod(fd, FILE_MODE)
            except PermissionError as exc:  # someone else's file we may write: say so
                log.warning("%s is readable by others and not ours to change (%s): "
                            "chmod 600 it", path, exc)  # fmt: skip
    finally:
        os.close(fd)


def write_atomically(
    path: str | Path, data: bytes, *, durable: bool = True, mode: int = FILE_MODE
) -> None:
    """Replace ``path`` with ``data``: a ``0600`` temporary file in the same directory,
    fsynced, renamed over it, and the directory fsynced so that the rename survives a
    power cut. ``durable=False`` skips both fsyncs: readers still see the old file or the
    new one, never a mix, but a power cut may leave the old one (for a file rewritten every
    few seconds, where syncing would only wear the flash). ``mode``: for a file meant for
    others to read (node_exporter's textfile), set on the temporary file before the rename,
    so the file never appears with other permissions."""
    target = Path(path)
    fd, scratch = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp: O_EXCL, mode 0600
            if mode != FILE_MODE:
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(scratch, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(scratch)
        raise
    if durable:
        fsync_dir(target.parent)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename or a new file in ``directory`` durable (a no-op where the platform
    cannot open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
