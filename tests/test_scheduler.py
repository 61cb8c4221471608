"""Scheduler timing on the virtual clock: next-due times, no drift, jitter, posted work,
and tasks that share an interval spread across it."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import RealClock, ScaledClock, VirtualClock
from edge.runtime.scheduler import Scheduler, staggered


def test_each_task_runs_at_its_own_interval_without_drift() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    runs: dict[str, list[float]] = {"fast": [], "slow": []}
    scheduler.every("fast", 0.1, lambda due: runs["fast"].append(clock.monotonic() - start))
    scheduler.every("slow", 0.7, lambda due: runs["slow"].append(clock.monotonic() - start))

    scheduler.run(until=start + 70.0)

    # 0.1 s steps summed 700 times would drift by float error; next-due times do not.
    assert len(runs["fast"]) == 701
    assert len(runs["slow"]) == 101
    assert runs["fast"][-1] == pytest.approx(70.0, abs=1e-9)
    assert all(t == pytest.approx(i * 0.1, abs=1e-9) for i, t in enumerate(runs["fast"]))
    assert scheduler.jitter().max == 0.0
    assert scheduler.jitter().polls == 802


def test_a_slow_poll_delays_one_reading_and_skips_whole_missed_intervals() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    seen: list[float] = []

    def poll(due: float) -> None:
        seen.append(clock.monotonic() - start)
        if len(seen) == 3:
            clock.advance(2.5)  # this poll takes 2.5 s: intervals at 3, 4 are missed

    task = scheduler.every("s", 1.0, poll)
    scheduler.run(until=start + 8.0)

    assert seen == pytest.approx([0.0, 1.0, 2.0, 5.0, 6.0, 7.0, 8.0])
    assert task.skipped == 2
    assert scheduler.jitter().max == 0.0  # the poll after the overrun starts on its slot
    assert scheduler.jitter().skipped == 2


def test_jitter_reports_lateness_when_polls_are_late() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    scheduler.every("s", 1.0, lambda due: clock.advance(0.25))  # each poll costs 0.25 s
    scheduler.run(until=start + 10.0)
    jitter = scheduler.jitter()
    # Due times stay on the grid, so every poll starts on time despite the cost.
    assert jitter.polls == 11
    assert jitter.max == 0.0


def test_posted_work_runs_on_the_loop_thread_between_polls() -> None:
    clock = VirtualClock()
    scheduler = Scheduler(clock)  # a test thread drives the clock
    loop_threads: list[str] = []
    posted_ran = threading.Event()

    def posted() -> None:
        loop_threads.append(threading.current_thread().name)
        posted_ran.set()

    scheduler.every("s", 1.0, lambda due: None)
    runner = threading.Thread(target=scheduler.run, name="loop")
    runner.start()
    try:
        threading.Thread(target=scheduler.post, args=(posted,), name="gpio").start()
        assert posted_ran.wait(5.0)
        assert loop_threads == ["loop"]
    finally:
        scheduler.stop()
        runner.join(5.0)
    assert not runner.is_alive()


def test_one_shot_tasks_run_once_at_their_time() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    fired: list[float] = []
    scheduler.at("once", start + 3.5, lambda due: fired.append(clock.monotonic() - start))
    scheduler.every("tick", 1.0, lambda due: None)
    scheduler.run(until=start + 10.0)
    assert fired == [3.5]
    assert scheduler.jitter().polls == 11  # one-shots are not polls


def test_a_failing_task_does_not_kill_the_loop() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    good: list[float] = []

    def bad(due: float) -> None:
        raise OSError(121, "Remote I/O error")

    scheduler.every("bad", 1.0, bad)
    scheduler.every("good", 1.0, good.append)
    scheduler.run(until=start + 5.0)
    assert len(good) == 6


def test_the_loop_waits_for_a_test_driven_clock() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock)
    count = threading.Semaphore(0)
    scheduler.every("s", 1.0, lambda due: count.release())
    runner = threading.Thread(target=scheduler.run, kwargs={"until": start + 3.0})
    runner.start()
    assert count.acquire(timeout=5.0)  # t=0 is due at once
    assert not count.acquire(timeout=0.2)  # nothing more until the clock moves
    clock.advance(1.0)
    assert count.acquire(timeout=5.0)
    clock.advance(2.0)
    runner.join(5.0)
    assert not runner.is_alive()


@settings(max_examples=50, deadline=None)
@given(
    intervals=st.lists(st.floats(0.01, 5.0), min_size=1, max_size=5),
    horizon=st.floats(1.0, 60.0),
)
def test_poll_counts_match_the_interval_grid(intervals: list[float], horizon: float) -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    tasks = [scheduler.every(f"t{i}", iv, lambda due: None) for i, iv in enumerate(intervals)]
    scheduler.run(until=start + horizon)
    for task, interval in zip(tasks, intervals, strict=True):
        expected = int((horizon + 1e-9) // interval) + 1
        # Float grid edges may put the last tick either side of the horizon.
        assert abs(task.runs - expected) <= 1
        assert task.skipped == 0


def test_sensors_sharing_an_interval_fall_due_spread_across_it_and_never_drift() -> None:
    clock = VirtualClock()
    start = clock.monotonic()
    scheduler = Scheduler(clock, drive_clock=True)
    names = [f"s{i}" for i in range(8)]
    first = staggered(((name, 0.1) for name in names), burst=1)  # one instant each
    runs: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        scheduler.every(name, 0.1, lambda due, n=name: runs[n].append(due - start),
                        first=first[name])  # fmt: skip

    scheduler.run(until=start + 100.0)

    firsts = [runs[name][0] for name in names]
    assert firsts == pytest.approx([i * 0.1 / 8 for i in range(8)], abs=1e-12)
    assert len(set(firsts)) == 8 and all(0.0 <= t < 0.1 for t in firsts)
    for name, offset in zip(names, firsts, strict=True):
        # Still on each one's own grid after 1,000 polls: no drift from the offset.
        assert runs[name] == pytest.approx([offset + k * 0.1 for k in range(len(runs[name]))],
                                           abs=1e-9)  # fmt: skip
        assert len(runs[name]) in (1000, 1001)  # the last slot falls either side of the end
    assert scheduler.jitter().max == 0.0


def test_staggering_is_reproducible_and_keeps_config_order() -> None:
    tasks = [("b", 1.0), ("a", 1.0), ("fast", 0.25), ("c", 1.0)]
    assert staggered(tasks, burst=1) == staggered(list(tasks), burst=1)
    offsets = staggered(tasks, burst=1)
    assert offsets["b"] < offsets["a"] < offsets["c"]  # rank in the order given
    assert offsets["fast"] == 0.0  # a task alone in its interval starts at once
    assert staggered([]) == {}


def test_a_burst_of_polls_is_bounded_without_a_wake_up_per_sensor() -> None:
    # 100 sensors at 10 Hz: five instants of 20, 20 ms apart, instead of one of 100.
    offsets = staggered((f"s{i}", 0.1) for i in range(100))
    instants = sorted({round(t, 9) for t in offsets.values()})
    assert instants == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    assert all(sum(1 for t in offsets.values() if round(t, 9) == i) == 20 for i in instants)
    # As many as one burst takes all fall due together: one wake-up per interval.
    assert set(staggered((f"s{i}", 0.1) for i in range(20)).values()) == {0.0}
    # Split evenly, not 20 and a straggler.
    uneven = staggered((f"s{i}", 1.0) for i in range(21))
    assert sorted(uneven.values()).count(0.0) == 11
    # A long interval: the bursts within its first 100 ms, so one commit window takes them.
    long = staggered((f"s{i}", 60.0) for i in range(100))
    assert sorted(set(long.values())) == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])


def test_interval_groups_interleave_instead_of_stacking() -> None:
    tasks = [(f"fast{i}", 0.1) for i in range(20)] + [(f"slow{i}", 1.0) for i in range(10)]
    offsets = staggered(tasks, burst=1)
    # Over the slow interval, no two polls (of either group) fall due at the same instant.
    dues = [round(offsets[name] + k * interval, 9) for name, interval in tasks
            for k in range(round(1.0 / interval))]  # fmt: skip
    assert len(dues) == 20 * 10 + 10
    assert len(set(dues)) == len(dues)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from([0.01, 0.1, 0.25, 1.0, 2.5, 60.0]), min_size=1, max_size=40),
       st.integers(1, 30))  # fmt: skip
def test_every_offset_lies_within_its_interval_and_bursts_are_bounded(
    intervals: list[float], burst: int
) -> None:
    tasks = [(f"t{i}", interval) for i, interval in enumerate(intervals)]
    offsets = staggered(tasks, burst=burst)
    assert set(offsets) == {name for name, _ in tasks}
    for name, interval in tasks:
        assert 0.0 <= offsets[name] < interval
    for interval in set(intervals):
        group = [offsets[name] for name, every in tasks if every == interval]
        assert max(group.count(t) for t in group) <= burst
        assert len(set(group)) == -(-len(group) // burst)  # no more instants than needed


def test_only_a_virtual_clock_can_be_driven() -> None:
    with pytest.raises(ValueError, match="VirtualClock"):
        Scheduler(RealClock(), drive_clock=True)


def test_virtual_clock_never_goes_backwards_and_wall_follows_monotonic() -> None:
    clock = VirtualClock(start_wall=1_000_000.0, start_monotonic=10.0)
    clock.advance(5.0)
    clock.advance_to(12.0)  # earlier than now: ignored
    assert clock.monotonic() == 15.0
    assert clock.wall() == 1_000_005.0
    with pytest.raises(ValueError):
        clock.advance(-1.0)


def test_real_clock_sync_status_is_probed_and_latched() -> None:
    answers = iter([False, True, False])
    clock = RealClock(probe=lambda: next(answers), probe_interval=0.0)
    assert clock.synced() is False
    assert clock.synced() is True
    assert clock.synced() is True  # once synced, a later probe cannot unsync the stamps
    assert RealClock(assume_synced=True, probe=lambda: False).synced() is True


def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(1000.0)
    wake = threading.Event()
    before = clock.monotonic()
    assert clock.wait(wake, before + 50.0) is False  # 50 simulated s = 50 ms real
    assert clock.monotonic() >= before + 50.0
