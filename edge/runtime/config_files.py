"""The config file and its two neighbours: ``edge.toml.new`` (staged) and
``edge.toml.previous`` (what a rollback restores).

Every write goes to a fresh temporary file in the same directory, is synced, renamed over
its target and the directory synced, so at every moment ``edge.toml`` is one whole config,
the old or the new, whatever a power cut interrupts. New files take the current file's mode
(0640 under the installer: the service's group reads it, nobody else).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_version(sha256: str | None) -> str | None:
    """What the birth message and the status call a config's version: its sha256's first 12
    hex digits (short enough to read in a fleet view, long enough not to collide)."""
    return sha256[:12] if sha256 else None


class ConfigFiles:
    """``path`` and its ``.new`` and ``.previous`` files. Used on one thread at a time: the
    command worker stages, then the runtime's owner swaps or restores."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.new = self.path.with_name(self.path.name + ".new")
        self.previous = self.path.with_name(self.path.name + ".previous")

    def current(self) -> bytes:
        return self.path.read_bytes()

    def stage(self, text: str) -> None:
        """Write the config to apply as ``.new`` (OSError when the directory is read-only)."""
        self._write(self.new, text.encode("utf-8"))

    def swap(self) -> None:
        """The staged config becomes the config; the one it replaces becomes ``.previous``."""
        self._write(self.previous, self.current())
        os.replace(self.new, self.path)
        self._sync_directory()

    def restore(self) -> None:
        """``.previous`` becomes the config again (it stays, too)."""
        self._write(self.path, self.previous.read_bytes())

    def _write(self, target: Path, data: bytes) -> None:
        try:
            mode = self.path.stat().st_mode & 0o777
        except OSError:
            mode = 0o640
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # O_EXCL: never through a file (or a symlink) someone left at that name.
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
