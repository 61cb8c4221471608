"""The two small machines the ``adaptive`` detector is built from, both of bounded size.

* :class:`RollingQuantiles` keeps the last ``size`` values in arrival order and sorted, so a
  median or a quartile of a sliding window costs one index.
* :class:`Rarity` turns a stream of non-negative measures (how far a reading is from its
  baseline, how much a histogram moved) into a rarity on one scale for every measure and
  every signal: ``log(return period) / log(readings seen)``, where the return period is how
  many readings ago a measure at least as large was last seen. 1 means "the largest in the
  whole horizon"; a new largest one scores above 1 by how far it passes the previous one,
  in units of the spread of the largest few (an exponential tail fitted to them: a record
  in a calm, light-tailed measure counts more than the same step in a heavy-tailed one).

Both take and give plain, JSON-serialisable state (:meth:`snapshot` and :meth:`restore`), so
the runtime can keep a detector's learning across a restart. No numpy: each update is a
few microseconds of pure Python.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# A rarity's memory: entries of its return-period stack and values of its tail fit.
STACK_LIMIT = 64
TAIL_SIZE = 20
MEASURE_LIMIT = 1e15  # larger measures (and inf) are clamped: a rarity stays finite
_MAX_EXCESS = 50.0  # a record's excess, in tail spreads, counts at most this much


class RollingQuantiles:
    """The last ``size`` values, in arrival order and sorted."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        self.size = size
        self._ring: list[float] = []
        self._next = 0  # where the next value goes once the ring is full
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.sorted)

    def add(self, value: float) -> None:
        ring, ordered = self._ring, self.sorted
        if len(ring) < self.size:
            ring.append(value)
        else:
            old = ring[self._next]
            del ordered[bisect.bisect_left(ordered, old)]
            ring[self._next] = value
            self._next = (self._next + 1) % self.size
        bisect.insort(ordered, value)

    def quantile(self, fraction: float) -> float:
        """The value at ``fraction`` of the sorted window (nearest rank); needs a value."""
        ordered = self.sorted
        return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)]

    def values(self) -> list[float]:
        """The kept values, oldest first."""
        return self._ring[self._next :] + self._ring[: self._next]

    def snapshot(self) -> list[float]:
        return self.values()

    def restore(self, values: Sequence[float]) -> None:
        values = [float(v) for v in values][-self.size :]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("a rolling window holds only finite values")
        self._ring = values
        self._next = 0
        self.sorted = sorted(values)


