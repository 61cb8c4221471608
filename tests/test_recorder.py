"""The recorder's group-commit thread over a real outbox file, timed by a virtual clock.

Waits are on threading events with real-time bounds; the commit window itself is real time
(it is about disk writes), so windows here are either short (0.05 s) or long enough (30 s)
that a test passing proves the window was not waited out.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edge.clock import VirtualClock
from edge.events import Draft, Event, format_ts
from edge.outbox.store import Outbox, OutboxLimits
from edge.runtime.recorder import ACK_BATCH, DISCARD_AFTER, MAX_BATCH, Recorder
from models import Severity
from tests.waiting import wait_until

DEVICE = "pi-1"
WAIT = 10.0  # real-time bound on anything that should happen promptly


class Commits:
    """A delivery loop that records every commit and can be waited on; it spares nothing."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.acks: list[int] = []
        self.count = 0
        self._cond = threading.Condition()

    def spared(self) -> Collection[int]:
        return ()

    def stored(self, events: Sequence[Event], acks: Collection[int]) -> None:
        with self._cond:
            self.events.extend(events)
            self.acks.extend(acks)
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Commits], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


def stamp(clock: VirtualClock, value: Any, severity: Severity = "info") -> Draft:
    return Draft(
        sensor="t",
        kind="telemetry" if severity == "info" else "threshold",
        severity=severity,
        value=value,
        mono=clock.monotonic(),
        wall=clock.wall(),
        synced=clock.synced(),
    )


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(synced=True)


@pytest.fixture
def outbox(tmp_path: Path, clock: VirtualClock) -> Iterator[Outbox]:
    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch) as box:
        yield box


@pytest.fixture
def commits() -> Commits:
    return Commits()


@pytest.fixture
def start(outbox: Outbox, clock: VirtualClock, commits: Commits) -> Iterator[Any]:
    started: list[Recorder] = []

    def make(window: float = 0.05, **options: Any) -> Recorder:
        recorder = Recorder(outbox, clock, window=window, delivery=commits, **options)
        recorder.start()
        started.append(recorder)
        return recorder

    try:
        yield make
    finally:
        for recorder in started:
            recorder.close()


def stored(outbox: Outbox) -> list[dict[str, Any]]:
    return [e.body() for e in sorted(outbox.claim(limit=-1), key=lambda e: e.seq)]


def test_drafts_land_in_submission_order_with_consecutive_seqs(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.05)
    for i in range(300):
        recorder.submit(stamp(clock, i))
        clock.advance(0.01)
    assert recorder.flush(timeout=WAIT)
    rows = stored(outbox)
    assert [r["value"] for r in rows] == list(range(300))
    assert [r["seq"] for r in rows] == list(range(1, 301))
    assert [e.seq for e in commits.events] == list(range(1, 301))
    assert recorder.queued == 0
    assert recorder.dropped == 0


def test_many_quick_drafts_share_few_commits(
    start: Any, outbox: Outbox, clock: VirtualClock
) -> None:
    recorder = start(window=0.05)
    for i in range(500):
        recorder.submit(stamp(clock, i))
    assert recorder.flush(timeout=WAIT)
    assert outbox.stats().pending == 500
    assert 1 <= recorder.commits <= 25  # one per window, not one per draft


def test_a_critical_draft_does_not_wait_for_the_window(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=30.0)
    recorder.submit(stamp(clock, 1.0))
    # The window really is long: the info draft is still waiting for it.
    assert not commits.wait_for(lambda c: c.count > 0, timeout=0.2)
    assert outbox.stats().pending == 0
    recorder.submit(stamp(clock, 99.0, "critical"))
    assert commits.wait_for(lambda c: len(c.events) == 2)  # well before 30 s
    assert {e.body()["severity"] for e in commits.events} == {"info", "critical"}
    assert outbox.stats().pending_by_priority == {0: 1, 3: 1}


