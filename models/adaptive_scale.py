"""ARTime at one time scale: the ``adaptive`` detector's anomaly reports.

ARTime (Mark Hampton, 2021, the best published entry of the Numenta Anomaly Benchmark) in
streaming form, with its published constants:

1. Every ``step`` readings become one: the block's maximum or minimum, whichever lies
   further from a running mean of block means (the spike side), or the block's mean when
   that extreme is within 10 % of it.
2. That value, normalised to the range seen so far, is rounded to 80 levels, and snapped
   to the median of the last 1,024 when within 7.5 % of the range of it (noise around the
   usual level becomes one value).
3. A pattern is the last 8 such values (in the range) and their shape
   (:func:`~models.adaptive_features.shape`): 16 values in [0, 1].
4. The patterns go through a dual-vigilance fuzzy ART (:mod:`models.adaptive_art`): a
   pattern of a **new cluster** is an anomaly candidate.
5. The vigilances adapt: they start from a fit over the first 104 patterns (the learning
   period: sorted from least to most typical, learnt at 0.8, the mean match of the later
   half), then every 52 patterns (and 12 after an anomaly) ``rho_ub`` becomes the mean match
   so far (at most 0.97), and ``rho_lb`` climbs 19 % of the way to the lowest recent match,
   or falls by half the usual shortfall, never below the mean match of past anomalies.
6. A candidate is reported unless masked: for 12 patterns after a new cluster or a
   vigilance update, and for 12 after a report unless its match is under 0.9 times the
   report's (0.7 times while masked otherwise).
7. A report scores ``0.35 (1 - (1 - rho_ub) / (1 - a)) + 0.65 (1 - (1 - rho_lb) / (1 - a))
   + 1.5 (1 - e)`` in [0, 1], ``a`` the best match and ``e`` its energy overlap (how
   unlike anything known the latest value is); every other reading scores 0.

ARTime's design and constants are Mark Hampton's (published as ARTimeNAB.jl under
AGPL-3.0, building on AdaptiveResonance.jl's DVFA); this is a reimplementation in numpy,
restructured to stream in bounded memory.

What NAB hands its detectors and a device never has is replaced: the series' minimum and
maximum by the range so far (the categories are re-expressed when it widens), its length by
the caller's choice of ``step`` (:mod:`models.adaptive`), the whole history's median by the
last 1,024 values', and the unbounded tables by bounded ones.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from models.adaptive_art import Array, Categories
from models.adaptive_features import MedianRing, shape

WINDOW = 8  # downsampled values in a pattern
DIM = 2 * WINDOW  # shape half + value half
TREND = 13 * WINDOW  # the learning period, in patterns (vigilance updates every half)
LEVELS = 80
CHOMP = 0.075  # snap to the median within this share of the range
SPIKE_SHARE = 0.1  # a block's extreme stands for it if this far from the block's mean
INITIAL_RHO = 0.8
MASK = 12  # patterns masked after a new cluster, a vigilance update or a report
RHO_UB_CAP = 0.97
LB_CLIMB = 0.19  # share of the gap rho_lb climbs towards the lowest recent match
SHORTFALL_MIN, SHORTFALL_CAP = 0.05, 0.37
CATEGORIES = 128
MEDIAN_SIZE = 1024


class TimeScale:
    """ARTime over blocks of ``step`` readings; :meth:`update` scores one reading."""

    def __init__(self, step: int) -> None:
        self.step = step
        self._block: list[float] = []
        self.low, self.high = math.inf, -math.inf  # the range so far
        self._block_mean = 0.0  # running mean of block means (alpha 1/2)
        self.patterns = 0  # downsampled values so far
        self._median = MedianRing(MEDIAN_SIZE)
        self._window: deque[float] = deque([0.0] * WINDOW, maxlen=WINDOW)
        self._learning: list[tuple[list[float], list[float]] | None] = []
        self._art = Categories(DIM, DIM - 1, CATEGORIES)
        self._frame = (0.0, 0.0)  # the (low, range) the categories' values are normalised by
        self._x = np.zeros(2 * DIM)
        self.rho_lb = self.rho_ub = 0.0
        self.match = 0.0  # the last pattern's best match and energy overlap
        self.energy = 0.0
        self._last_report = 0  # pattern index of the last report
        self._last_report_match = 0.0
        self._last_update = 0  # pattern index of the last vigilance update
        self._masked = False
        self._quiet = 0  # patterns since the last new cluster
        self._reported_sum, self._reported, self._reported_last = 0.0, 0, 0.0
        self._match_sum, self._matches = 0.0, 0
        self._recent = deque([1.0] * (TREND // 2 + 1), maxlen=TREND // 2 + 1)
        self._shortfalls = deque([0.0] * (TREND + 1), maxlen=TREND + 1)

    def update(self, value: float) -> float:
        if value < self.low:
            self.low = value
        if value > self.high:
            self.high = value
        block = self._block
        block.append(value)
        if len(block) < self.step:
            return 0.0
        self._block = []
        return self._downsampled(block)

    def median(self) -> float:
        return self._median.median()

    def level(self) -> float:
        """The last block's value, at its level (before any snap to the median)."""
        return self._median.newest()

    def _downsampled(self, block: list[float]) -> float:
        mean = sum(block) / len(block)
        top, bottom = max(block), min(block)
        self.patterns += 1
        self._block_mean = mean if self.patterns == 1 else (self._block_mean + mean) / 2.0
        value = bottom if abs(top - self._block_mean) < abs(bottom - self._block_mean) else top
        if abs(value - mean) < SPIKE_SHARE * mean:
            value = mean  # ARTime's rule, relative to the mean itself
        low, span = self.low, self.high - self.low
        level = round(((value - low) / span if span > 0 else value - low) * LEVELS) / LEVELS
        value = low + level * span
        self._median.add(value)
        if span > 0:
            median = self._median.median()
            if abs(value - median) < CHOMP * span:
                value = median
        self._window.append(value)
        pattern = None
        if self.patterns >= WINDOW:
            values = list(self._window)
            pattern = (shape(values), values)
        if self.patterns <= TREND:
            self._learning.append(pattern)
            if self.patterns == TREND:
                self._fit()
            return 0.0
        return self._detect(self._features(pattern), self.patterns)

    def _features(self, pattern: tuple[list[float], list[float]] | None) -> Array:
        """The complement-coded pattern in the current range (zeros before a full window)."""
        self._reframe()
        x = self._x
        if pattern is None:
            x[:DIM] = 0.0
        else:
            low, span = self._frame
            x[:WINDOW] = pattern[0]
            values = x[WINDOW:DIM]
            values[:] = pattern[1]
            values -= low
            if span > 0:
                values /= span  # a division: 1 / a subnormal span would be infinite
            np.clip(values, 0.0, 1.0, out=values)
        np.subtract(1.0, x[:DIM], out=x[DIM:])
        return x

    def _reframe(self) -> None:
        frame = (self.low, self.high - self.low)
        if frame != self._frame:
            self._art.rescale(WINDOW, *self._frame, *frame)
            self._frame = frame

    def _fit(self) -> None:
        """The end of the learning period: the starting vigilance, then the learning
        period's patterns replayed through the detector."""
        self._reframe()
        features = [self._features(p).copy() for p in self._learning]
        self._learning = []
        rho = _initial_rho(np.array([f[:DIM] for f in features[WINDOW - 1 :]]))
        self.rho_lb = self.rho_ub = rho
        for i, x in enumerate(features, start=1):
            self._detect(x, i)

    def _detect(self, x: Array, i: int) -> float:
        since = i - self._last_report
        after_report = since <= MASK
        if i > TREND + MASK and self._masked and self._quiet >= MASK:
            self._masked = False
        new_cluster, a, e = self._art.train(x, i, self.rho_ub, self.rho_lb, learning=i >= WINDOW)
        self.match, self.energy = a, e
        self._quiet = 0 if new_cluster else self._quiet + 1
        self._match_sum += a
        self._matches += 1
        self._recent.append(a)
        self._shortfalls.append(self.rho_ub - a)
        if since < MASK and self._reported and a < self._reported_last:
            self._reported_sum += a - self._reported_last  # a report's match: its lowest
            self._reported_last = a
        below = a < self._last_report_match * (0.9 if after_report else 0.7)
        report = new_cluster and (not (self._masked or after_report) or below)
        score = 0.0
        if i > TREND and report:
            score = self._confidence(a, e)
            self._reported_sum += a
            self._reported += 1
            self._reported_last = self._last_report_match = a
            self._last_report = i
        self._masked = new_cluster or self._masked
        if i > TREND and (since == MASK or i - self._last_update >= TREND // 2):
            self._update_vigilance(i)
        return score

    def _update_vigilance(self, i: int) -> None:
        lowest = min(self._recent)
        ub = min(RHO_UB_CAP, self._match_sum / self._matches)
        lb = self.rho_lb
        if lb <= lowest:
            lb += (lowest - lb) * LB_CLIMB
        else:
            fall = 0.0
            if i > 2 * TREND:
                short = [min(SHORTFALL_CAP, d) for d in self._shortfalls if d > SHORTFALL_MIN]
                if short:
                    fall = sum(short) / len(short)
            lb -= max(0.01, fall) / 2.0
            if self._reported:
                lb = max(self._reported_sum / self._reported, lb)
        self.rho_lb, self.rho_ub = min(ub, lb), ub
        self._last_update = i
        self._masked = True

    def _confidence(self, a: float, e: float) -> float:
        a = min(0.999, a)
        ub = ((1 - a) - (1 - self.rho_ub)) / (1 - a)
        lb = ((1 - a) - (1 - self.rho_lb)) / (1 - a)
        return float(min(1.0, max(0.0, 0.35 * ub + 0.65 * lb + 1.5 * (1.0 - e))))

    # -- state ---------------------------------------------------------------------------------

    _SCALARS = (
        "low", "high", "_block_mean", "rho_lb", "rho_ub", "match", "energy",
        "_last_report_match", "_reported_sum", "_reported_last", "_match_sum",
    )  # fmt: skip
    _COUNTS = ("patterns", "_last_report", "_last_update", "_quiet", "_reported", "_matches")

    def snapshot(self) -> dict[str, Any]:
        def number(v: float) -> float | None:  # JSON has no infinity: an unset range is null
            return v if math.isfinite(v) else None

        return {
            "step": self.step,
            **{k.lstrip("_"): number(getattr(self, k)) for k in self._SCALARS},
            **{k.lstrip("_"): getattr(self, k) for k in self._COUNTS},
            "masked": self._masked,
            "block": list(self._block),
            "median": self._median.values(),
            "window": list(self._window),
            "learning": [None if p is None else [p[0], p[1]] for p in self._learning],
            "frame": list(self._frame),
            "categories": self._art.snapshot(),
            "recent": list(self._recent),
            "shortfalls": list(self._shortfalls),
        }

    @classmethod
    def restored(cls, state: Mapping[str, Any]) -> TimeScale:
        scale = cls(_count(state["step"], 1))
        for k in cls._SCALARS:
            v = state[k.lstrip("_")]
            if not (v is None and k in ("low", "high")):  # null: the range is not set yet
                setattr(scale, k, _finite(v))
        unset = state["low"] is None
        if unset != (state["high"] is None) or (not unset and scale.low > scale.high):
            raise ValueError("a range that is not one")
        if unset and (scale.patterns or state["block"]):
            raise ValueError("readings without a range")
        for k in cls._COUNTS:
            setattr(scale, k, _count(state[k.lstrip("_")]))
        if not isinstance(state["masked"], bool):
            raise ValueError("masked is not true or false")
        scale._masked = state["masked"]
        scale._block = _floats(state["block"], scale.step - 1)
        scale._median.restore(_floats(state["median"], MEDIAN_SIZE))
        scale._window.extend(_floats(state["window"], WINDOW, exactly=True))
        learning = state["learning"]
        blocks = scale.patterns if scale.patterns < TREND else 0  # the fit empties it
        if not isinstance(learning, list) or len(learning) != blocks:
            raise ValueError(f"a learning period of {blocks} blocks expected")  # or the fit fails
        scale._learning = [
            None if p is None else (_floats(p[0], WINDOW, True), _floats(p[1], WINDOW, True))
            for p in learning
        ]
        low, span = _floats(state["frame"], 2, exactly=True)
        scale._frame = (low, span)
        scale._art.restore(state["categories"])
        scale._recent.extend(_floats(state["recent"], TREND // 2 + 1, exactly=True))
        scale._shortfalls.extend(_floats(state["shortfalls"], TREND + 1, exactly=True))
        if scale._matches == 0 and scale.patterns > TREND:
            raise ValueError("matches counted wrongly")
        return scale


def _initial_rho(features: Array) -> float:
    """ARTime's starting vigilance: an ART at 0.8 learns the learning period's patterns,
    least typical first (by summed cosine similarity); the mean match of the later half."""
    norms = np.linalg.norm(features, axis=1)
    safe = np.where(norms == 0, 1.0, norms)
    similarity = (features @ features.T) / np.outer(safe, safe)
    zero = norms == 0  # ARTime's "close to cosine" against an all-zero pattern
    similarity[zero, :] = 1.0 - norms[None, :]
    similarity[:, zero] = 1.0 - norms[:, None]
    np.fill_diagonal(similarity, 1.0)
    order = np.argsort(similarity.sum(0), kind="stable")
    probe = Categories(DIM, DIM - 1, CATEGORIES)
    matches = [0.0]  # the first pattern seeds the table
    for j, k in enumerate(order[1:].tolist(), start=1):
        x = np.concatenate((features[k], 1.0 - features[k]))
        matches.append(probe.train(x, j, INITIAL_RHO, INITIAL_RHO)[1])
    half = TREND // 2 - 1
    return float(np.mean(matches[half:] if half < len(matches) else matches[-1:]))


def _count(value: Any, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"expected a count, found {value!r}")
    return value


def _finite(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, found {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, found {value!r}")
    return number


def _floats(value: Any, most: int, exactly: bool = False) -> list[float]:
    if not isinstance(value, list) or len(value) > most or (exactly and len(value) != most):
        raise ValueError(f"expected {'' if exactly else 'at most '}{most} numbers")
    return [_finite(v) for v in value]
