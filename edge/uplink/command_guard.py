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

Every acceptance is written (``edge.statefile``: a new 0600 temporary file, fsync, rename,
fsync of the directory) before the command runs: a command that cannot be recorded is
refused. Used by the command worker only (one thread).
"""

from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from pathlib import Path

from edge.statefile import private_dir, write_atomically

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
        """Record an accepted command, durably, before it runs (OSError: not recorded, and
        the guard is as it was: the command does not run)."""
        ids = OrderedDict(self.ids)
        ids[request_id] = sent
        newest = sent if self.newest is None else max(self.newest, sent)
        floor = self.floor
        while len(ids) > SEEN:
            _, forgotten = ids.popitem(last=False)
            floor = forgotten if floor is None else max(floor, forgotten)
        self._save(newest, floor, ids)
        self.ids, self.newest, self.floor = ids, newest, floor

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

    def _save(self, newest: float | None, floor: float | None, ids: dict[str, float]) -> None:
        if self.path is None:
            return  # kept in memory only (no state directory)
        private_dir(self.path.parent)
        body = {"v": 1, "newest": newest, "floor": floor, "ids": ids}
        write_atomically(self.path, json.dumps(body, separators=(",", ":")).encode())


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