def test_telemetry_waits_for_the_bulk_window_and_a_warning_takes_it_along(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.05, bulk_window=30.0)
    recorder.submit(stamp(clock, 1.0))
    recorder.submit(stamp(clock, 2.0))
    # Longer than the commit window: the info drafts wait for the bulk window.
    assert not commits.wait_for(lambda c: c.count > 0, timeout=0.3)
    recorder.submit(stamp(clock, 3.0, "warning"))
    assert commits.wait_for(lambda c: c.count > 0)  # the commit window, not 30 s
    assert not commits.wait_for(lambda c: c.count > 1, timeout=0.1)
    assert [e.body()["value"] for e in commits.events] == [1.0, 2.0, 3.0]  # one commit
    assert outbox.stats().pending_by_priority == {1: 1, 3: 2}


def test_telemetry_alone_is_committed_when_the_bulk_window_ends(
    start: Any, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.01, bulk_window=0.5)
    began = time.monotonic()
    recorder.submit(stamp(clock, 1.0))
    assert commits.wait_for(lambda c: c.count == 1)
    assert time.monotonic() - began >= 0.5  # not after the 10 ms window
    assert recorder.commits == 1


def test_a_full_batch_of_telemetry_does_not_wait_for_the_bulk_window(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.05, bulk_window=30.0)
    for i in range(MAX_BATCH):
        recorder.submit(stamp(clock, i))
    assert commits.wait_for(lambda c: len(c.events) == MAX_BATCH)
    assert outbox.stats().pending == MAX_BATCH


def test_acknowledgements_ride_with_the_next_commit_of_drafts(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.05, bulk_window=30.0)
    for i in range(5):
        recorder.submit(stamp(clock, i))
    assert recorder.flush(timeout=WAIT)
    assert recorder.commits == 1
    recorder.acknowledge([1, 2])
    recorder.submit(stamp(clock, 5))
    # Neither the deletions nor the telemetry make a commit of their own meanwhile.
    assert not commits.wait_for(lambda c: c.count > 1, timeout=0.3)
    assert outbox.stats().delivered == 0
    recorder.submit(stamp(clock, 6, "warning"))
    assert commits.wait_for(lambda c: c.count == 2)
    assert sorted(commits.acks) == [1, 2] and recorder.commits == 2
    assert [e.seq for e in commits.events] == list(range(1, 8))
    stats = outbox.stats()
    assert (stats.delivered, stats.pending) == (2, 5)


def test_acknowledgements_alone_are_deleted_after_the_bulk_window(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.01, bulk_window=0.5)
    recorder.submit(stamp(clock, 1, "critical"))
    assert commits.wait_for(lambda c: c.count == 1)
    began = time.monotonic()
    recorder.acknowledge([1])
    assert commits.wait_for(lambda c: c.count == 2)
    assert time.monotonic() - began >= 0.5
    assert commits.acks == [1] and outbox.stats().delivered == 1


def test_a_drain_s_acknowledgements_do_not_wait_for_the_bulk_window(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.05, bulk_window=30.0)
    for i in range(ACK_BATCH):
        recorder.submit(stamp(clock, i))
    assert recorder.flush(timeout=WAIT)
    recorder.acknowledge(range(1, ACK_BATCH))
    assert not commits.wait_for(lambda c: len(c.acks) > 0, timeout=0.3)  # one short
    recorder.acknowledge([ACK_BATCH])
    assert commits.wait_for(lambda c: len(c.acks) == ACK_BATCH)  # well before 30 s
    assert outbox.stats().delivered == ACK_BATCH


def test_flush_does_not_wait_for_the_bulk_window(
    start: Any, outbox: Outbox, clock: VirtualClock
) -> None:
    recorder = start(window=0.05, bulk_window=30.0)
    recorder.submit(stamp(clock, 1))
    began = time.monotonic()
    assert recorder.flush(timeout=WAIT)
    recorder.acknowledge([1])
    recorder.submit(stamp(clock, 2))
    assert recorder.flush(timeout=WAIT)
    assert time.monotonic() - began < WAIT / 2
    stats = outbox.stats()
    assert (stats.delivered, stats.pending) == (1, 1)


def test_a_bulk_window_shorter_than_the_window_is_refused(outbox: Outbox) -> None:
    with pytest.raises(ValueError, match="shorter than window"):
        Recorder(outbox, VirtualClock(), window=0.1, bulk_window=0.05)