class Rarity:
    """How rare each new measure is among those of the last ``horizon`` updates.

    ``update(m)`` returns ``log(rp) / log(min(n, horizon))`` where ``n`` counts updates and
    ``rp`` is the number of updates since one at least as large as ``m``. For a measure
    larger than any within the horizon, ``rp = min(n, horizon) * exp(excess / spread)``:
    its excess over the previous largest, in units of the mean excess of the largest
    :data:`TAIL_SIZE` measures over the smallest of them.

    The return periods come from a stack of (update, measure) pairs with decreasing
    measures: the classic "previous greater element", O(1) amortised. It holds at most
    :data:`STACK_LIMIT` pairs; past that, the pair whose removal changes the fewest
    return periods (the closest in log age to its neighbours) goes. The stack lives in two
    arrays allocated once, so a rarity's memory does not even wobble as the stack moves.
    """

    def __init__(self, horizon: int) -> None:
        if horizon < 2:
            raise ValueError(f"horizon must be at least 2, got {horizon}")
        self.horizon = horizon
        self.n = 0
        # The stack, oldest (largest measure) first: its first ``_depth`` entries are live.
        self._times = array("q", bytes(8 * (STACK_LIMIT + 1)))
        self._measures = array("d", bytes(8 * (STACK_LIMIT + 1)))
        self._depth = 0
        # The largest measures in the horizon, ascending, and the updates they came at.
        self._tail_measures = array("d", bytes(8 * (TAIL_SIZE + 1)))
        self._tail_times = array("q", bytes(8 * (TAIL_SIZE + 1)))
        self._tail_size = 0
        self._tail_oldest = 0  # the oldest update in the tail (expiry check)

    def update(self, measure: float) -> float:
        if not measure < MEASURE_LIMIT:  # also catches nan and inf
            measure = MEASURE_LIMIT
        self.n = n = self.n + 1
        horizon = self.horizon
        times, measures, depth = self._times, self._measures, self._depth
        expired = n - horizon
        if depth and times[0] <= expired:
            drop = 1
            while drop < depth and times[drop] <= expired:
                drop += 1
            times[: depth - drop] = times[drop:depth]
            measures[: depth - drop] = measures[drop:depth]
            depth -= drop
        if self._tail_size and self._tail_oldest <= expired:
            self._forget_tail(expired)
        largest = measures[0] if depth else 0.0
        while depth and measures[depth - 1] < measure:
            depth -= 1
        seen = n if n < horizon else horizon
        if depth:
            log_period = math.log(n - times[depth - 1])
            if measures[depth - 1] == measure:  # the newest of equal measures is the one to keep
                times[depth - 1] = n
            else:
                times[depth], measures[depth] = n, measure
                depth += 1
        else:
            log_period = math.log(seen) + self._excess(measure, largest)
            times[0], measures[0] = n, measure
            depth = 1
        self._depth = depth
        if depth > STACK_LIMIT:
            self._thin()
        if self._tail_size < TAIL_SIZE or measure > self._tail_measures[0]:
            self._remember(measure, n)
        return log_period / math.log(seen if seen > 2 else 2)

    def _excess(self, measure: float, largest: float) -> float:
        """How far a new largest measure passes the previous, in tail spreads (0 unknown)."""
        size = self._tail_size
        if size < TAIL_SIZE // 2:
            return 0.0
        tail = self._tail_measures
        spread = sum(tail[1:size]) / (size - 1) - tail[0]
        if spread <= 0:
            return _MAX_EXCESS if measure > largest else 0.0
        return min(_MAX_EXCESS, (measure - largest) / spread)

    def _remember(self, measure: float, n: int) -> None:
        """Keep ``measure`` among the :data:`TAIL_SIZE` largest in the horizon."""
        measures, times, size = self._tail_measures, self._tail_times, self._tail_size
        at = bisect.bisect_right(measures, measure, 0, size)
        measures[at + 1 : size + 1] = measures[at:size]
        times[at + 1 : size + 1] = times[at:size]
        measures[at], times[at] = measure, n
        size += 1
        if size > TAIL_SIZE:  # the smallest goes
            measures[: size - 1] = measures[1:size]
            times[: size - 1] = times[1:size]
            size -= 1
        self._tail_size = size
        self._tail_oldest = min(times[:size])

    def _forget_tail(self, expired: int) -> None:
        """Drop the tail's measures from updates at or before ``expired``."""
        measures, times = self._tail_measures, self._tail_times
        kept = 0
        for i in range(self._tail_size):
            if times[i] > expired:
                measures[kept], times[kept] = measures[i], times[i]
                kept += 1
        self._tail_size = kept
        self._tail_oldest = min(times[:kept]) if kept else self.n

    def _thin(self) -> None:
        """Drop the inner stack entry closest in log age to the entries around it."""
        times, n, depth = self._times, self.n, self._depth
        best, where = math.inf, 1
        for i in range(1, depth - 1):
            gap = math.log(n - times[i - 1] + 1) - math.log(n - times[i + 1] + 1)
            if gap < best:
                best, where = gap, i
        times[where : depth - 1] = times[where + 1 : depth]
        self._measures[where : depth - 1] = self._measures[where + 1 : depth]
        self._depth = depth - 1

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "stack": [[self._times[i], self._measures[i]] for i in range(self._depth)],
            "tail": [[self._tail_measures[i], self._tail_times[i]] for i in range(self._tail_size)],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        n = int(state["n"])
        stack = [(int(t), float(m)) for t, m in _pairs(state["stack"])]
        tail = sorted((float(m), int(t)) for m, t in _pairs(state["tail"]))
        if n < 0 or len(stack) > STACK_LIMIT or len(tail) > TAIL_SIZE:
            raise ValueError("rarity state out of bounds")
        if any(not 0 < t <= n for t, _ in stack) or any(not 0 < t <= n for _, t in tail):
            raise ValueError("rarity state refers to updates it has not seen")
        if any(not math.isfinite(m) for _, m in stack) or any(
            not math.isfinite(m) for m, _ in tail
        ):
            raise ValueError("rarity state holds a non-finite measure")
        for (older, larger), (newer, smaller) in itertools.pairwise(stack):
            if not (older < newer and larger > smaller):
                raise ValueError("rarity stack out of order: updates must rise, measures fall")
        self.n = n
        for i, (t, m) in enumerate(stack):
            self._times[i], self._measures[i] = t, m
        self._depth = len(stack)
        for i, (m, t) in enumerate(tail):
            self._tail_measures[i], self._tail_times[i] = m, t
        self._tail_size = len(tail)
        self._tail_oldest = min((t for _, t in tail), default=n)


def _pairs(items: Iterable[Any]) -> list[tuple[Any, Any]]:
    pairs = []
    for item in items:
        first, second = item  # a malformed pair raises ValueError or TypeError
        pairs.append((first, second))
    return pairs
