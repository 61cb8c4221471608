"""Eviction: what goes first when the outbox is full, and how each loss is reported.

When a commit leaves the outbox over a cap (``edge.outbox.limits``), it is brought down to
``LOW_WATER`` of it in the same transaction, so eviction happens in batches and reports
stay few:
1. delivered events kept for replay go first, oldest first: they are not losses and are
   not reported;
2. then pending events, lowest priority first (telemetry, info, warning), oldest first;
3. critical events are never evicted. Non-critical events may use the cap less the
   critical reserve; critical events may use all of it. If critical events alone exceed
   it, they are kept anyway and the outbox raises a critical ``full`` alarm.
Every pending event evicted is named in a ``health`` event (sensor ``outbox``, state
``evicted``, severity warning) appended in the same transaction, so a crash cannot lose the
report of a loss. The outbox's own health events are never evicted or expired themselves:
evicting a report to make room would only call for a new one naming it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edge.events import PRIORITY_CRITICAL, Stamp
from edge.outbox.limits import PRIORITY_NAMES, Budget, Usage

NONCRITICAL = (3, 2, 1)  # eviction order: lowest priority first
MAX_RANGES = 500  # seq ranges per report; more are split over several reports
OUTBOX_SENSOR = "outbox"  # the sensor id of the outbox's own health events
BATCH = 500  # rows per statement when deleting or scanning in batches


def runs(seqs: Iterable[int]) -> list[list[int]]:
    """Sorted seqs as [first, last] runs of consecutive numbers: [1,2,3,7] -> [[1,3],[7,7]]."""
    result: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if result and seq == result[-1][1] + 1:
            result[-1][1] = seq
        else:
            result.append([seq, seq])
    return result


def is_report(sensor: str, kind: str) -> bool:
    return sensor == OUTBOX_SENSOR and kind == "health"


@dataclass
class Eviction:
    """One batch of evicted pending events."""

    reason: str  # "cap", "ttl" or "disk"
    victims: dict[int, int] = field(default_factory=dict)  # seq -> priority

    def __bool__(self) -> bool:
        return bool(self.victims)

    def add(self, seq: int, priority: int) -> None:
        self.victims[seq] = priority

    def reports(self, total_evicted: int) -> list[dict[str, Any]]:
        """The fields of the report event(s): ``evicted`` counts the seqs ``ranges`` name
        ([first, last] runs of consecutive seqs, all priorities together), ``priority``
        breaks them down; more than ``MAX_RANGES`` ranges are split over several reports
        (``part``: [n, of])."""
        chunks = _chunks(runs(self.victims), MAX_RANGES)
        result = []
        for number, chunk in enumerate(chunks, 1):
            seqs = [s for first, last in chunk for s in range(first, last + 1)]
            by_priority = Counter(PRIORITY_NAMES[self.victims[s]] for s in seqs)
            # Critical events are never evicted; only a discard names them (a disk that
            # could not store them at all), and then says how many.
            names = PRIORITY_NAMES if by_priority["critical"] else PRIORITY_NAMES[1:]
            fields: dict[str, Any] = {
                "state": "evicted",
                "reason": self.reason,
                "evicted": len(seqs),
                "ranges": chunk,
                "priority": {name: by_priority[name] for name in names},
                "total_evicted": total_evicted,
            }
            if len(chunks) > 1:
                fields["part"] = [number, len(chunks)]
            result.append(fields)
        return result


def evicted_seqs(events: Iterable[Any]) -> set[int]:
    """The seqs that eviction reports among ``events`` name."""
    seqs: set[int] = set()
    for event in events:
        if is_report(event.sensor, event.kind) and event.priority != PRIORITY_CRITICAL:
            body = json.loads(event.payload)
            if body.get("state") == "evicted":
                for first, last in body.get("ranges", []):
                    seqs.update(range(first, last + 1))
    return seqs


def outbox_alarm(events: Iterable[Any]) -> bool | None:
    """From committed events: True when the outbox raised its ``full`` alarm, False when
    it recovered, None when neither happened (the last one wins)."""
    state = None
    for event in events:
        if is_report(event.sensor, event.kind) and event.priority in (PRIORITY_CRITICAL, 2):
            found = json.loads(event.payload).get("state")
            if found in ("full", "recovered"):
                state = found == "full"
    return state


def _chunks(items: list[list[int]], size: int) -> list[list[list[int]]]:
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]


@dataclass
class Incoming:
    """A commit's new rows, counted but not yet written, and those evicted before."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    evicted: set[int] = field(default_factory=set)