def test_acknowledge_deletes(
    start: Any, outbox: Outbox, clock: VirtualClock, commits: Commits
) -> None:
    recorder = start(window=0.05)
    for i in range(5):
        recorder.submit(stamp(clock, i))
    assert recorder.flush(timeout=WAIT)
    recorder.acknowledge([1, 3, 5])
    assert recorder.flush(timeout=WAIT)
    assert [r["seq"] for r in stored(outbox)] == [2, 4]
    assert sorted(commits.acks) == [1, 3, 5]
    assert outbox.stats().delivered == 3


def test_close_commits_everything_queued(tmp_path: Path, clock: VirtualClock) -> None:
    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch) as box:
        recorder = Recorder(box, clock, window=30.0)
        recorder.start()
        for i in range(200):
            recorder.submit(stamp(clock, i))
        recorder.close()
        recorder.close()  # idempotent
    with Outbox.open(tmp_path, DEVICE) as box:
        assert box.stats().pending == 200
        assert box.last_seq == 200
        assert [r["value"] for r in stored(box)] == list(range(200))


def test_earlier_rows_are_corrected_once_the_clock_syncs(tmp_path: Path, commits: Commits) -> None:
    clock = VirtualClock(synced=False, start_wall=0.0, start_monotonic=10.0)  # no RTC: 1970
    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch) as box:
        recorder = Recorder(box, clock, window=0.05, delivery=commits)
        recorder.start()
        try:
            early = []
            for i in range(3):
                d = stamp(clock, i)
                assert d.synced is False
                early.append(d)
                recorder.submit(d)
                clock.advance(1.5)
            ntp_wall = 1_767_225_600.0
            clock.set_synced(True, wall_step=ntp_wall - clock.wall())  # NTP: now is 2026
            last = stamp(clock, 3)
            recorder.submit(last)
            assert recorder.flush(timeout=WAIT)
            rows = stored(box)
            assert [r["synced"] for r in rows] == [True] * 4
            for row, d in zip(rows[:3], early, strict=True):
                assert row["ts_corrected"] is True
                assert row["ts"] == format_ts(ntp_wall - (clock.monotonic() - d.mono))
            assert rows[0]["ts"] == "2025-12-31T23:59:55.500Z"  # 4.5 s before the sync
            assert "ts_corrected" not in rows[3]
            assert rows[3]["ts"] == format_ts(ntp_wall)
        finally:
            recorder.close()


def test_flush_waits_for_the_commit_callback_and_the_clock_correction(
    tmp_path: Path,
) -> None:
    """flush() must not return while the last batch is still being handed on."""
    clock = VirtualClock(synced=False)
    entered, release = threading.Event(), threading.Event()

    class SlowDelivery(Commits):
        def stored(self, events: Sequence[Event], acks: Collection[int]) -> None:
            entered.set()
            assert release.wait(WAIT)

    with Outbox.open(tmp_path, DEVICE, epoch=clock.epoch) as box:
        recorder = Recorder(box, clock, window=30.0, delivery=SlowDelivery())
        recorder.start()
        try:
            recorder.submit(stamp(clock, 1))
            clock.set_synced(True)
            recorder.submit(stamp(clock, 2, "critical"))  # commits at once
            assert entered.wait(WAIT)
            # Both drafts are in the file, but the callback has not finished and the
            # unsynced row has not been corrected: flush must say "not yet".
            assert recorder.queued == 0
            assert not recorder.flush(timeout=0.2)
            release.set()
            assert recorder.flush(timeout=WAIT)
            assert [r["synced"] for r in stored(box)] == [True, True]
        finally:
            release.set()
            recorder.close()


def test_flush_after_close_answers_at_once(outbox: Outbox, clock: VirtualClock) -> None:
    recorder = Recorder(outbox, clock, window=0.05)
    recorder.start()
    recorder.submit(stamp(clock, 1))
    recorder.close()
    began = time.monotonic()
    assert recorder.flush(timeout=WAIT)  # everything was committed by close()
    recorder.acknowledge([1])  # too late: no thread will delete it
    assert not recorder.flush(timeout=WAIT)
    assert time.monotonic() - began < WAIT / 2  # answered, not timed out
    assert outbox.stats().pending == 1


