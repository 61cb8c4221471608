"""What the ``adaptive`` detector's category memory sees: ARTime's features of a series.

* :class:`MedianRing`: the median of the last ``size`` values, in fixed memory.
* :func:`shape`: the wavelet half of a pattern: a window of values min-max normalised, its
  full Haar transform, min-max normalised again (the shape, whatever the level and scale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_R2 = 1.0 / math.sqrt(2.0)


class MedianRing:
    """The last ``size`` values, in arrival order and sorted, in arrays allocated up front
    (a full ring and an empty one take the same memory)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ring = np.zeros(size)
        self._sorted = np.zeros(size)
        self._count = 0
        self._next = 0  # where the next value goes once the ring is full

    def __len__(self) -> int:
        return self._count

    def add(self, value: float) -> None:
        ordered, n = self._sorted, self._count
        if n == self.size:
            old = self._ring[self._next]
            i = int(np.searchsorted(ordered, old))
            ordered[i : n - 1] = ordered[i + 1 : n]
            n -= 1
        j = int(np.searchsorted(ordered[:n], value))
        ordered[j + 1 : n + 1] = ordered[j:n]
        ordered[j] = value
        self._ring[self._next] = value
        self._next = (self._next + 1) % self.size
        self._count = n + 1

    def median(self) -> float:
        n, ordered = self._count, self._sorted
        if n == 0:
            return math.nan
        half = n // 2
        return float(ordered[half] if n % 2 else 0.5 * (ordered[half - 1] + ordered[half]))

    def newest(self) -> float:
        """The value added last; NaN when empty."""
        return float(self._ring[self._next - 1]) if self._count else math.nan

    def values(self) -> list[float]:
        """Oldest first."""
        n = self._count
        ring = self._ring[:n] if n < self.size else np.roll(self._ring, -self._next)
        return [float(v) for v in ring]

    def restore(self, values: Sequence[float]) -> None:
        kept = [float(v) for v in values][-self.size :]
        if not all(math.isfinite(v) for v in kept):
            raise ValueError("a median ring holds only finite values")
        self._count, self._next = 0, 0
        for v in kept:
            self.add(v)


def _unit(values: list[float]) -> list[float]:
    """Min-max normalised (a constant window becomes zeros, as in ARTime)."""
    low = min(values)
    span = max(values) - low
    if span == 0:
        return [0.0] * len(values)
    return [(v - low) / span for v in values]  # a division: 1 / a subnormal span is inf


def shape(window: list[float]) -> list[float]:
    """ARTime's wavelet half of 8 values: the full Haar transform (approximation, then the
    details from coarsest to finest) of the normalised window, normalised. Unrolled: on 8
    values plain Python is cheaper than numpy's calls."""
    a0, a1, a2, a3, a4, a5, a6, a7 = _unit(window)
    s0, s1, s2, s3 = (a0 + a1) * _R2, (a2 + a3) * _R2, (a4 + a5) * _R2, (a6 + a7) * _R2
    t0, t1 = (s0 + s1) * _R2, (s2 + s3) * _R2
    return _unit([
        (t0 + t1) * _R2, (t0 - t1) * _R2,
        (s0 - s1) * _R2, (s2 - s3) * _R2,
        (a0 - a1) * _R2, (a2 - a3) * _R2, (a4 - a5) * _R2, (a6 - a7) * _R2,
    ])  # fmt: skip