class Evictor:
    """Walks the outbox's tables for a commit: trims kept events, evicts and expires
    pending ones, updating the counters it is handed. Runs inside the caller's
    transaction, on its connection."""

    def __init__(self, conn: sqlite3.Connection, epoch: str) -> None:
        self.conn = conn
        self.epoch = epoch  # this boot's clock epoch: monotonic ages compare within it

    def trim(self, usage: Usage, budget: Budget) -> bool:
        """Delete kept (delivered) events, oldest first, down to the low water mark.
        False when the counters promised kept rows the table does not have."""
        after = 0
        while budget.trim_wanted(usage):
            rows = self.conn.execute(
                "SELECT e.seq, e.size FROM events e WHERE e.seq > ? AND NOT EXISTS"
                " (SELECT 1 FROM pending p WHERE p.priority = e.priority AND p.seq = e.seq)"
                " ORDER BY e.seq LIMIT ?",
                (after, BATCH),
            ).fetchall()
            if not rows:
                return False
            taken = []
            for seq, size in rows:
                if not budget.trim_wanted(usage):
                    break
                taken.append(seq)
                usage.kept -= 1
                usage.kept_bytes -= size
            self.delete(taken)
            after = rows[-1][0]
        return True

    def evict(
        self,
        usage: Usage,
        budget: Budget,
        reason: str,
        incoming: Incoming,
        spare: frozenset[int] = frozenset(),
    ) -> Eviction:
        """Delete pending non-critical events, lowest priority and oldest first, until
        under the low water mark (or none is left): stored ones, then the commit's new
        ones (which are then not written at all). Reports of earlier evictions stay, and
        so do ``spare`` ones (the uplink's: they are being delivered)."""
        batch = Eviction(reason)
        # A stepped budget (a full disk) frees at most its step beyond the new rows, so
        # that this commit's WAL fits in what the disk has left; later commits go on.
        start = usage.total_bytes
        floor = start - budget.step - sum(row[8] for row in incoming.rows) if budget.step else 0

        def wanted() -> bool:
            return budget.evict_wanted(usage, floor)

        for priority in NONCRITICAL:
            after = 0
            while wanted():
                rows = self.pending_rows(priority, after)
                if not rows:
                    break
                taken = []
                for seq, size, sensor, kind, *_ in rows:
                    if not wanted():
                        break
                    if not is_report(sensor, kind) and seq not in spare:
                        self.take(usage, batch, seq, priority, size)
                        taken.append(seq)
                self.remove(priority, taken)
                after = rows[-1][0]
            for row in incoming.rows:
                if not wanted():
                    break
                seq, row_priority, sensor, kind, size = row[0], row[1], row[2], row[3], row[8]
                if row_priority == priority and not is_report(sensor, kind):
                    self.take(usage, batch, seq, priority, size)
                    incoming.evicted.add(seq)
        return batch

    def expire(
        self,
        usage: Usage,
        ttl: Mapping[int, float],
        now: Stamp,
        spare: frozenset[int] = frozenset(),
    ) -> Eviction:
        """Delete pending events older than their priority's TTL, oldest first. An event
        whose age cannot be known (unsynced, from an earlier boot) stops the walk."""
        batch = Eviction("ttl")
        for priority, seconds in sorted(ttl.items()):
            after, done = 0, False
            while not done:
                rows = self.pending_rows(priority, after, limit=64)
                if not rows:
                    break
                taken = []
                for seq, size, sensor, kind, synced, mono, epoch in rows:
                    if is_report(sensor, kind) or seq in spare:
                        continue
                    age = self.age(seq, synced, mono, epoch, now)
                    if age is None or age <= seconds:
                        done = True
                        break
                    self.take(usage, batch, seq, priority, size)
                    taken.append(seq)
                self.remove(priority, taken)
                after = rows[-1][0]
        return batch

    def age(self, seq: int, synced: int, mono: float, epoch: str, now: Stamp) -> float | None:
        """Seconds since the event was stamped: on the monotonic clock within this boot,
        from its ``ts`` across boots when both clocks are synced; None when unknown."""
        if epoch == self.epoch:
            return now.mono - mono
        if not (synced and now.synced):
            return None
        row = self.conn.execute(
            "SELECT json_extract(payload, '$.ts') FROM events WHERE seq = ?", (seq,)
        ).fetchone()
        try:
            return now.wall - datetime.fromisoformat(str(row[0])).timestamp()
        except (TypeError, ValueError):
            return None

    def pending_rows(self, priority: int, after: int, limit: int = BATCH) -> list[Any]:
        return self.conn.execute(
            "SELECT p.seq, e.size, e.sensor, e.kind, e.synced, e.mono, e.epoch"
            " FROM pending p CROSS JOIN events e ON e.seq = p.seq"
            " WHERE p.priority = ? AND p.seq > ? ORDER BY p.seq LIMIT ?",
            (priority, after, limit),
        ).fetchall()

    def remove(self, priority: int, seqs: list[int]) -> None:
        """Delete pending events of one priority."""
        for start in range(0, len(seqs), BATCH):
            chunk = seqs[start : start + BATCH]
            marks = ",".join("?" * len(chunk))
            self.conn.execute(
                f"DELETE FROM pending WHERE priority = ? AND seq IN ({marks})", [priority, *chunk]
            )
        self.delete(seqs)

    def delete(self, seqs: list[int]) -> None:
        """Delete event rows (their ``pending`` entries are the caller's business)."""
        for start in range(0, len(seqs), BATCH):
            chunk = seqs[start : start + BATCH]
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM events WHERE seq IN ({marks})", chunk)

    @staticmethod
    def take(usage: Usage, batch: Eviction, seq: int, priority: int, size: int) -> None:
        batch.add(seq, priority)
        usage.rows[priority] -= 1
        usage.bytes[priority] -= size
        usage.evicted[priority] += 1