def test_drafts_dropped_for_lack_of_memory_are_reported_upstream(tmp_path: Path) -> None:
    clock = VirtualClock()
    with Outbox.open(tmp_path, "dev") as outbox:
        recorder = Recorder(outbox, clock, window=30.0, max_queued=5)
        for i in range(8):  # the thread is not running yet: 3 of these do not fit
            recorder.submit(Draft("s", "telemetry", "info", i, 1.0, 1.0, True))
        assert recorder.dropped == 3
        recorder.start()
        assert recorder.flush(timeout=10)
        assert recorder.flush(timeout=10)  # the report is committed on the next pass
        recorder.close()
        bodies = [e.body() for e in outbox.claim(limit=-1)]
    health = [b for b in bodies if b["kind"] == "health"]
    assert len(bodies) == 6 and len(health) == 1
    assert health[0]["sensor"] == "runtime" and health[0]["severity"] == "critical"
    assert health[0]["dropped"] == 3 and health[0]["state"] == "dropped"


def test_a_full_disk_does_not_stop_the_recorder_and_is_reported(tmp_path: Path) -> None:
    clock = VirtualClock()
    commits = Commits()
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:
        recorder = Recorder(box, clock, window=0.01, delivery=commits)
        recorder.start()
        try:
            for _ in range(300):
                recorder.submit(stamp(clock, "x" * 300))
            assert recorder.flush(timeout=WAIT)
            assert box._reserve is not None and box._reserve.release()  # spent: commits fail
            pages = box._conn.execute("PRAGMA page_count").fetchone()[0]
            box._conn.execute(f"PRAGMA max_page_count = {pages + 2}")  # the disk is full
            for _ in range(300):
                recorder.submit(stamp(clock, "y" * 300))
            assert commits.wait_for(lambda c: any(e.sensor == "outbox" for e in c.events))
            assert recorder.flush(timeout=WAIT)
            assert recorder.failures >= 1 and recorder.queued == 0
        finally:
            recorder.close()
        states = [e.body()["state"] for e in commits.events if e.sensor == "outbox"]
        assert "disk_full" in states and "evicted" in states
        assert box.last_seq == 600 + len(states)  # every draft got its seq, none was lost
        # silently: each is stored or named in a report
        named = {
            s
            for e in commits.events
            if e.sensor == "outbox" and e.body()["state"] == "evicted"
            for a, b in e.body()["ranges"]
            for s in range(a, b + 1)
        }
        assert {e.seq for e in box} | named == set(range(1, box.last_seq + 1))


def test_stale_events_expire_even_when_nothing_new_arrives(tmp_path: Path) -> None:
    clock = VirtualClock()
    commits = Commits()
    limits = OutboxLimits(ttl={3: 10.0})  # expiry every second (a tenth of the TTL, at least 1 s)
    with Outbox.open(tmp_path, DEVICE, limits=limits, clock=clock) as box:
        recorder = Recorder(box, clock, window=0.01, delivery=commits)
        recorder.start()
        try:
            for i in range(5):
                recorder.submit(stamp(clock, i))
            assert recorder.flush(timeout=WAIT)
            clock.advance(11.0)  # nothing submitted from here on
            assert commits.wait_for(lambda c: any(e.sensor == "outbox" for e in c.events))
        finally:
            recorder.close()
        report = next(e.body() for e in commits.events if e.sensor == "outbox")
        assert (report["reason"], report["ranges"]) == ("ttl", [[1, 5]])
        assert [e.sensor for e in box] == ["outbox"]


def spend_the_reserve(box: Outbox) -> None:
    """The disk filled before: the outbox's reserve is already gone."""
    reserve = getattr(box, "_reserve", None)
    if reserve is not None:
        assert reserve.release()


