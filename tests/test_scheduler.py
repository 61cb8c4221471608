"""Scheduler timing on the virtual clock: next-due times, no drift, jitter, posted work."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import RealClock, ScaledClock, VirtualClock
from edge.runtime.scheduler import Scheduler


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
