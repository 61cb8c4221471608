"""What ``edge outbox stats`` reports: the outbox's counters, and the oldest pending age.

:class:`OutboxStats` is read from the file (right from any process): depth per priority,
delivered, kept, evicted, bytes against the cap; ``as_json`` is ``--json``, ``as_text`` the
aligned lines. :func:`oldest_age` measures the oldest pending event's age the best way its
stamps allow, and says which.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.events import PRIORITIES, Stamp
from edge.outbox.eviction import Evictor
from edge.outbox.limits import PRIORITY_NAMES


@dataclass(frozen=True)
class OutboxStats:
    stream: str
    device: str
    last_seq: int
    pending: int
    pending_by_priority: dict[int, int]
    delivered: int
    evicted: int
    kept: int = 0
    evicted_by_priority: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    file_bytes: int = 0
    max_bytes: int | None = 0  # None: not known (an outbox that records no caps)
    oldest_age_s: float | None = None  # None: nothing pending
    oldest_age_basis: AgeBasis | None = None  # how oldest_age_s was measured

    def as_json(self) -> dict[str, Any]:
        """``edge outbox stats --json``: one object, mappings keyed by priority name."""
        return {
            "stream": self.stream,
            "device": self.device,
            "last_seq": self.last_seq,
            "pending": self.pending,
            "pending_by_priority": _by_priority(self.pending_by_priority),
            "oldest_age_s": None if self.oldest_age_s is None else round(self.oldest_age_s, 3),
            "delivered": self.delivered,
            "kept": self.kept,
            "evicted": self.evicted,
            "evicted_by_priority": _by_priority(self.evicted_by_priority),
            "bytes": self.bytes,
            "file_bytes": self.file_bytes,
            "max_bytes": self.max_bytes,
        }

    def as_text(self) -> str:
        """``edge outbox stats``: one aligned line per figure, counts per priority inline."""

        def counts(total: int, by_priority: Mapping[int, int]) -> str:
            parts = ", ".join(f"{name} {n}" for name, n in _by_priority(by_priority).items())
            return f"{total} ({parts})"

        if self.oldest_age_s is None:
            age = "- (nothing pending)"
        else:
            basis = AGE_BASES[self.oldest_age_basis or "monotonic"]
            age = f"{round(self.oldest_age_s, 3)} ({basis})"
        if self.max_bytes is None:
            cap = "unknown (no runtime of this version has opened the outbox: give --config)"
        else:
            cap = f"{self.max_bytes}{' (no cap)' if self.max_bytes == 0 else ''}"
        rows = [
            ("stream", self.stream),
            ("device", self.device),
            ("last_seq", str(self.last_seq)),
            ("pending", counts(self.pending, self.pending_by_priority)),
            ("oldest_age_s", age),
            ("delivered", str(self.delivered)),
            ("kept", str(self.kept)),
            ("evicted", counts(self.evicted, self.evicted_by_priority)),
            ("bytes", str(self.bytes)),
            ("file_bytes", str(self.file_bytes)),
            ("max_bytes", cap),
        ]
        return "\n".join(f"{key:<20} {value}" for key, value in rows)


def _by_priority(counts: Mapping[int, int]) -> dict[str, int]:
    return {name: counts.get(p, 0) for p, name in enumerate(PRIORITY_NAMES)}


#: How ``OutboxStats.oldest_age_s`` was measured, best first.
AgeBasis = Literal["monotonic", "wall clock", "at least"]
AGE_BASES: dict[str, str] = {
    "monotonic": "on the monotonic clock of the boot that stored it",
    "wall clock": "from its timestamp, both wall clocks synchronised",
    "at least": "at least: its age when the last event of its boot or simulation was stored",
}
# Epochs of clocks that are not the OS's (edge.clock's VirtualClock and ScaledClock): their
# timestamps are simulated time, never comparable with this machine's wall clock.
_SIMULATED_EPOCHS = ("virtual-", "scaled-")


def oldest_age(
    conn: sqlite3.Connection, evictor: Evictor, epoch_now: str, now: Stamp
) -> tuple[float, AgeBasis] | None:
    """The oldest pending event's age and how it was measured, best first: on the monotonic
    clock when it was stored in this boot (``epoch_now``: exact); from its timestamp across
    boots when it and this clock are synchronised; else a lower bound, how old it was when
    the last event of its boot (or simulation) was stored."""
    oldest = None
    for priority in PRIORITIES:
        row = conn.execute(
            "SELECT p.seq, e.synced, e.mono, e.epoch FROM pending p CROSS JOIN events e"
            " ON e.seq = p.seq WHERE p.priority = ? ORDER BY p.seq LIMIT 1",
            (priority,),
        ).fetchone()
        if row is not None and (oldest is None or row[0] < oldest[0]):
            oldest = row
    if oldest is None:
        return None
    seq, synced, mono, epoch = oldest
    if epoch == epoch_now:
        return now.mono - mono, "monotonic"
    if not epoch.startswith(_SIMULATED_EPOCHS):
        age = evictor.age(seq, synced, mono, epoch, now)
        if age is not None:
            return age, "wall clock"
    return max(0.0, _last_mono(conn, seq, epoch) - mono), "at least"


def _last_mono(conn: sqlite3.Connection, seq: int, epoch: str) -> float:
    """The monotonic stamp of the newest stored event of ``epoch`` at or after ``seq``
    (stored there): a bisection over seq, a few index probes whatever the depth.
    Epochs follow one another in seq order (one runtime at a time per outbox)."""
    newest = conn.execute(
        "SELECT seq, mono, epoch FROM events ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if newest[2] == epoch:
        return float(newest[1])
    found = conn.execute("SELECT mono FROM events WHERE seq = ?", (seq,)).fetchone()
    best, low, high = float(found[0]), seq, int(newest[0])  # low: of epoch; high: not
    while high - low > 1:
        middle = (low + high) // 2
        row = conn.execute(
            "SELECT seq, mono, epoch FROM events WHERE seq > ? AND seq <= ?"
            " ORDER BY seq DESC LIMIT 1",
            (low, middle),
        ).fetchone()
        if row is None or row[2] == epoch:  # nothing stored in (low, middle], or ours
            best = float(row[1]) if row is not None else best
            low = middle
        else:
            high = int(row[0])
    return best