def test_events_a_full_disk_cannot_take_are_numbered_and_reported_not_dropped(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    commits = Commits()
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:
        box.commit([stamp(clock, "c" * 300, "critical") for _ in range(300)])  # never evicted
        spend_the_reserve(box)
        pages = box._conn.execute("PRAGMA page_count").fetchone()[0]
        box._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk stays full
        recorder = Recorder(box, clock, window=0.01, delivery=commits)
        recorder.start()
        try:
            for _ in range(100):
                recorder.submit(stamp(clock, "i" * 300))
            for _ in range(100):
                recorder.submit(stamp(clock, "c" * 300, "critical"))
            # The info events are numbered and reported lost while it runs ...
            assert commits.wait_for(lambda c: any(e.sensor == "outbox" for e in c.events))
            assert recorder.queued == 100  # ... the critical ones wait for room
        finally:
            recorder.close()  # ... until shutdown: then they are numbered and reported too
        bodies = [e.body() for e in commits.events if e.sensor == "outbox"]
        assert recorder.dropped == 0 and recorder.queued == 0
        assert box.last_seq == 500 + len(bodies)
        lost = {s for b in bodies for first, last in b["ranges"] for s in range(first, last + 1)}
        reported = {b["seq"] for b in bodies}
        assert len(lost) == 200 and lost | reported == set(range(301, box.last_seq + 1))
        assert {b["reason"] for b in bodies} == {"disk"}
        assert sum(b["priority"].get("critical", 0) for b in bodies) == 100
        assert [e.priority for e in commits.events if e.sensor == "outbox"][-1] == 0  # critical


def test_events_wait_in_memory_through_failures_other_than_a_full_disk(tmp_path: Path) -> None:
    clock = VirtualClock()
    commits = Commits()
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:
        box._conn.execute("PRAGMA busy_timeout = 10")
        other = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        recorder = Recorder(box, clock, window=0.01, delivery=commits)
        recorder.start()
        try:
            for _ in range(50):
                recorder.submit(stamp(clock, "i" * 30))
            wait_until(lambda: recorder.failures > DISCARD_AFTER, timeout=WAIT)
            assert recorder.queued == 50 and box.last_seq == 0  # nothing numbered away
            other.execute("ROLLBACK")
            assert recorder.flush(timeout=WAIT)
        finally:
            recorder.close()
            other.close()
        assert box.last_seq == 50 and [e.seq for e in box] == list(range(1, 51))
        assert not [e for e in commits.events if e.sensor == "outbox"]


@pytest.mark.parametrize("keep_delivered", [True, False])
def test_after_a_power_cut_the_counters_equal_a_recount_and_no_seq_is_reused(
    tmp_path: Path, clock: VirtualClock, keep_delivered: bool
) -> None:
    limits = OutboxLimits(keep_delivered=keep_delivered)
    box = Outbox.open(tmp_path, DEVICE, limits=limits, epoch=clock.epoch)
    commits = Commits()
    recorder = Recorder(box, clock, window=0.05, bulk_window=30.0, delivery=commits)
    recorder.start()
    for i in range(20):
        recorder.submit(stamp(clock, i))
    assert recorder.flush(timeout=WAIT)
    recorder.acknowledge(range(1, 21))  # the newest rows too: without replay, all go
    recorder.submit(stamp(clock, 20, "warning"))
    assert commits.wait_for(lambda c: len(c.acks) == 20)
    for i in range(5):  # queued for the bulk window: the power cut takes them
        recorder.submit(stamp(clock, i))
    recorder.acknowledge([21])
    recorder.abort()
    box._conn.close()  # no flush, no clean close of the outbox

    with Outbox.open(tmp_path, DEVICE, limits=limits) as reopened:
        stats = reopened.stats()
        assert (stats.last_seq, stats.delivered, stats.pending) == (21, 20, 1)
        assert stats.kept == (20 if keep_delivered else 0)
        recount = reopened._recount()
        assert recount.rows == [0, 1, 0, 0] and recount.pending == stats.pending
        assert (recount.kept, recount.bytes) == (stats.kept, reopened._state.usage.bytes)
        assert reopened.append(stamp(clock, "next")).seq == 22  # never a seq reused
