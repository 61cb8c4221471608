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

from edge.events import Event
from edge.outbox.limits import OutboxLimits
from edge.outbox.store import Outbox, OutboxStats


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
    """The newest ``count`` stored events (or only pending ones), oldest first.

    Read with sqlite-utils on a read-only connection, after ``open_existing`` has checked
    the file and upgraded an older one (the runtime itself never imports sqlite-utils)."""
    import sqlite3

    from sqlite_utils import Database

    with Outbox.open_existing(state_dir) as outbox:
        path = outbox.path
    db = Database(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
    try:
        source = "pending p CROSS JOIN events e ON e.seq = p.seq" if pending_only else "events e"
        rows = list(
            db.query(
                "SELECT e.seq, e.priority, e.sensor, e.kind, e.payload"
                f" FROM {source} ORDER BY e.seq DESC LIMIT :count",
                {"count": count},
            )
        )
    finally:
        db.close()
    return [
        Event(r["seq"], r["priority"], r["sensor"], r["kind"], r["payload"]) for r in reversed(rows)
    ]
