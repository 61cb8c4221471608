"""The outbox's caps on real SQLite files: who goes first, what is reported, what never goes.

A hypothesis state machine drives random appends (all priorities, random sizes), acks and
restarts under small caps and checks the policy's invariants after every step; unit tests
pin the cases one at a time (reserve, full alarm, trimming before evicting, TTL, reports
that are themselves evicted, a full disk).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from edge.clock import VirtualClock
from edge.events import Draft, Event
from edge.outbox.eviction import runs
from edge.outbox.limits import LOW_WATER, Budget, OutboxLimits, Usage
from edge.outbox.schema import row_size
from edge.outbox.store import Outbox, OutboxFull
from models import Severity

DEVICE = "pi-cap"
CAP = 256 * 1024  # bytes of files; rows get OutboxLimits(max_bytes=CAP).row_bytes of it


def draft(
    clock: VirtualClock, severity: Severity = "info", kind: str = "telemetry", pad: int = 0
) -> Draft:
    fields = {"pad": "x" * pad} if pad else {}
    return Draft("s", kind, severity, 1.0, clock.monotonic(), clock.wall(), True, fields)


def reports(events: list[Event]) -> list[dict[str, Any]]:
    return [e.body() for e in events if e.sensor == "outbox" and e.kind == "health"]


def named(reports: list[dict[str, Any]]) -> set[int]:
    seqs: set[int] = set()
    for body in reports:
        for first, last in body.get("ranges", []):
            seqs.update(range(first, last + 1))
    return seqs


def table_sizes(box: Outbox) -> tuple[int, int]:
    conn = sqlite3.connect(box.path)
    try:
        rows, size = conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM events").fetchone()
        return int(rows), int(size)
    finally:
        conn.close()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def capped(tmp_path: Path, clock: VirtualClock) -> Iterator[Outbox]:
    with Outbox.open(tmp_path, DEVICE, limits=OutboxLimits(max_bytes=CAP), clock=clock) as box:
        yield box


def fill(box: Outbox, clock: VirtualClock, count: int, **options: Any) -> list[Event]:
    events: list[Event] = []
    for _ in range(count):
        events += box.commit([draft(clock, **options)])
    return events


# -- the policy, case by case ----------------------------------------------------------------


def test_telemetry_goes_first_oldest_first_and_every_seq_is_reported(
    capped: Outbox, clock: VirtualClock
) -> None:
    events = []
    for i in range(3000):
        severity: Severity = "warning" if i % 50 == 0 else "info"
        kind = "threshold" if severity == "warning" else "telemetry"
        events += capped.commit([draft(clock, severity, kind)])
    found = reports(events)
    assert found and {r["reason"] for r in found} == {"cap"}
    stats = capped.stats()
    evicted = named(found)
    assert stats.evicted == len(evicted) == sum(r["evicted"] for r in found)
    # Only telemetry went, and the oldest: everything evicted is older than what is left.
    by_seq = {e.seq: e for e in events}
    assert {by_seq[s].kind for s in evicted} == {"telemetry"}
    left = [e.seq for e in capped if e.kind == "telemetry"]
    assert max(evicted) < min(left)
    assert stats.pending_by_priority[1] == 60 + len(found)  # every warning and every report
    # Nothing disappeared silently: stored, or named in a report.
    assert {e.seq for e in capped} | evicted == set(range(1, stats.last_seq + 1))
    assert capped.file_bytes() <= CAP


def test_evictions_come_in_batches_down_to_the_low_water_mark(
    capped: Outbox, clock: VirtualClock
) -> None:
    budget = Budget(capped.limits)
    events = fill(capped, clock, 2000, pad=200)
    found = reports(events)
    # Each batch frees about a tenth of the cap: few reports, not one per commit.
    assert 1 < len(found) < 2000 * 0.05
    assert capped.stats().bytes <= budget.bytes


def test_critical_events_are_never_evicted_and_fill_raises_one_alarm(
    capped: Outbox, clock: VirtualClock
) -> None:
    events = fill(capped, clock, 200, pad=100)  # telemetry first
    events += fill(capped, clock, 1500, severity="critical", kind="threshold", pad=100)
    events += fill(capped, clock, 500, pad=100)  # arrives while full: evicted in batches
    critical = [e.seq for e in events if e.priority == 0 and e.sensor == "s"]
    assert [e.seq for e in capped if e.priority == 0 and e.sensor == "s"] == critical
    alarms = [r for r in reports(events) if r.get("state") == "full"]
    assert len(alarms) == 1
    alarm = next(e for e in events if e.sensor == "outbox" and e.body()["state"] == "full")
    assert alarm.priority == 0 and alarm.body()["severity"] == "critical"
    stats = capped.stats()
    budget = Budget(capped.limits)
    assert stats.bytes > budget.bytes  # over the cap rather than drop one
    # Telemetry arriving now waits for a batch's worth (a tenth of the cap) to be evicted
    # together: a report per batch, not one per event.
    batch = (1 - LOW_WATER) * budget.bytes
    assert capped._state.usage.bytes[3] <= batch
    late = [r for r in reports(events) if r.get("state") == "evicted" and r["ranges"][0][0] > 1700]
    assert 0 < len(late) <= 500 * 500 / batch + 1
    # Delivered, the alarm clears once.
    events = capped.commit([], acked=critical)
    assert [r["state"] for r in reports(events)] == ["recovered"]
    assert reports(capped.commit([draft(clock)])) == []


def test_the_reserve_keeps_room_that_only_critical_events_may_use(
    tmp_path: Path, clock: VirtualClock
) -> None:
    limits = OutboxLimits(max_bytes=CAP, critical_reserve=0.5)
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        budget = Budget(limits)
        fill(box, clock, 3000)
        assert box._state.usage.noncritical_bytes <= budget.noncritical_bytes
        assert box._state.usage.total_bytes <= budget.bytes * 0.55
        before = box.stats().evicted
        fill(box, clock, 100, severity="critical", kind="threshold")
        assert box.stats().evicted == before  # the reserve had room: nothing had to go


def test_an_event_cap_counts_rows(tmp_path: Path, clock: VirtualClock) -> None:
    limits = OutboxLimits(max_events=100, critical_reserve=0.2)
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        fill(box, clock, 500)
        stats = box.stats()
        assert stats.pending <= 80 + 10  # non-critical cap, plus the reports
        assert stats.evicted >= 400


def test_delivered_events_are_trimmed_before_any_pending_one_is_evicted(
    capped: Outbox, clock: VirtualClock
) -> None:
    sent = fill(capped, clock, 250, pad=200)
    capped.ack([e.seq for e in sent])
    assert capped.stats().kept == 250
    events = fill(capped, clock, 200, pad=200)
    assert reports(events) == []  # trimming delivered events made the room: no loss
    stats = capped.stats()
    assert stats.evicted == 0 and stats.pending == 200 and 0 < stats.kept < 250
    kept = [e.seq for e in capped.stored(1, stats.last_seq) if e.seq <= 250]
    assert kept == list(range(251 - len(kept), 251))  # the oldest went first


def test_reports_of_evictions_are_never_evicted_themselves(
    tmp_path: Path, clock: VirtualClock
) -> None:
    limits = OutboxLimits(max_bytes=CAP, critical_reserve=0.0)
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        events = fill(box, clock, 1500, pad=300)
        # Now warnings only: they push out the telemetry, then older warnings.
        events += fill(box, clock, 1500, severity="warning", kind="threshold", pad=300)
        found = [e for e in events if e.sensor == "outbox"]
        assert {e.seq for e in found} <= {e.seq for e in box}
        gone = {e.seq for e in events} - {e.seq for e in box}
        assert gone == named(reports(events))
        assert any(e.kind == "threshold" for e in events if e.seq in gone)
        # Full of critical events, nothing evictable: no report churns on every commit.
        before = len(found)
        fill(box, clock, 600, severity="critical", kind="threshold", pad=300)
        events = fill(box, clock, 100, pad=300)
        assert len([e for e in events if e.body().get("state") == "evicted"]) <= 100
        assert len(reports(events)) <= before + 100


def test_reports_split_when_ranges_are_many(tmp_path: Path, clock: VirtualClock) -> None:
    with Outbox.open(tmp_path, DEVICE, limits=OutboxLimits(ttl={3: 10.0}), clock=clock) as box:
        events: list[Event] = []
        for _ in range(1200):  # alternate: evicted telemetry seqs are never consecutive
            events += box.commit([draft(clock), draft(clock, "critical", "threshold")])
        clock.advance(11.0)
        events += box.commit([])  # all 1200 expire at once: 1200 ranges
        found = reports(events)
        assert [r["part"] for r in found] == [[1, 3], [2, 3], [3, 3]]
        assert max(len(r["ranges"]) for r in found) <= 500
        assert any("part" in r for r in found)
        assert named(found) == {e.seq for e in events if e.kind == "telemetry"} - {
            e.seq for e in box
        }


def test_ttl_expires_stale_events_oldest_first_and_reports_them(
    tmp_path: Path, clock: VirtualClock
) -> None:
    limits = OutboxLimits(ttl={3: 60.0, 2: 600.0})
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        old = fill(box, clock, 10)
        info = box.commit([draft(clock, kind="state")])
        clock.advance(30.0)
        young = fill(box, clock, 5)
        clock.advance(31.0)  # the first ten are 61 s old, the last five 31 s
        assert box.expiry_due()
        events = box.commit([])
        found = reports(events)
        assert [r["reason"] for r in found] == ["ttl"]
        assert named(found) == {e.seq for e in old}
        assert {e.seq for e in box} == {e.seq for e in young} | {info[0].seq} | {
            e.seq for e in events
        }
        assert not box.expiry_due()  # at most every min(ttl)/10 = 6 s
        clock.advance(600.0)
        events = box.commit([])
        assert named(reports(events)) == {e.seq for e in young} | {info[0].seq}


def test_ttl_never_expires_critical_events() -> None:
    with pytest.raises(ValueError, match="never expire"):
        OutboxLimits(ttl={0: 10.0})


def test_a_full_disk_is_survived_by_evicting_and_reported(
    tmp_path: Path, clock: VirtualClock
) -> None:
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:  # no cap: only the disk limits
        fill(box, clock, 300, pad=300)
        assert box._reserve is not None and box._reserve.release()  # already spent
        pages = box._conn.execute("PRAGMA page_count").fetchone()[0]
        box._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk is full
        with pytest.raises(OutboxFull):
            for _ in range(100):
                box.commit([draft(clock, pad=300) for _ in range(20)])
        last = box.last_seq
        events = box.commit([draft(clock, pad=300)])  # makes room first, then stores
        found = reports(events)
        assert [r["state"] for r in found] == ["evicted", "disk_full"]
        assert found[0]["reason"] == "disk"
        assert events[0].seq == last + 1
        assert {e.seq for e in box} | named(found) == set(range(1, box.last_seq + 1))


def test_the_reserve_lets_the_commit_that_meets_a_full_disk_evict_and_store(
    tmp_path: Path, clock: VirtualClock
) -> None:
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:  # no cap: only the disk limits
        fill(box, clock, 300, pad=300)
        pages = box._conn.execute("PRAGMA page_count").fetchone()[0]
        box._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk is full
        found: list[dict[str, Any]] = []
        for _ in range(100):  # never OutboxFull: the reserve makes room for the eviction
            found += reports(box.commit([draft(clock, pad=300) for _ in range(20)]))
        assert [r["state"] for r in found[:2]] == ["evicted", "disk_full"]
        assert {r["reason"] for r in found if r["state"] == "evicted"} == {"disk"}
        assert box.last_seq == 300 + 2000 + len(found)
        assert {e.seq for e in box} | named(found) == set(range(1, box.last_seq + 1))


def test_counters_survive_a_restart(tmp_path: Path, clock: VirtualClock) -> None:
    limits = OutboxLimits(max_bytes=CAP)
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        sent = fill(box, clock, 1500)
        box.ack([e.seq for e in sent[:100]])
        before = box.stats()
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        after = box.stats()
        assert replace(after, file_bytes=0) == replace(before, file_bytes=0)
        assert after.bytes == table_sizes(box)[1]


def test_runs() -> None:
    assert runs([]) == []
    assert runs([5, 1, 2, 3, 7, 8, 3]) == [[1, 3], [5, 5], [7, 8]]


# -- a property: the invariants hold under any sequence ----------------------------------

SPECS = st.tuples(
    st.sampled_from([("info", "telemetry"), ("info", "state"), ("warning", "threshold"),
                     ("critical", "threshold")]),
    st.integers(0, 900),
)  # fmt: skip

NONCRITICAL_SPECS = st.tuples(
    st.sampled_from([("info", "telemetry"), ("info", "state"), ("warning", "threshold")]),
    st.integers(0, 900),
)


class CappedOutbox(RuleBasedStateMachine):
    """Random appends, acks, restarts, a disk that fills and drafts it cannot take, under a
    small cap, checked against invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="eviction-"))
        self.clock = VirtualClock()
        self.limits = OutboxLimits()
        self.box: Outbox  # opened by the initialize rule, with drawn limits
        self.given: dict[int, int] = {}  # seq -> priority, every seq ever given
        self.acked: set[int] = set()
        self.reports: dict[int, dict[str, Any]] = {}  # seq -> body of each eviction report
        self.own: set[int] = set()  # seqs of the outbox's own health events
        self.last_seq = 0

    @initialize(
        rows=st.sampled_from([0, 30, 80]),
        reserve=st.sampled_from([0.0, 0.25, 0.5]),
        keep=st.booleans(),
    )
    def open(self, rows: int, reserve: float, keep: bool) -> None:
        self.limits = OutboxLimits(
            max_bytes=128 * 1024, max_events=rows, critical_reserve=reserve, keep_delivered=keep
        )
        self.box = Outbox.open(self.dir, DEVICE, limits=self.limits, clock=self.clock)

    def teardown(self) -> None:
        if hasattr(self, "box"):
            self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def pending(self) -> dict[int, int]:
        return {e.seq: e.priority for e in self.box}

    @rule(specs=st.lists(SPECS, min_size=1, max_size=25), acks=st.data())
    def commit(self, specs: list[tuple[tuple[Severity, str], int]], acks: st.DataObject) -> None:
        before = self.pending()
        chosen: list[int] = []
        if before and acks.draw(st.booleans()):
            chosen = acks.draw(st.lists(st.sampled_from(sorted(before)), unique=True))
        drafts = [draft(self.clock, sev, kind, pad) for (sev, kind), pad in specs]
        self.apply(before, drafts, chosen)

    def apply(self, before: dict[int, int], drafts: list[Draft], chosen: list[int]) -> None:
        try:
            events = self.box.commit(drafts, acked=chosen)
        except OutboxFull:  # the disk filled, nothing evictable left: nothing changed
            hypothesis.event("a commit met a full disk")
            assert self.pending() == before and self.box.last_seq == self.last_seq
            return
        # seq: consecutive from the last, never reused.
        first = self.last_seq + 1
        assert [e.seq for e in events] == list(range(first, first + len(events)))
        self.last_seq += len(events)
        for event in events:
            self.given[event.seq] = event.priority
            if event.sensor == "outbox":
                self.own.add(event.seq)
            if event.sensor == "outbox" and event.body()["state"] == "evicted":
                self.reports[event.seq] = event.body()
        self.acked.update(chosen)
        after = self.pending()
        new = {e.seq for e in events}
        gone = (set(before) | new) - set(after) - set(chosen)
        hypothesis.event("a commit evicted" if gone else "a commit evicted nothing")
        # Critical events are never evicted, nor the outbox's own reports.
        assert all(self.given[s] != 0 and s not in self.own for s in gone)
        # Lowest priority first, oldest first: nothing left is a better victim (the
        # outbox's own events are never victims).
        for seq in gone:
            priority = self.given[seq]
            for other, p in after.items():
                if other not in self.own:
                    assert p <= priority, (seq, other)
                    assert not (p == priority and other < seq), (seq, other)
        self.clock.advance(1.0)
        self.check_caps(events)

    def check_caps(self, events: list[Event]) -> None:
        budget = Budget(self.limits)
        usage: Usage = self.box._state.usage
        epoch = self.box.epoch
        appended_reports = sum(
            row_size(e.payload, e.sensor, e.kind, epoch) for e in events if e.sensor == "outbox"
        )
        # Within each cap, or what cannot be evicted plus at most one batch.
        fixed = usage.bytes[0] + usage.held[1]
        batch = (1 - LOW_WATER) * budget.bytes
        assert usage.total_bytes <= max(budget.bytes, fixed + batch) + appended_reports
        batch = (1 - LOW_WATER) * budget.noncritical_bytes
        limit = max(budget.noncritical_bytes, usage.held[1] + batch)
        assert usage.noncritical_bytes <= limit + appended_reports

    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        pending = sorted(self.pending())
        if not pending:
            return
        chosen = data.draw(st.lists(st.sampled_from(pending), min_size=1, unique=True))
        self.apply(self.pending(), [], chosen)  # an ack may clear an alarm, or evict

    @rule(spare=st.integers(0, 6))
    def disk_fills(self, spare: int) -> None:
        """The disk fills up (its reserve already spent): the file may grow ``spare``
        pages more. Commits must then evict a step at a time, or fail changing nothing."""
        reserve = self.box._reserve
        if reserve is not None:
            reserve.release()
        pages = self.box._conn.execute("PRAGMA page_count").fetchone()[0]
        self.box._conn.execute(f"PRAGMA max_page_count = {pages + spare}")

    @rule(specs=st.lists(NONCRITICAL_SPECS, min_size=1, max_size=5))
    def discard(self, specs: list[tuple[tuple[Severity, str], int]]) -> None:
        """Drafts a full disk cannot take: numbered, reported, never stored."""
        drafts = [draft(self.clock, sev, kind, pad) for (sev, kind), pad in specs]
        before = self.pending()
        try:
            events = self.box.discard(drafts)
        except OutboxFull:
            assert self.pending() == before and self.box.last_seq == self.last_seq
            return
        first = self.last_seq + 1
        lost = range(first, first + len(drafts))
        for seq, d in zip(lost, drafts, strict=True):
            self.given[seq] = d.priority
        (report,) = events
        assert report.seq == first + len(drafts) == self.box.last_seq
        self.last_seq = report.seq
        self.given[report.seq] = report.priority
        self.own.add(report.seq)
        self.reports[report.seq] = report.body()
        assert named([report.body()]) == set(lost)
        assert self.pending() == {**before, report.seq: report.priority}

    @rule()
    def reopen(self) -> None:
        self.box.close()
        self.box = Outbox.open(self.dir, DEVICE, limits=self.limits, clock=self.clock)
        assert self.box.last_seq == self.last_seq

    @invariant()
    def nothing_disappears_silently(self) -> None:
        pending = set(self.pending())
        evicted = set(self.given) - pending - self.acked
        # The reports still alive (pending or delivered) name exactly the evicted seqs.
        alive = [body for seq, body in self.reports.items() if seq not in evicted]
        assert named(alive) == evicted
        stats = self.box.stats()
        assert stats.evicted == len(evicted) == sum(body["evicted"] for body in alive)
        assert stats.last_seq == self.last_seq
        assert stats.pending == len(pending)
        assert not any(self.given[s] == 0 for s in evicted)
        rows, size = table_sizes(self.box)
        assert (stats.pending + stats.kept, stats.bytes) == (rows, size)


TestCappedOutbox = CappedOutbox.TestCase
TestCappedOutbox.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)


def test_low_water_is_below_the_cap() -> None:
    assert 0.5 < LOW_WATER < 1.0
    usage = Usage()
    assert not Budget(OutboxLimits()).over(usage)
    assert json.loads(usage.to_json())["rows"] == [0, 0, 0, 0]
