"""The sampling loop: runs each task at its own interval, on next-due times, never drifting.

Each task's due times are ``start + k * interval``, so a slow poll delays one reading, not
every later one; a poll that overruns whole intervals skips them (counted) rather than
bursting. Lateness (actual minus due) is the loop's jitter and is kept per run. Work from
other threads (GPIO edge callbacks) enters through ``post``, a thread-safe queue the loop
drains between polls. Nothing here touches the network or the disk.

Sensors that share an interval are spread across it in small bursts (``staggered``) rather
than all falling due at one instant: a long burst of polls holds the one interpreter lock in
a lump that the recorder and the uplink queue behind.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from edge.clock import Clock, VirtualClock

log = logging.getLogger(__name__)

_LATENESS_SAMPLES = 4096  # recent lateness values kept for percentiles
# Polls that may fall due at one instant. A burst holds the interpreter lock: with telemetry
# a poll is ~70 us of Python, so 20 are under 1.5 ms, well inside the latency budget and
# the 5 ms switch interval (100 were 7 ms). Spreading further costs CPU: each instant is a
# wake-up of the loop with cold caches, ~200 us of CPU on a 2-core x86 VM; one instant per
# sensor took 20 sensors at 10 Hz from 0.6 % to 1.9 % of a core.
POLLS_PER_INSTANT = 20
# The bursts are spread over this much of the interval at most: spread over a whole 1 s
# interval they outlasted the group-commit window, each burst took a commit of its own,
# and CPU per reading of 100 sensors at 1 Hz rose from ~75 to ~140 us (~72 us so). Packed
# 5 ms apart instead, 100 readings arrived within 20 ms and the subscriber's p99 at 1,000
# events/s doubled.
SPREAD_SPAN = 0.1


@dataclass
class Task:
    name: str
    interval: float  # 0 for a one-shot task
    action: Callable[[float], None]  # called with the due time
    due: float
    start: float = 0.0  # due times are start + k * interval: no drift from summing
    k: int = 0
    runs: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Jitter:
    """Lateness of polls behind their due times, in seconds."""

    polls: int
    skipped: int
    mean: float
    p99: float
    max: float


@dataclass
class _Lateness:
    samples: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENESS_SAMPLES))
    count: int = 0
    total: float = 0.0
    worst: float = 0.0

    def add(self, value: float) -> None:
        self.samples.append(value)
        self.count += 1
        self.total += value
        self.worst = max(self.worst, value)


def staggered(
    intervals: Iterable[tuple[str, float]],
    *,
    burst: int = POLLS_PER_INSTANT,
    span: float = SPREAD_SPAN,
) -> dict[str, float]:
    """Each task's first-due offset, so that tasks sharing an interval are spread across it.

    The n tasks with interval T fall due at ``ceil(n / burst)`` instants spaced evenly
    across T, or across ``span`` when T is longer, from 0; split evenly among them in the
    order given: at most ``burst`` at each. Each further interval group is shifted by a
    fraction of the smallest slot, so groups interleave rather than stack on the same
    instants. Deterministic: the same tasks in the same order get the same offsets, so a
    simulation stays reproducible for a seed.
    """
    groups: dict[float, list[str]] = {}
    for name, interval in intervals:
        groups.setdefault(interval, []).append(name)
    if not groups:
        return {}
    counts = {interval: -(-len(names) // burst) for interval, names in groups.items()}
    slots = {interval: min(interval, span) / counts[interval] for interval in groups}
    smallest = min(slots.values())
    offsets: dict[str, float] = {}
    for g, (interval, names) in enumerate(sorted(groups.items())):
        shift = g * smallest / len(groups)  # < one slot of any group: stays within the interval
        count = counts[interval]
        for i, name in enumerate(names):
            offsets[name] = (i * count // len(names)) * slots[interval] + shift
    return offsets


class Scheduler:
    """Runs tasks on one thread against one clock.

    With ``drive_clock`` (a VirtualClock only), the loop advances time to the next due
    instead of waiting: the simulator's "as fast as possible".
    """

    def __init__(self, clock: Clock, *, drive_clock: bool = False) -> None:
        if drive_clock and not isinstance(clock, VirtualClock):
            raise ValueError("only a VirtualClock can be driven by the scheduler")
        self.clock = clock
        self.drive_clock = drive_clock
        self._heap: list[tuple[float, int, Task]] = []
        self._order = itertools.count()
        self._posted: deque[Callable[[], None]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lateness = _Lateness()
        self.tasks: list[Task] = []

    def every(
        self, name: str, interval: float, action: Callable[[float], None], *, first: float = 0.0
    ) -> Task:
        """Run ``action(due)`` every ``interval`` seconds, first after ``first`` seconds."""
        if interval <= 0:
            raise ValueError(f"interval of {name} must be positive, not {interval}")
        begin = self.clock.monotonic() + first
        task = Task(name, interval, action, begin, start=begin)
        self.tasks.append(task)
        heapq.heappush(self._heap, (task.due, next(self._order), task))
        return task

    def at(self, name: str, when: float, action: Callable[[float], None]) -> Task:
        """Run ``action(due)`` once, when the clock reaches ``when`` (monotonic seconds)."""
        task = Task(name, 0.0, action, when)
        heapq.heappush(self._heap, (task.due, next(self._order), task))
        return task

    def post(self, work: Callable[[], None]) -> None:
        """Run ``work`` on the loop thread soon. Safe from any thread; never blocks."""
        self._posted.append(work)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def run(self, until: float | None = None) -> None:
        """Loop until ``stop()``, or until the clock reaches ``until`` (monotonic seconds)."""
        while not self._stop.is_set():
            self._drain_posted()
            if not self._heap:
                deadline = until if until is not None else self.clock.monotonic() + 3600.0
                if self._sleep_until(deadline):
                    return
                continue
            due = self._heap[0][0]
            if until is not None and due > until:
                if self._sleep_until(until):
                    return
                continue
            if self.clock.monotonic() < due and not self._sleep_until(due):
                continue
            self._run_due(due)

    def _sleep_until(self, deadline: float) -> bool:
        """Wait for the deadline; True when it was reached, False when woken early."""
        if self.drive_clock:
            if self._posted or self._stop.is_set():
                return False
            assert isinstance(self.clock, VirtualClock)
            self.clock.advance_to(deadline)
            return True
        if self.clock.wait(self._wake, deadline):
            self._wake.clear()
            return False
        return self.clock.monotonic() >= deadline

    def _run_due(self, due: float) -> None:
        _, _, task = heapq.heappop(self._heap)
        now = self.clock.monotonic()
        late = now - due
        if task.interval > 0:  # one-shot stimuli are not polls
            self._lateness.add(late)
        try:
            task.action(due)
        except Exception:  # the loop never dies because one task failed
            log.exception("task %s failed", task.name)
        task.runs += 1
        if task.interval == 0:  # one-shot
            return
        # An overrun skips whole slots (counted) instead of bursting to catch up.
        behind = (self.clock.monotonic() - task.start) / task.interval
        k = max(task.k + 1, math.ceil(behind - 1e-9))
        task.skipped += k - task.k - 1
        task.k = k
        task.due = task.start + k * task.interval
        heapq.heappush(self._heap, (task.due, next(self._order), task))

    def _drain_posted(self) -> None:
        while self._posted:
            work = self._posted.popleft()
            try:
                work()
            except Exception:
                log.exception("posted work failed")

    def jitter(self) -> Jitter:
        lateness = self._lateness
        samples = sorted(lateness.samples)
        p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))] if samples else 0.0
        return Jitter(
            polls=lateness.count,
            skipped=sum(t.skipped for t in self.tasks),
            mean=lateness.total / lateness.count if lateness.count else 0.0,
            p99=p99,
            max=lateness.worst,
        )
