"""Deterministic signal sources that feed simulated chips.

A signal is a zero-argument callable returning the physical quantity now, so a
chip model can sample it on each register read. Time comes from the runtime's
clock (virtual in the simulator), measured from the source's creation or an
explicit ``t0``; randomness comes from a seeded generator. Same clock, same
seed: same values.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence

from sensors.errors import SensorConfigError
from sensors.ports import Monotonic

Signal = Callable[[], float]


class Piecewise:
    """Linear interpolation between ``(t, value)`` points, held constant past the ends.

    Times are seconds since ``t0`` and must not decrease; two points at the same
    time make a step, and from that time on the later point's value holds.
    """

    def __init__(
        self,
        points: Sequence[tuple[float, float]],
        clock: Monotonic,
        *,
        t0: float | None = None,
    ) -> None:
        if not points:
            raise SensorConfigError("Piecewise needs at least one (t, value) point")
        for t, value in points:
            if not (math.isfinite(t) and math.isfinite(value)):
                raise SensorConfigError(f"Piecewise point ({t!r}, {value!r}) is not finite")
        self._times = [float(t) for t, _ in points]
        self._values = [float(v) for _, v in points]
        if any(b < a for a, b in itertools.pairwise(self._times)):
            raise SensorConfigError(f"Piecewise point times must not decrease: {self._times}")
        self._clock = clock
        self._t0 = clock() if t0 is None else t0

    def at(self, t: float) -> float:
        """The value ``t`` seconds after ``t0``."""
        # bisect_right lands after any points sharing time t, so a step has taken effect.
        i = bisect.bisect_right(self._times, t)
        if i == 0:
            return self._values[0]
        if i == len(self._times):
            return self._values[-1]
        t_a, t_b = self._times[i - 1], self._times[i]
        v_a, v_b = self._values[i - 1], self._values[i]
        return v_a + (v_b - v_a) * (t - t_a) / (t_b - t_a)

    def __call__(self) -> float:
        return self.at(self._clock() - self._t0)


class Noisy:
    """``signal`` plus Gaussian noise of standard deviation ``sigma`` from a seeded generator."""

    def __init__(self, signal: Signal, sigma: float, seed: int) -> None:
        if not (math.isfinite(sigma) and sigma >= 0):
            raise SensorConfigError(f"Noisy sigma must be a finite number >= 0, got {sigma!r}")
        self._signal = signal
        self._sigma = sigma
        self._random = random.Random(seed)

    def __call__(self) -> float:
        # normalvariate, unlike gauss, is safe if two threads sample at once.
        return self._signal() + self._random.normalvariate(0.0, self._sigma)
