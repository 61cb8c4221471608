"""``edge outbox stats`` and ``tail``: look into a device's outbox from another process.

Library functions the CLI calls one each: ``read_stats`` (the counters; ``stats`` gives
them as ``edge outbox stats --json`` prints them) and ``tail`` (the newest events). They
open the outbox read-only (upgrading an older file in place first), so they are safe while
the runtime runs.
``edge outbox replay`` sends a range again: :mod:`edge.uplink.replay`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.events import PRIORITIES, Event
from edge.outbox.limits import OutboxLimits
from edge.outbox.stats import OutboxStats
from edge.outbox.store import Outbox


def read_stats(state_dir: str | Path, limits: OutboxLimits | None = None) -> OutboxStats:
    """The outbox's counters (``edge outbox stats``). ``limits`` (a config's) win over the
    caps the outbox recorded when the runtime last opened it."""
    with Outbox.open_existing(state_dir, limits=limits) as outbox:
        return outbox.stats()


def stats(state_dir: str | Path, limits: OutboxLimits | None = None) -> dict[str, Any]:
    """``edge outbox stats --json``: stream, last_seq, pending (and per priority), the age
    of the oldest pending event, delivered, kept, evicted (and per priority), bytes."""
    return read_stats(state_dir, limits).as_json()


def tail(state_dir: str | Path, count: int, *, pending_only: bool = False) -> list[Event]:
    """The newest ``count`` stored events (or only pending ones), oldest first; every one
    when ``count`` is negative.

    Read on the outbox's own read-only connection (``open_existing`` checks the file and
    upgrades an older one first), from the newest back in doubling seq spans, so the cost
    follows ``count``, not the depth of the outbox.
    """
    if count == 0:
        return []
    with Outbox.open_existing(state_dir) as outbox:
        last = outbox.last_seq

        def since(first: int) -> list[Event]:
            """The stored (or pending) events with ``first <= seq``, by seq."""
            if not pending_only:
                return list(outbox.stored(first, last))
            after = dict.fromkeys(PRIORITIES, first - 1)
            return sorted(outbox.claim(-1, after=after), key=lambda event: event.seq)

        span = max(count, 1)
        while True:
            first = 1 if count < 0 else max(1, last - span + 1)
            found = since(first)
            if first == 1 or len(found) >= count:
                return found if count < 0 else found[-count:]
            span *= 2
