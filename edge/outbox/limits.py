"""How much the outbox may hold: the caps, the running counters, the budget for a commit.

Byte accounting is logical: each row counts its payload and texts plus a fixed overhead
(``outbox_schema.row_size``), kept as running counters in the outbox's meta table and
changed in the same transaction as the rows. That makes the policy exact and cheap (no
scan, no ``VACUUM``) and the reported ranges exact; the files track the count because
SQLite reuses freed pages, and the budget for rows leaves room for the WAL, the WAL index
and page slack (``OutboxLimits.row_bytes``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.events import PRIORITY_CRITICAL
from edge.outbox.schema import FIXED_PAGES, PAGE_SIZE, SHM_BYTES, wal_pages

if TYPE_CHECKING:
    from edge.config.device import StorageConfig

PRIORITY_NAMES = ("critical", "warning", "info", "telemetry")  # index: priority
LOW_WATER = 0.9  # an eviction brings the outbox down to this share of the cap
PAGE_FILL = 0.9  # rows use about this share of a page (cell headers, slack after deletes)


@dataclass(frozen=True)
class OutboxLimits:
    """How much the outbox may hold and for how long."""

    max_bytes: int = 0  # the outbox files (WAL and WAL index included); 0: no cap
    max_events: int = 0  # stored rows, pending and kept; 0: no cap
    critical_reserve: float = 0.1  # share of each cap only critical events may use
    ttl: Mapping[int, float] = field(default_factory=dict)  # priority -> seconds pending
    keep_delivered: bool = True  # keep delivered events (for replay) until room is needed

    def __post_init__(self) -> None:
        if PRIORITY_CRITICAL in self.ttl:
            raise ValueError("critical events never expire")
        if not 0.0 <= self.critical_reserve < 1.0:
            raise ValueError("critical_reserve must be in [0, 1)")

    @classmethod
    def from_config(cls, storage: StorageConfig) -> OutboxLimits:
        ttl = {
            priority: seconds
            for priority, seconds in (
                (1, storage.ttl_warning),
                (2, storage.ttl_info),
                (3, storage.ttl_telemetry),
            )
            if seconds is not None
        }
        return cls(
            max_bytes=storage.max_bytes,
            max_events=storage.max_events or 0,
            critical_reserve=storage.critical_reserve,
            ttl=ttl,
            keep_delivered=storage.keep_delivered,
        )

    def to_json(self) -> str:
        """The caps as the outbox file records them (meta ``limits``), TTLs by priority name."""
        return json.dumps(
            {
                "max_bytes": self.max_bytes,
                "max_events": self.max_events,
                "critical_reserve": self.critical_reserve,
                "ttl": {PRIORITY_NAMES[p]: seconds for p, seconds in sorted(self.ttl.items())},
                "keep_delivered": self.keep_delivered,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> OutboxLimits:
        """The caps ``to_json`` wrote; ValueError (or KeyError, TypeError) when not such."""
        data = json.loads(text)
        return cls(
            max_bytes=int(data["max_bytes"]),
            max_events=int(data["max_events"]),
            critical_reserve=float(data["critical_reserve"]),
            ttl={PRIORITY_NAMES.index(name): float(s) for name, s in data["ttl"].items()},
            keep_delivered=bool(data["keep_delivered"]),
        )

    @property
    def row_bytes(self) -> int:
        """The bytes rows may count: the cap less the WAL, its index and fixed pages, at
        the fill a page reaches. 0: no cap."""
        if self.max_bytes <= 0:
            return 0
        wal = wal_pages(self.max_bytes) * (PAGE_SIZE + 24) + 32
        room = self.max_bytes - wal - SHM_BYTES - FIXED_PAGES * PAGE_SIZE
        return max(PAGE_SIZE, int(room * PAGE_FILL))

    @property
    def expiry_interval(self) -> float:
        """How often expiry runs: a tenth of the shortest TTL, from 1 s to 60 s."""
        if not self.ttl:
            return math.inf
        return min(60.0, max(1.0, min(self.ttl.values()) / 10))


@dataclass
class Usage:
    """The running counters: pending rows and bytes per priority, kept rows and bytes, and
    the non-critical pending events that are never evicted (the outbox's own reports)."""

    rows: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    bytes: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    kept: int = 0
    kept_bytes: int = 0
    evicted: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # since creation
    held: list[int] = field(default_factory=lambda: [0, 0])  # reports pending: rows, bytes

    def copy(self) -> Usage:
        return Usage(
            list(self.rows),
            list(self.bytes),
            self.kept,
            self.kept_bytes,
            list(self.evicted),
            list(self.held),
        )

    @property
    def pending(self) -> int:
        return sum(self.rows)

    @property
    def total_rows(self) -> int:
        return sum(self.rows) + self.kept

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes) + self.kept_bytes

    @property
    def noncritical_rows(self) -> int:
        return sum(self.rows) - self.rows[PRIORITY_CRITICAL]

    @property
    def noncritical_bytes(self) -> int:
        return sum(self.bytes) - self.bytes[PRIORITY_CRITICAL]

    @property
    def evictable(self) -> int:
        """Pending rows an eviction may take."""
        return self.noncritical_rows - self.held[0]

    def to_json(self) -> str:
        return json.dumps(
            {
                "rows": self.rows,
                "bytes": self.bytes,
                "kept": self.kept,
                "kept_bytes": self.kept_bytes,
                "evicted": self.evicted,
                "held": self.held,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Usage:
        data = json.loads(text)
        return cls(
            list(data["rows"]),
            list(data["bytes"]),
            int(data["kept"]),
            int(data["kept_bytes"]),
            list(data["evicted"]),
            list(data["held"]),
        )


class Budget:
    """The caps in force for one commit: the configured ones, or tighter after the disk
    filled up (``disk_bytes``).

    Eviction starts when a cap is exceeded and stops at ``LOW_WATER`` of it. What cannot be
    evicted (critical events; reports) may exceed a cap: then eviction starts only once
    the evictable part reaches the batch a normal eviction frees, ``1 - LOW_WATER`` of the
    cap, so a full outbox reports its losses in batches, not one report per event.
    """

    def __init__(self, limits: OutboxLimits, disk_bytes: int = 0, disk_step: int = 0) -> None:
        caps = [c for c in (limits.row_bytes, disk_bytes) if c > 0]
        self.bytes = min(caps) if caps else 0
        # Under the disk's cap an eviction frees at most ``disk_step`` bytes: its WAL must
        # fit in what the disk has left (edge.outbox.disk). Row caps keep their batches.
        # ``step`` caps what one eviction frees beyond the commit's new rows (0: no cap).
        self.low_water = LOW_WATER
        self.step = 0
        if disk_step > 0 and disk_bytes > 0 and self.bytes == disk_bytes:
            self.low_water = max(LOW_WATER, 1 - disk_step / disk_bytes)
            self.step = disk_step
        self.rows = limits.max_events
        reserve = limits.critical_reserve
        self.noncritical_bytes = int(self.bytes * (1 - reserve))
        self.noncritical_rows = int(self.rows * (1 - reserve))

    @staticmethod
    def _above(value: int, cap: int, share: float = 1.0) -> bool:
        return cap > 0 and value > cap * share

    @staticmethod
    def _trigger(value: int, cap: int, fixed: int, low: float = LOW_WATER) -> bool:
        return cap > 0 and value > max(cap, fixed + (1 - low) * cap)

    def over(self, u: Usage) -> bool:
        """Whether a cap is exceeded so that an eviction is due."""
        critical_rows, critical_bytes = u.rows[PRIORITY_CRITICAL], u.bytes[PRIORITY_CRITICAL]
        held_rows, held_bytes = u.held
        low = self.low_water
        return (
            self._trigger(u.total_bytes, self.bytes, critical_bytes + held_bytes, low)
            or self._trigger(u.total_rows, self.rows, critical_rows + held_rows)
            or self._trigger(u.noncritical_bytes, self.noncritical_bytes, held_bytes, low)
            or self._trigger(u.noncritical_rows, self.noncritical_rows, held_rows)
        )

    def trim_wanted(self, u: Usage) -> bool:
        """Kept rows must go while the total is above the low water mark."""
        return u.kept > 0 and (
            self._above(u.total_bytes, self.bytes, self.low_water)
            or self._above(u.total_rows, self.rows, LOW_WATER)
        )

    def evict_wanted(self, u: Usage, floor: int = 0) -> bool:
        """Pending rows must go while a cap is above its low water mark; for the byte
        caps, only while more than ``floor`` bytes are held (a stepped eviction)."""
        low = self.low_water
        over_bytes = self._above(u.total_bytes, self.bytes, low) or self._above(
            u.noncritical_bytes, self.noncritical_bytes, low
        )
        over_rows = self._above(u.total_rows, self.rows, LOW_WATER) or self._above(
            u.noncritical_rows, self.noncritical_rows, LOW_WATER
        )
        return u.evictable > 0 and ((over_bytes and u.total_bytes > floor) or over_rows)

    def full(self, u: Usage, share: float = 1.0) -> bool:
        """Critical events fill their reserve, or the whole cap (with nothing left to
        evict): the outbox raises its ``full`` alarm and keeps them anyway."""
        return (
            self._above(u.bytes[PRIORITY_CRITICAL], self.bytes - self.noncritical_bytes, share)
            or self._above(u.rows[PRIORITY_CRITICAL], self.rows - self.noncritical_rows, share)
            or self._above(u.total_bytes, self.bytes, share)
            or self._above(u.total_rows, self.rows, share)
        )
