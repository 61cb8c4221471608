"""The outbox: a SQLite (WAL) file that holds every event until the broker acknowledges it.

A few verbs over explicit transactions: ``commit`` appends drafts and marks acknowledged
events delivered in one transaction (``append`` and ``ack`` are its two halves) and, in
the same transaction, enforces the caps and time-to-live (``edge.outbox.eviction``): what it
evicts is reported by a ``health`` event it appends there too. ``claim`` reads what to
send next in (priority, seq) order. ``seq`` comes from a counter kept in the same
transaction, so it strictly increases and is never reused, even when the newest rows were
deleted. The ``stream`` id is drawn once, when the file is created.

Delivered events stay in the file (``keep_delivered``), within the caps, so that ``edge
outbox replay`` can send them again; they are the first to go when room is needed. At
open, ``PRAGMA quick_check`` runs; a corrupt file is moved aside and what can be read is
salvaged into a new one (``edge.outbox.salvage``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from edge.clock import Clock, RealClock
from edge.errors import OutboxError
from edge.events import PRIORITIES, PRIORITY_CRITICAL, Draft, Event, Stamp, format_ts
from edge.outbox import salvage as salvaging
from edge.outbox.disk import (
    RESERVE_FILE,
    Reserve,
    disk_room,
    disk_step,
    free_bytes,
    wal_bytes,
)
from edge.outbox.eviction import OUTBOX_SENSOR, Eviction, Evictor, Incoming, is_report
from edge.outbox.limits import LOW_WATER, Budget, OutboxLimits, Usage
from edge.outbox.schema import (
    BUSY_TIMEOUT_MS,
    FILENAME,
    MIGRATIONS,
    PAGE_SIZE,
    SIDE_FILES,
    migrate,
    row_size,
    transaction,
    wal_pages,
)
from edge.outbox.schema import VERSION as SCHEMA_VERSION
from edge.outbox.stats import AgeBasis, OutboxStats, oldest_age
from edge.statefile import private_dir
from models import Severity

log = logging.getLogger(__name__)

BATCH = 500  # rows per statement when deleting or scanning in batches
SQLITE_FULL = 13
RESERVE_CHECK = 5.0  # seconds between looks for free space to take the reserve back

__all__ = [
    "FILENAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Outbox",
    "OutboxFull",
    "OutboxLimits",
    "OutboxStats",
]


class OutboxFull(OutboxError):
    """The disk is full: the commit changed nothing. The next one makes room first."""


@dataclass
class _State:
    """What a transaction changes besides rows; swapped in only once it committed."""

    last_seq: int
    delivered: int
    evicted: int
    usage: Usage
    full: bool = False  # a ``full`` alarm stands
    disk_full: bool = False  # the disk filled up: report it with the next commit
    next_expiry: float = -float("inf")

    def copy(self) -> _State:
        return _State(
            self.last_seq,
            self.delivered,
            self.evicted,
            self.usage.copy(),
            self.full,
            self.disk_full,
            self.next_expiry,
        )


class Outbox:
    """Durable, ordered, capped store of events. Thread-safe: one connection, one lock."""

    def __init__(
        self,
        path: Path,
        conn: sqlite3.Connection,
        epoch: str | None = None,
        *,
        limits: OutboxLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.path = path
        self.clock: Clock = clock or RealClock()
        # The clock epoch stamped on new rows: which ones a later clock sync may correct.
        self.epoch = self.clock.epoch if epoch is None else epoch
        self.limits = limits or OutboxLimits()
        # False when open_existing found no caps recorded and none were given.
        self.limits_known = True
        self.salvage: salvaging.Salvage | None = None  # set when open() salvaged a file
        self._conn = conn
        self._evictor = Evictor(conn, self.epoch)
        self._lock = threading.Lock()
        self.stream = self._meta("stream")
        self.device = self._meta("device")
        self._state = self._load_state()
        self._disk_bytes = 0  # the cap the disk sets, at open or when it filled (0: none)
        self._wal_limit = wal_pages(self.limits.max_bytes) * (PAGE_SIZE + 24) + 32
        self._reserve: Reserve | None = None  # set by open(): the runtime's outbox
        self._reserve_checked = 0.0
        self._closed = False

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        state_dir: str | Path,
        device: str,
        *,
        durability: str = "full",
        epoch: str | None = None,
        limits: OutboxLimits | None = None,
        clock: Clock | None = None,
    ) -> Outbox:
        """Open (creating if needed) the outbox of ``device`` in ``state_dir``.

        A file that fails ``PRAGMA quick_check`` or is not a database is moved aside
        (``outbox.sqlite3.corrupt-<UTC time>``, never deleted) and what can be read from it
        is salvaged into a new outbox; ``salvage`` then says what happened, and a critical
        ``health`` event (sensor ``outbox``, state ``salvaged``) is the new file's first.
        """
        limits = limits or OutboxLimits()
        directory = Path(state_dir)
        path = directory / FILENAME
        try:
            private_dir(directory)
        except OSError as exc:
            raise OutboxError(f"cannot create the state directory {directory}: {exc}") from exc
        # The disk may hold less than the cap: then the disk is the cap (edge.outbox.disk).
        reserve_path = directory / RESERVE_FILE
        held = _files_bytes(path) + Reserve(reserve_path, 0).held
        room, reserve_bytes = disk_room(directory, held, limits.max_bytes)
        effective = room or limits.max_bytes
        recovered: salvaging.Recovered | None = None
        try:
            try:
                conn = salvaging.connect_checked(path, device, durability, effective)
            except salvaging.Corrupt as corrupt:
                log.error("the outbox %s is corrupt (%s): salvaging it", path, corrupt.reason)
                recovered = salvaging.recover(path, corrupt.reason)
                conn = salvaging.connect_checked(path, device, durability, effective)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot open the outbox in {directory}: {exc}") from exc
        except OSError as exc:
            raise OutboxError(f"cannot open the outbox in {directory}: {exc}") from exc
        outbox = cls(path, conn, epoch, limits=limits, clock=clock)
        outbox._use_disk(room, Reserve(reserve_path, reserve_bytes))
        if recovered is not None:
            outbox.salvage = outbox._adopt(recovered)
        if outbox.device != device:
            outbox.close()
            raise OutboxError(
                f"the outbox in {directory} belongs to device '{outbox.device}', not '{device}';"
                " give each device its own state directory"
            )
        outbox._record_limits()
        return outbox

    @classmethod
    def open_existing(
        cls,
        state_dir: str | Path,
        *,
        limits: OutboxLimits | None = None,
        clock: Clock | None = None,
    ) -> Outbox:
        """Open an outbox for inspection, whatever its device; never creates one.

        A file from an older edgeline is upgraded in place first (as the runtime would).
        Without ``limits``, the caps are those the outbox recorded when it was last opened
        to run (meta ``limits``); ``limits_known`` is False when it recorded none.
        """
        path = Path(state_dir) / FILENAME
        if not path.exists():
            raise OutboxError(f"no outbox in {state_dir} (expected {path})")
        try:
            conn = salvaging.connect(path)
            try:
                found = salvaging.schema_version(conn)
                if found == 0:
                    raise OutboxError(f"{path} is not an outbox (no schema)")
                if found < SCHEMA_VERSION:
                    migrate(conn, "")
                conn.execute("PRAGMA query_only=ON")
                recorded = _recorded_limits(conn) if limits is None else None
                outbox = cls(path, conn, limits=limits or recorded, clock=clock)
                outbox.limits_known = limits is not None or recorded is not None
                return outbox
            except BaseException:
                conn.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise OutboxError(
                f"cannot read the outbox {path}: {exc} (the runtime moves a corrupt outbox"
                " aside and salvages it when it starts)"
            ) from exc

    # -- the verbs ---------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self._state.last_seq

    def append(self, draft: Draft) -> Event:
        return self.commit([draft])[0]

    def ack(self, seqs: Collection[int]) -> None:
        self.commit((), acked=seqs)

    def commit(
        self,
        drafts: Sequence[Draft],
        acked: Collection[int] = (),
        *,
        spare: Callable[[], Collection[int]] | None = None,
    ) -> list[Event]:
        """In one transaction: append ``drafts``, mark ``acked`` delivered, expire and
        evict as the limits say (appending the reports). Returns every event appended: the
        drafts' first, in order, then the outbox's own reports.

        ``spare()`` names the events eviction must leave alone now: claimed by a sender
        (in flight, or about to be) or acknowledged by the broker but not yet marked
        delivered here; evicting them would report a loss that is about to be a delivery.
        It is called with the outbox locked, so a ``claim`` cannot slip in between.

        When the disk is full (``SQLITE_FULL``), the outbox caps itself at what it holds,
        releases its reserve and retries at once: the room freed lets this commit evict
        (``edge.outbox.disk``). Raises ``OutboxFull`` when the reserve is already spent:
        nothing changed, and later commits evict under that cap before they write.
        """
        with self._lock:
            while True:
                events: list[Event] = []
                state = self._state.copy()
                try:
                    with transaction(self._conn):
                        # Asked under the lock: no claim can come between the answer and
                        # the eviction, so a report never names an event being sent.
                        held = frozenset(spare()) if spare is not None else frozenset()
                        self._write(state, drafts, acked, events, held)
                    break
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF != SQLITE_FULL:
                        raise
                    self._learn_disk_cap()
                    if self._release_reserve():
                        continue  # at once: the room it freed lets this commit evict
                    raise OutboxFull(f"{self.path}: the disk is full ({exc})") from exc
            evicting = state.evicted != self._state.evicted
            self._state = state  # only once the transaction committed
            if (drafts or evicting) and self._wal_bytes() > self._wal_limit:
                self._truncate_wal()
            self._retake_reserve()
        return events

    def discard(self, drafts: Sequence[Draft], reason: str = "disk") -> list[Event]:
        """Number ``drafts`` without storing them, and report them lost: the last resort
        when they cannot be stored (a disk that stays full at shutdown). One small commit:
        the seq counter and one report per 500 ranges, so a consumer sees the loss named,
        not a silent gap. Returns the reports appended."""
        events: list[Event] = []
        with self._lock:
            state = self._state.copy()
            try:
                with transaction(self._conn):
                    numbered: list[Event] = []
                    incoming = self._prepare(state, drafts, numbered)
                    lost = Eviction(reason)
                    for row in incoming.rows:
                        seq, priority, size = row[0], row[1], row[8]
                        Evictor.take(state.usage, lost, seq, priority, size)
                    self._store(self._prepare(state, self._report(state, lost), events))
                    self._save(state)
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != SQLITE_FULL:
                    raise
                raise OutboxFull(f"{self.path}: the disk is full ({exc})") from exc
            self._state = state
        return events

    def claim(
        self,
        limit: int,
        exclude: Collection[int] = (),
        after: Mapping[int, int] | None = None,
        *,
        hold: Callable[[Sequence[int]], None] | None = None,
    ) -> list[Event]:
        """The next ``limit`` pending events to send, by priority then seq.

        ``after`` maps a priority to the last seq already claimed at that priority, so a
        sender walks each priority with an index range scan: the cost does not grow with
        the backlog. ``exclude`` skips seqs (acknowledged, not yet marked delivered).
        ``hold`` is told the seqs claimed before the outbox is unlocked, so a sender can
        spare them from eviction (``commit``'s ``spare``) before any commit runs.
        """
        cursors = after or {}
        take = limit + len(exclude) if limit >= 0 else -1
        scans = " UNION ALL ".join(
            "SELECT * FROM (SELECT p.seq, p.priority, e.sensor, e.kind, e.payload,"
            " e.synced, e.mono, e.epoch FROM pending p CROSS JOIN events e ON e.seq = p.seq"
            " WHERE p.priority = ? AND p.seq > ? ORDER BY p.seq LIMIT ?)"
            for _ in PRIORITIES
        )
        params: list[Any] = []
        for priority in PRIORITIES:
            params += [priority, cursors.get(priority, 0), take]
        skip = exclude if isinstance(exclude, set | frozenset) else set(exclude)
        with self._lock:
            taken = []
            # Row by row, up to ``limit``: the excluded seqs rarely come up (they are behind
            # the cursors), so the rows fetched for them are seldom read.
            rows = self._conn.execute(f"{scans} ORDER BY 2, 1", params)
            try:
                for row in rows if limit else ():
                    if row[0] not in skip:
                        taken.append(row)
                        if len(taken) == limit:
                            break
            finally:
                rows.close()  # its read transaction ends here, not when it is collected
            events = self._events(taken)
            if hold is not None:
                hold([e.seq for e in events])
        return events

    def _events(self, rows: Sequence[Any]) -> list[Event]:
        """Events from (seq, priority, sensor, kind, payload, synced, mono, epoch) rows,
        each with what is left of its priority's TTL (lock held)."""
        ttl = self.limits.ttl
        if not ttl:
            return [Event(*row[:5]) for row in rows]
        now = self._now()
        events = []
        for seq, priority, sensor, kind, payload, synced, mono, epoch in rows:
            left = None
            if priority in ttl:
                age = self._evictor.age(seq, synced, mono, epoch, now)
                left = None if age is None else ttl[priority] - age
            events.append(Event(seq, priority, sensor, kind, payload, left))
        return events

    def has_pending(self) -> bool:
        """Whether any event awaits delivery: one index probe, whatever the depth."""
        with self._lock:
            return self._conn.execute("SELECT 1 FROM pending LIMIT 1").fetchone() is not None

    def correct_timestamps(self, mono_now: float, wall_now: float) -> int:
        """Re-stamp pending events taken before the clock synced, from the monotonic clock.

        Only events of this clock epoch (this boot) can be corrected: monotonic readings
        from an earlier boot say nothing about today's wall time. Delivered events keep
        the payload they were delivered with.
        """
        offset = wall_now - mono_now
        with self._lock:
            state = self._state.copy()
            with transaction(self._conn):
                rows = self._conn.execute(
                    "SELECT e.seq, e.priority, e.sensor, e.kind, e.payload, e.mono, e.size"
                    " FROM events e WHERE e.synced = 0 AND e.epoch = ? AND EXISTS"
                    " (SELECT 1 FROM pending p WHERE p.priority = e.priority AND p.seq = e.seq)",
                    (self.epoch,),
                ).fetchall()
                for seq, priority, sensor, kind, payload, mono, size in rows:
                    body = json.loads(payload)
                    body["ts"] = format_ts(mono + offset)
                    body["synced"] = True
                    body["ts_corrected"] = True
                    text = json.dumps(body, separators=(",", ":"))
                    new_size = row_size(text, sensor, kind, self.epoch)
                    self._conn.execute(
                        "UPDATE events SET payload = ?, synced = 1, size = ? WHERE seq = ?",
                        (text, new_size, seq),
                    )
                    state.usage.bytes[priority] += new_size - size
                    if priority != PRIORITY_CRITICAL and is_report(sensor, kind):
                        state.usage.held[1] += new_size - size
                if rows:
                    self._save(state)
            self._state = state
        return len(rows)

    def stored(self, first: int, last: int) -> Iterator[Event]:
        """Every stored event (pending or kept) with ``first <= seq <= last``, by seq."""
        cursor = first - 1
        while cursor < last:
            with self._lock:
                rows = self._conn.execute(
                    "SELECT seq, priority, sensor, kind, payload, synced, mono, epoch"
                    " FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (cursor, last, BATCH),
                ).fetchall()
                events = self._events(rows)
            if not rows:
                return
            yield from events
            cursor = rows[-1][0]

    def __iter__(self) -> Iterator[Event]:
        """Every pending event in sending order (for inspection; not for the hot path)."""
        return iter(self.claim(limit=-1))

    def stats(self) -> OutboxStats:
        """Counters as last committed (read from the file: right from any process).

        ``oldest_age_s`` is given whenever an event is pending, measured the best way its
        stamps allow (``oldest_age_basis``): on the monotonic clock when it was stored in
        this boot (exact); from its timestamp across boots when it and this clock are
        synchronised; else a lower bound, how old it was when the last event of its boot
        (or simulation) was stored.
        """
        with self._lock:
            state = self._load_state()
            oldest = self._oldest_age(self._now())
        usage = state.usage
        age, basis = oldest if oldest is not None else (None, None)
        return OutboxStats(
            stream=self.stream,
            device=self.device,
            last_seq=state.last_seq,
            pending=usage.pending,
            pending_by_priority={p: n for p, n in enumerate(usage.rows) if n},
            delivered=state.delivered,
            evicted=state.evicted,
            kept=usage.kept,
            evicted_by_priority={p: n for p, n in enumerate(usage.evicted) if n},
            bytes=usage.total_bytes,
            file_bytes=self.file_bytes(),
            max_bytes=self.limits.max_bytes if self.limits_known else None,
            oldest_age_s=age,
            oldest_age_basis=basis,
        )

    def file_bytes(self) -> int:
        """The outbox's size on disk: the database file, its WAL and WAL index."""
        return _files_bytes(self.path)

    def describe(self) -> dict[str, Any]:
        """The outbox's condition for the birth message: ``ok``, or how it was salvaged."""
        if self.salvage is not None:
            return self.salvage.fields()
        return {"state": "ok"}

    @property
    def max_batch(self) -> int:
        """Drafts one commit should take: a large commit holds the WAL past its size (a
        checkpoint cannot run inside a transaction), which a small cap has no room for;
        and an eighth of a WAL of rows keeps a commit on a full disk within the reserve."""
        return max(20, min(1000, self._wal_limit // 2048))

    def _wal_bytes(self) -> int:
        try:
            return os.path.getsize(f"{self.path}-wal")
        except OSError:
            return 0

    def _truncate_wal(self) -> None:
        """Checkpoint and truncate a WAL a large commit grew, without waiting on readers
        (another process reading the file, say): if one holds it, the next commit tries.
        While the disk is full (the reserve spent), the WAL keeps its size: the next
        commits write over it from the start, and its blocks are not given away."""
        mode = "TRUNCATE" if self._reserve is None or self._reserve.held else "RESTART"
        try:
            self._conn.execute("PRAGMA busy_timeout = 0")
            self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error as exc:
            log.debug("WAL checkpoint deferred: %s", exc)
        finally:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    def checkpoint(self) -> None:
        """Copy the WAL into the database file and empty it now, waiting for readers (what
        SQLite does by itself every ``wal_autocheckpoint`` pages; the benchmark counts it)."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def expiry_due(self) -> bool:
        """Whether a commit now would run expiry (the recorder ticks when idle)."""
        return bool(self.limits.ttl) and self.clock.monotonic() >= self._state.next_expiry

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- inside a commit's transaction -----------------------------------------------------

    def _write(
        self,
        st: _State,
        drafts: Sequence[Draft],
        acked: Collection[int],
        events: list[Event],
        spare: frozenset[int] = frozenset(),
    ) -> None:
        # The new rows are counted first and written last: an eviction can then take them
        # too (they are the newest of their priority) and frees pages before they are
        # needed, which is what lets a commit succeed on a disk that filled up.
        incoming = self._prepare(st, drafts, events)
        if acked:
            self._deliver(st, acked)
        reports: list[Draft] = []
        now = self._now() if (self.limits.ttl or st.disk_full) else None
        if now is not None and self.limits.ttl and now.mono >= st.next_expiry:
            st.next_expiry = now.mono + self.limits.expiry_interval
            expired = self._evictor.expire(st.usage, self.limits.ttl, now, spare)
            reports += self._report(st, expired)
        # Under the disk's cap, evictions go a bounded step at a time (edge.outbox.disk).
        step = disk_step(self._reserve.size) if self._reserve is not None else 0
        budget = Budget(self.limits, self._disk_bytes, step)
        if budget.over(st.usage):
            if not self._evictor.trim(st.usage, budget):
                log.warning("the outbox's kept-row counters were off: recounting")
                st.usage = self._recount(st.usage.evicted)
            reason = "disk" if self._disk_bytes and budget.bytes == self._disk_bytes else "cap"
            evicted = self._evictor.evict(st.usage, budget, reason, incoming, spare)
            reports += self._report(st, evicted)
        self._store(incoming)
        if st.disk_full:
            st.disk_full = False
            reports.append(self._alarm("critical", "disk_full", max_bytes=self._disk_bytes))
        if budget.full(st.usage) and not st.full:
            st.full = True
            log.error("the outbox is full of critical events: %s", st.usage.to_json())
            reports.append(
                self._alarm(
                    "critical",
                    "full",
                    critical=st.usage.rows[PRIORITY_CRITICAL],
                    critical_bytes=st.usage.bytes[PRIORITY_CRITICAL],
                    bytes=st.usage.total_bytes,
                    max_bytes=budget.bytes,
                )
            )
        elif st.full and not budget.full(st.usage, LOW_WATER):
            st.full = False
            reports.append(self._alarm("info", "recovered", bytes=st.usage.total_bytes))
        self._store(self._prepare(st, reports, events))
        self._save(st)

    def _prepare(self, st: _State, drafts: Sequence[Draft], events: list[Event]) -> Incoming:
        """Number the drafts and count them in; the rows are written by ``_store``."""
        incoming = Incoming()
        seq = st.last_seq
        ttl = self.limits.ttl
        now = self.clock.monotonic() if ttl else 0.0
        for draft in drafts:
            seq += 1
            priority = draft.priority
            payload = draft.payload(self.device, self.stream, seq)
            size = row_size(payload, draft.sensor, draft.kind, self.epoch)
            # What is left of its TTL, as a claim would say (the uplink may send it as is).
            left = ttl[priority] - (now - draft.mono) if priority in ttl else None
            events.append(Event(seq, priority, draft.sensor, draft.kind, payload, left))
            incoming.rows.append(
                (seq, priority, draft.sensor, draft.kind, payload, draft.synced, draft.mono,
                 self.epoch, size)
            )  # fmt: skip
            st.usage.rows[priority] += 1
            st.usage.bytes[priority] += size
            if priority != PRIORITY_CRITICAL and is_report(draft.sensor, draft.kind):
                st.usage.held[0] += 1
                st.usage.held[1] += size
        st.last_seq = seq
        return incoming

    def _store(self, incoming: Incoming) -> None:
        rows = [row for row in incoming.rows if row[0] not in incoming.evicted]
        self._conn.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", rows)
        self._conn.executemany("INSERT INTO pending VALUES (?,?)", [(r[1], r[0]) for r in rows])

    def _deliver(self, st: _State, acked: Collection[int]) -> None:
        """Pending -> delivered: kept (or deleted, without ``keep_delivered``)."""
        seqs = list(set(acked))
        for start in range(0, len(seqs), BATCH):
            chunk = seqs[start : start + BATCH]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT e.seq, e.priority, e.size, e.sensor, e.kind FROM events e"
                f" WHERE e.seq IN ({marks}) AND EXISTS (SELECT 1 FROM pending p"
                " WHERE p.priority = e.priority AND p.seq = e.seq)",
                chunk,
            ).fetchall()
            if not rows:
                continue
            self._conn.executemany(
                "DELETE FROM pending WHERE priority = ? AND seq = ?", [(r[1], r[0]) for r in rows]
            )
            if not self.limits.keep_delivered:
                self._evictor.delete([r[0] for r in rows])
            for _, priority, size, sensor, kind in rows:
                st.usage.rows[priority] -= 1
                st.usage.bytes[priority] -= size
                if priority != PRIORITY_CRITICAL and is_report(sensor, kind):
                    st.usage.held[0] -= 1
                    st.usage.held[1] -= size
                if self.limits.keep_delivered:
                    st.usage.kept += 1
                    st.usage.kept_bytes += size
            st.delivered += len(rows)

    def _report(self, st: _State, batch: Eviction) -> list[Draft]:
        """Count an eviction's victims in; the drafts of its report(s)."""
        if not batch:
            return []
        st.evicted += len(batch.victims)
        drafts = []
        for fields in batch.reports(st.evicted):
            log.warning(
                "evicted %d events from the outbox (%s): %s",
                fields["evicted"],
                fields["reason"],
                fields["priority"],
            )
            # A loss of critical events (only a discard) is itself critical.
            severity: Severity = "critical" if "critical" in fields["priority"] else "warning"
            drafts.append(self._draft(severity, fields["evicted"], fields))
        return drafts

    def _alarm(self, severity: Severity, state: str, **fields: Any) -> Draft:
        return self._draft(severity, state, {"state": state, **fields})

    def _draft(self, severity: Severity, value: Any, fields: dict[str, Any]) -> Draft:
        now = self._now()
        sensor = OUTBOX_SENSOR
        return Draft(sensor, "health", severity, value, now.mono, now.wall, now.synced, fields)

    def _oldest_age(self, now: Stamp) -> tuple[float, AgeBasis] | None:
        """The oldest pending event's age and how it was measured (``stats``)."""
        return oldest_age(self._conn, self._evictor, self.epoch, now)

    def _use_disk(self, room: int, reserve: Reserve) -> None:
        """Cap at what the disk has ``room`` for (0: the configured cap fits) and take
        the reserve (``edge.outbox.disk``)."""
        self._reserve = reserve
        if room:
            self._disk_bytes = OutboxLimits(max_bytes=room).row_bytes
            self._wal_limit = wal_bytes(room)
            if self.limits.max_bytes > 0:  # a cap the user set that the disk cannot hold
                log.warning(
                    "the disk under %s has room for %d bytes, less than max_bytes (%d): the"
                    " outbox is capped at that, and reports what it evicts with reason 'disk'",
                    self.path,
                    room,
                    self.limits.max_bytes,
                )
        reserve.take()
        self._reserve_checked = time.monotonic()

    def _release_reserve(self) -> bool:
        """The disk is full: free the reserve for the commit that makes room."""
        if self._reserve is None or not self._reserve.release():
            return False
        log.error(
            "the disk under %s is full: released the outbox's %d-byte reserve to make room",
            self.path,
            self._reserve.size,
        )
        return True

    def _retake_reserve(self) -> None:
        """After a full disk: once there is room again, take the reserve back and raise
        the cap to what the disk allows now. A look at free space every few seconds."""
        reserve = self._reserve
        now = time.monotonic()
        if reserve is None or not self._disk_bytes or now - self._reserve_checked < RESERVE_CHECK:
            return
        self._reserve_checked = now
        directory = self.path.parent
        free = free_bytes(directory)
        if reserve.held or free is None or free < 2 * reserve.size or not reserve.take():
            return
        room, _ = disk_room(directory, self.file_bytes() + reserve.held, self.limits.max_bytes)
        cap = OutboxLimits(max_bytes=room).row_bytes if room else 0
        if cap == 0 or cap > self._disk_bytes:
            log.warning("the disk under %s has room again: the outbox's cap is %s", self.path,
                        cap or "max_bytes")  # fmt: skip
            self._disk_bytes = cap

    def _learn_disk_cap(self) -> None:
        """The disk filled before the cap did: from now on, cap just below what is held."""
        held = self._state.usage.total_bytes
        # Just what is held: evictions under it free a bounded step each (``disk_step``),
        # so that their own WAL fits; lowering it more would only make them larger.
        self._disk_bytes = max(1, min(self._disk_bytes or held, held))
        self._state.disk_full = True
        log.error(
            "the disk under %s is full at %d bytes of events: capping the outbox at %d",
            self.path,
            held,
            self._disk_bytes,
        )

    def _now(self) -> Stamp:
        return Stamp(self.clock.monotonic(), self.clock.wall(), self.clock.synced())

    # -- meta ----------------------------------------------------------------------------

    def _record_limits(self) -> None:
        """Record the caps this outbox runs with (meta ``limits``), so that an inspection
        from another process (``edge outbox stats --state-dir``) shows the same ones.
        A new meta key, no migration: a file without it reads as "caps unknown"."""
        text = self.limits.to_json()
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'limits'").fetchone()
            if row is not None and row[0] == text:
                return  # nothing to write (flash wear)
            try:
                with transaction(self._conn):
                    self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('limits', ?)", (text,))
            except sqlite3.OperationalError as exc:  # a full disk: run anyway, unrecorded
                log.warning("could not record the outbox's caps in %s: %s", self.path, exc)

    def _meta(self, key: str) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise OutboxError(f"{self.path}: outbox metadata '{key}' is missing")
        return str(row[0])

    def _load_state(self) -> _State:
        values = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
        try:
            usage = Usage.from_json(values.get("usage") or "")
        except (ValueError, KeyError, TypeError):  # a file just migrated: count once
            usage = self._recount()
        previous = getattr(self, "_state", None)
        return _State(
            last_seq=int(values["last_seq"]),
            delivered=int(values["delivered"]),
            evicted=int(values["evicted"]),
            usage=usage,
            full=previous.full if previous else False,
            disk_full=previous.disk_full if previous else False,
            next_expiry=previous.next_expiry if previous else -float("inf"),
        )

    def _recount(self, evicted: list[int] | None = None) -> Usage:
        """The counters from the tables themselves (after a migration or a salvage)."""
        usage = Usage(evicted=list(evicted) if evicted else [0, 0, 0, 0])
        for priority, rows, size in self._conn.execute(
            "SELECT p.priority, count(*), coalesce(sum(e.size), 0) FROM pending p"
            " CROSS JOIN events e ON e.seq = p.seq GROUP BY p.priority"
        ):
            usage.rows[priority] = rows
            usage.bytes[priority] = size
        usage.held = list(
            self._conn.execute(
                "SELECT count(*), coalesce(sum(e.size), 0) FROM pending p CROSS JOIN events e"
                " ON e.seq = p.seq WHERE p.priority > 0 AND e.sensor = ? AND e.kind = 'health'",
                (OUTBOX_SENSOR,),
            ).fetchone()
        )
        rows, size = self._conn.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM events"
        ).fetchone()
        usage.kept = rows - usage.pending
        usage.kept_bytes = size - sum(usage.bytes)
        return usage

    def _save(self, st: _State) -> None:
        self._conn.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [
                (str(st.last_seq), "last_seq"),
                (str(st.delivered), "delivered"),
                (str(st.evicted), "evicted"),
                (st.usage.to_json(), "usage"),
            ],
        )

    # -- salvage -------------------------------------------------------------------------

    def _adopt(self, recovered: salvaging.Recovered) -> salvaging.Salvage:
        """Take in the rows salvaged from a corrupt file and report it, in one transaction."""
        with self._lock:
            state = self._state.copy()
            events: list[Event] = []
            with transaction(self._conn):
                plan = salvaging.plan(
                    recovered, self.device, self.stream, keep=self.limits.keep_delivered
                )
                self.stream = plan.stream
                rows = plan.rows
                self._conn.executemany(
                    "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
                    [(*r.values, row_size(r.payload, r.sensor, r.kind, r.epoch)) for r in rows],
                )
                self._conn.executemany(
                    "INSERT INTO pending VALUES (?,?)",
                    [(r.priority, r.seq) for r in rows if r.pending],
                )
                self._conn.execute("UPDATE meta SET value = ? WHERE key = 'stream'", (self.stream,))
                state.last_seq = plan.last_seq
                state.delivered = plan.delivered
                state.evicted = plan.evicted
                state.usage = self._recount(plan.evicted_by_priority)
                result = plan.result(recovered, first_seq=state.last_seq + 1)
                draft = self._draft("critical", result.salvaged, result.fields())
                self._store(self._prepare(state, [draft], events))
                self._save(state)
            self._state = state
        log.error("salvaged the outbox: %s", result.fields())
        return result


def _files_bytes(path: Path) -> int:
    total = 0
    for suffix in ("", *SIDE_FILES):
        with contextlib.suppress(OSError):
            total += os.path.getsize(f"{path}{suffix}")
    return total


def _recorded_limits(conn: sqlite3.Connection) -> OutboxLimits | None:
    """The caps the outbox was last opened to run with (meta ``limits``); None if none."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'limits'").fetchone()
    if row is None:
        return None
    try:
        return OutboxLimits.from_json(str(row[0]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the outbox's recorded caps %r: %s", row[0], exc)
        return None
