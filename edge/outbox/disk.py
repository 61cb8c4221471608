"""Room on the disk under the outbox: free space, the reserve file, the cap they imply.

SQLite needs free disk even to delete: an eviction writes its pages to the WAL before the
database file, so on a disk filled to the last block the very commit that would make room
fails, and so would every later one. Two things prevent that:

- **A cap from the disk.** At open, the outbox may use what its files hold plus the free
  space (less a twentieth of it, left to the rest of the system, and less the reserve);
  when that is below ``max_bytes`` it is the cap, and the WAL's checkpoint size is taken
  from it, so the WAL stays a small part of a small disk. Events it evicts are reported
  with reason ``disk``.
- **A reserve.** ``outbox.reserve`` (``RESERVE_FILE``) holds ``reserve_size`` bytes,
  allocated at open. When something else fills the disk anyway (``SQLITE_FULL``), the
  outbox deletes it and retries at once: that room lets the evicting commit write its WAL,
  after which the outbox lives within the pages it already has. Once free space is back,
  the reserve is taken again and the cap raised to what the disk allows.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

from edge.outbox.schema import PAGE_SIZE, wal_pages

log = logging.getLogger(__name__)

RESERVE_FILE = "outbox.reserve"
MIN_RESERVE = 256 * 1024
MAX_RESERVE = 8 * 1024 * 1024
OTHERS_SHARE = 0.05  # of the free space at open, left to the rest of the system
MIN_ROOM = 64 * 1024  # the least the disk cap is set to, even on a disk full at open
_CHUNK = 64 * 1024


def free_bytes(directory: Path) -> int | None:
    """Bytes an unprivileged writer may still use on ``directory``'s filesystem."""
    try:
        found = os.statvfs(directory)
    except OSError:
        return None
    return found.f_bavail * found.f_frsize


def wal_bytes(max_bytes: int) -> int:
    """The WAL's size at its checkpoint threshold for a cap of ``max_bytes``."""
    return wal_pages(max_bytes) * (PAGE_SIZE + 24) + 32


def reserve_size(max_bytes: int) -> int:
    """The reserve for a cap: three full WALs, within ``MIN_RESERVE`` and ``MAX_RESERVE``.

    What it must hold is the WAL of the commit that evicts when the disk is full: deleting
    rows writes 1.2 to 3.2 times their bytes to the WAL (measured on 4 KiB pages: 420 kB
    of rows deleted alone, 503 kB of WAL; the first eviction from a full outbox, 121 kB of
    rows, 392 kB), on top of the frames the WAL already holds (up to one full WAL), and
    their pages take the commit's new rows (``Outbox.max_batch`` keeps those under an
    eighth of a WAL). ``disk_step`` keeps the eviction to a sixteenth of the reserve.
    """
    return max(MIN_RESERVE, min(MAX_RESERVE, 3 * wal_bytes(max_bytes)))


def disk_step(reserve: int) -> int:
    """Bytes of rows one eviction under the disk's cap frees beyond the commit's own new
    rows: its WAL (at most 3.2 times what it deletes) then fits in the reserve with a
    third to spare."""
    return reserve // 16


def disk_room(directory: Path, held: int, max_bytes: int) -> tuple[int, int]:
    """What the outbox may use here, and its reserve: ``(room, reserve)``; room 0 when the
    configured ``max_bytes`` fits anyway (or the filesystem cannot say).

    ``held`` is what the outbox's files and its reserve hold now: room they already have.
    """
    free = free_bytes(directory)
    if free is None:
        return 0, reserve_size(max_bytes)
    disk = held + free
    reserve = reserve_size(min(max_bytes, disk) if max_bytes > 0 else disk)
    room = max(MIN_ROOM, disk - int(free * OTHERS_SHARE) - reserve)
    if 0 < max_bytes <= room:
        return 0, reserve
    return room, reserve_size(room)


class Reserve:
    """The reserve file: ``take`` allocates it, ``release`` deletes it (a full disk)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    @property
    def held(self) -> int:
        """Bytes the file holds now (0: released)."""
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def take(self) -> bool:
        """Allocate the reserve if it is not; False (and no file) when there is no room."""
        if self.held >= self.size:
            return True
        flags = os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            log.warning("cannot create the outbox's disk reserve %s: %s", self.path, exc)
            return False
        try:
            _allocate(fd, self.size)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.release()
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                log.warning("cannot allocate the outbox's disk reserve %s: %s", self.path, exc)
            return False
        os.close(fd)
        return True

    def release(self) -> bool:
        """Delete the reserve; True when it held anything."""
        held = self.held
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        return held > 0


def _allocate(fd: int, size: int) -> None:
    """Make the file own ``size`` bytes of disk: ``posix_fallocate`` (no data written: no
    flash wear), else zeros where the filesystem cannot allocate without writing."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    except AttributeError:  # no posix_fallocate on this platform
        pass
    zeros = bytes(_CHUNK)
    written = 0
    while written < size:
        written += os.write(fd, zeros[: min(_CHUNK, size - written)])
