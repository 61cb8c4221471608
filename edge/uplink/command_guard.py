"""The replay guard: which commands were accepted, kept in the state directory.

A signed command must not run twice, across restarts too, and with a clock that may not
be synchronised (most Pis have no RTC). The guard keeps, in ``<state_dir>/commands.json``:

- ``newest``: the newest ``ts`` (epoch seconds) of any accepted command. With the clock
  unsynchronised the device cannot judge a command's age, so a command must be newer than
  this: a captured one is refused however long the attacker waits.
- ``ids``: recent accepted ids with their ``ts``; an id is forgotten once the clock is
  synchronised and the command would be refused as stale anyway, or when more than
  ``SEEN`` are kept; then ``floor`` rises to the forgotten one's ``ts`` and nothing dated
  at or before it is accepted again.

Every acceptance is written (temporary file, fsync, rename, fsync of the directory; mode
0600) before the command runs: a command that cannot be recorded is refused. Used by the
command worker only (one thread).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)

SEEN = 1024  # ids kept; beyond it the floor rises
FILE = "commands.json"


class Replayed(ValueError):
    """A command the guard refuses: replayed, or not newer than what was accepted."""


class ReplayGuard:
    def __init__(self, state_dir: str | Path | None) -> None:
        self.path = Path(state_dir) / FILE if state_dir is not None else None
        self.newest: float | None = None
        self.floor: float | None = None
        self.ids: OrderedDict[str, float] = OrderedDict()
        if self.path is not None:
            self._load()

    def check(
        self, request_id: str, sent: float, *, synced: bool, now: float, max_age: float
    ) -> None:
        """Refuse (``Replayed``) a command already accepted, or one that cannot be told apart
        from one: older than the floor, or, unsynchronised, not newer than the newest."""
        if synced:
            self._forget(now - max_age)
        if request_id in self.ids:
            raise Replayed(f"replayed: id {request_id!r} was accepted already")
        if self.floor is not None and sent <= self.floor:
            raise Replayed("replayed: dated before the oldest command the device remembers")
        if not synced and self.newest is not None and sent <= self.newest:
            raise Replayed(
                "not newer than the last accepted command, and the device's clock is not "
                "synchronised to judge its age"
            )

    def accept(self, request_id: str, sent: float) -> None:
        """Record an accepted command, durably, before it runs (OSError: not recorded)."""
        self.ids[request_id] = sent
        self.newest = sent if self.newest is None else max(self.newest, sent)
        while len(self.ids) > SEEN:
            _, forgotten = self.ids.popitem(last=False)
            self.floor = forgotten if self.floor is None else max(self.floor, forgotten)
        try:
            self._save()
        except OSError:
            del self.ids[request_id]  # not recorded: the command does not run
            raise

    def _forget(self, before: float) -> None:
        """Drop ids that would be refused as stale anyway (clock synchronised)."""
        for request_id, sent in list(self.ids.items()):
            if sent < before:
                del self.ids[request_id]

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            newest, floor, ids = data.get("newest"), data.get("floor"), data.get("ids", {})
            self.newest = _number(newest)
            self.floor = _number(floor)
            for request_id, sent in ids.items():
                if isinstance(request_id, str) and _number(sent) is not None:
                    self.ids[request_id] = float(sent)
        except FileNotFoundError:
            return
        except (OSError, ValueError, AttributeError) as exc:
            # Nothing to go on: the age check (synchronised clock) still refuses old commands.
            log.error("command replay guard %s unreadable (%s); starting afresh", self.path, exc)

    def _save(self) -> None:
        if self.path is None:
            return  # kept in memory only (no state directory)
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = {"v": 1, "newest": self.newest, "floor": self.floor, "ids": dict(self.ids)}
        temporary = directory / f".{FILE}.tmp"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()  # never write through a symlink left there
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
