"""Per-sensor filters, chained from config: each takes a reading and passes a value or nothing.

One contract, :class:`Filter`: ``apply(t, value)`` returns the value to pass on (maybe
changed) or ``None``, which stops the chain for this reading. ``t`` is monotonic seconds
from the runtime's clock (virtual in the simulator), never decreasing. Every filter here
passes a ``float`` or ``None``; a non-finite reading (NaN, +-inf), or a result that
overflows, is dropped without touching the filter's state. A filter holds state for one
series and is not thread-safe: the sampling loop owns it.

Each type has a frozen params dataclass and an entry in :data:`FILTER_TYPES`. This module
deliberately has no ``from __future__ import annotations``: the config validator reads real
types from ``dataclasses.fields``. Params fields use only ``int``, ``float``, ``bool``,
``str``, ``Literal`` or ``X | None``, with ``min``/``max``/``doc`` metadata that
``__post_init__`` enforces too, so Python callers get the config loader's checks.
"""

import bisect
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FILTER_TYPES",
    "Calibrate",
    "CalibrateParams",
    "Chain",
    "Clamp",
    "ClampParams",
    "Debounce",
    "DebounceParams",
    "Delta",
    "DeltaParams",
    "Filter",
    "FilterType",
    "Heartbeat",
    "HeartbeatParams",
    "Median",
    "MedianParams",
    "MovingAverage",
    "MovingAverageParams",
    "Throttle",
    "ThrottleParams",
]

WEEK = 7 * 86_400.0
WINDOW_MAX = 10_000  # readings a windowed filter may hold (80 kB of floats)


@runtime_checkable
class Filter(Protocol):
    """Anything that takes one reading and passes a value on, or stops the chain."""

    def apply(self, t: float, value: float) -> float | None:
        """The value to pass on, or ``None`` to stop the chain for this reading."""
        ...


@dataclass(frozen=True)
class FilterType:
    """A registry entry: how a ``filters = [{type = ...}]`` table becomes a filter."""

    name: str
    params: type
    build: Callable[[Any], Filter]
    summary: str


class Chain:
    """Filters applied in order; the first ``None`` stops the chain. Empty: passes all."""

    def __init__(self, filters: Iterable[Filter]) -> None:
        self.filters = tuple(filters)

    def apply(self, t: float, value: float) -> float | None:
        out = float(value)
        for f in self.filters:
            result = f.apply(t, out)
            if result is None:
                return None
            out = result
        return out


def _check_fields(params: Any) -> None:
    """Numeric fields must be finite and within their metadata bounds, as in config."""
    for f in fields(params):
        value = getattr(params, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if low is not None and value < low:
            raise ValueError(f"{f.name} must be at least {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{f.name} must be at most {high}, got {value!r}")


def _positive(params: object, *names: str) -> None:
    for name in names:
        value = getattr(params, name)
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be above 0, got {value!r}")


class _FiniteFilter:
    """The shared edge of the filters here: floats in, finite floats or None out."""

    def apply(self, t: float, value: float) -> float | None:
        if not math.isfinite(value):
            return None
        out = self._apply(t, float(value))
        return out if out is None or math.isfinite(out) else None

    def _apply(self, t: float, value: float) -> float | None:
        raise NotImplementedError


# -- delta ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeltaParams:
    delta: float | None = field(
        default=None, metadata={"min": 0.0, "doc": "pass when the value moved this much"}
    )
    percent: float | None = field(
        default=None,
        metadata={"min": 0.0, "doc": "pass when the value moved this % of the last passed"},
    )
    heartbeat: float | None = field(
        default=None,
        metadata={"min": 0.0, "max": WEEK, "doc": "also pass after this many seconds"},
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.delta is None and self.percent is None:
            raise ValueError("give delta or percent (or both: either one passes a value)")
        _positive(self, "delta", "percent", "heartbeat")


class Delta(_FiniteFilter):
    """Report by exception: pass a value that moved ``delta`` (or ``percent`` %) from the
    last one passed; the first always passes, and with ``heartbeat`` so does a value that
    many seconds after the last pass."""

    def __init__(self, params: DeltaParams) -> None:
        self.params = params
        self._last: float | None = None
        self._last_t = 0.0

    def _apply(self, t: float, value: float) -> float | None:
        last, heartbeat = self._last, self.params.heartbeat
        due = heartbeat is not None and t - self._last_t >= heartbeat
        if last is not None and not due and not self._moved(value, last):
            return None
        self._last, self._last_t = value, t
        return value

    def _moved(self, value: float, last: float) -> bool:
        p = self.params
        diff = abs(value - last)
        if p.delta is not None and diff >= p.delta:
            return True
        # diff > 0: from a last value of 0 any change is infinitely many percent, no change none.
        return p.percent is not None and diff > 0 and diff >= abs(last) * p.percent / 100


# -- heartbeat --------------------------------------------------------------------------


@dataclass(frozen=True)
class HeartbeatParams:
    every: float = field(
        metadata={"min": 0.0, "max": WEEK, "doc": "pass an unchanged value after this many s"}
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "every")


class Heartbeat(_FiniteFilter):
    """Pass a value that differs from the last passed, or any value ``every`` seconds."""

    def __init__(self, params: HeartbeatParams) -> None:
        self.params = params
        self._last: float | None = None
        self._last_t = 0.0

    def _apply(self, t: float, value: float) -> float | None:
        if value == self._last and t - self._last_t < self.params.every:
            return None
        self._last, self._last_t = value, t
        return value


# -- debounce ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DebounceParams:
    samples: int | None = field(
        default=None,
        metadata={"min": 1, "max": WINDOW_MAX, "doc": "readings a value must hold for"},
    )
    seconds: float | None = field(
        default=None, metadata={"min": 0.0, "max": WEEK, "doc": "seconds a value must hold for"}
    )
    tolerance: float = field(
        default=0.0, metadata={"min": 0.0, "doc": "readings this close count as the same value"}
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        if (self.samples is None) == (self.seconds is None):
            raise ValueError("give one of samples or seconds")
        _positive(self, "seconds")


class Debounce(_FiniteFilter):
    """Pass readings only once the value has held still (its readings spanning at most
    ``tolerance``) for ``samples`` consecutive readings or for ``seconds``; a reading
    outside the span starts a new run from itself."""

    def __init__(self, params: DebounceParams) -> None:
        self.params = params
        self._count = 0  # readings in the current run, capped at samples
        self._low = self._high = self._start = 0.0

    def _apply(self, t: float, value: float) -> float | None:
        p = self.params
        low, high = min(self._low, value), max(self._high, value)
        if self._count == 0 or high - low > p.tolerance:
            self._count, self._low, self._high, self._start = 1, value, value, t
        else:
            self._count, self._low, self._high = self._count + 1, low, high
        if p.samples is not None:
            self._count = min(self._count, p.samples)
            stable = self._count >= p.samples
        else:
            stable = t - self._start >= (p.seconds or 0.0)
        return value if stable else None


# -- moving average and median ----------------------------------------------------------


@dataclass(frozen=True)
class MovingAverageParams:
    window: int = field(metadata={"min": 1, "max": WINDOW_MAX, "doc": "readings averaged"})
    warmup: bool = field(default=False, metadata={"doc": "pass averages before the window is full"})

    def __post_init__(self) -> None:
        _check_fields(self)


class MovingAverage(_FiniteFilter):
    """The mean of the last ``window`` readings, from the window's first full reading (or
    from the first reading with ``warmup``). O(1) per reading: a running sum, recomputed
    exactly every ``window`` readings so rounding cannot drift."""

    def __init__(self, params: MovingAverageParams) -> None:
        self.params = params
        self._recent: deque[float] = deque(maxlen=params.window)
        self._sum = 0.0
        self._since_exact = 0

    @property
    def held(self) -> int:
        """Readings held in memory (at most ``window``)."""
        return len(self._recent)

    def _apply(self, t: float, value: float) -> float | None:
        window = self.params.window
        if len(self._recent) == window:
            self._sum -= self._recent[0]
        self._recent.append(value)
        self._sum += value
        self._since_exact += 1
        if self._since_exact >= window:
            self._sum, self._since_exact = math.fsum(self._recent), 0
        if len(self._recent) < window and not self.params.warmup:
            return None
        return self._sum / len(self._recent)


@dataclass(frozen=True)
class MedianParams:
    window: int = field(
        metadata={"min": 1, "max": WINDOW_MAX, "doc": "readings the median is taken over (odd)"}
    )
    warmup: bool = field(default=False, metadata={"doc": "pass medians before the window is full"})

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.window % 2 == 0:
            raise ValueError(f"window must be odd, so the median is a reading; got {self.window}")


class Median(_FiniteFilter):
    """The median of the last ``window`` readings (a spike filter), from the window's first
    full reading (or from the first with ``warmup``, averaging the middle two of an even
    count). Keeps the window in arrival order and sorted: O(window) per reading."""

    def __init__(self, params: MedianParams) -> None:
        self.params = params
        self._recent: deque[float] = deque(maxlen=params.window)
        self._sorted: list[float] = []

    @property
    def held(self) -> int:
        """Readings held in memory (at most ``window``)."""
        return max(len(self._recent), len(self._sorted))

    def _apply(self, t: float, value: float) -> float | None:
        window = self.params.window
        if len(self._recent) == window:
            del self._sorted[bisect.bisect_left(self._sorted, self._recent[0])]
        self._recent.append(value)
        bisect.insort(self._sorted, value)
        n = len(self._sorted)
        if n < window and not self.params.warmup:
            return None
        mid = n // 2
        return self._sorted[mid] if n % 2 else (self._sorted[mid - 1] + self._sorted[mid]) / 2


# -- throttle ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ThrottleParams:
    interval: float = field(
        metadata={"min": 0.0, "max": WEEK, "doc": "pass at most one value per this many s"}
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        _positive(self, "interval")


class Throttle(_FiniteFilter):
    """Pass a reading only if ``interval`` seconds have gone by since the last one passed."""

    def __init__(self, params: ThrottleParams) -> None:
        self.params = params
        self._last_t: float | None = None

    def _apply(self, t: float, value: float) -> float | None:
        if self._last_t is not None and t - self._last_t < self.params.interval:
            return None
        self._last_t = t
        return value


# -- calibrate --------------------------------------------------------------------------

_LIMIT = 1e12


def _bound(doc: str) -> Any:
    return field(metadata={"min": -_LIMIT, "max": _LIMIT, "doc": doc})


@dataclass(frozen=True)
class CalibrateParams:
    raw_low: float = _bound("a raw reading at the first calibration point")
    raw_high: float = _bound("a raw reading at the second calibration point")
    true_low: float = _bound("what the reading raw_low should be")
    true_high: float = _bound("what the reading raw_high should be")

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.raw_low == self.raw_high:
            raise ValueError(f"raw_low and raw_high must differ, both are {self.raw_low!r}")


class Calibrate(_FiniteFilter):
    """Two-point linear correction: ``raw_low`` -> ``true_low`` and ``raw_high`` ->
    ``true_high`` exactly, the line through them elsewhere (extrapolated outside)."""

    def __init__(self, params: CalibrateParams) -> None:
        self.params = params
        self._raw_span = params.raw_high - params.raw_low
        self._true_span = params.true_high - params.true_low

    def _apply(self, t: float, value: float) -> float | None:
        p = self.params
        s = (value - p.raw_low) / self._raw_span  # exactly 0 at raw_low, exactly 1 at raw_high
        # Interpolate from the nearer end, so each end point maps exactly onto its true value.
        if s < 0.5:
            return p.true_low + s * self._true_span
        return p.true_high - (1.0 - s) * self._true_span


# -- clamp ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClampParams:
    min: float | None = field(default=None, metadata={"doc": "lowest value passed"})
    max: float | None = field(default=None, metadata={"doc": "highest value passed"})
    drop: bool = field(
        default=False, metadata={"doc": "drop out-of-range readings instead of clamping them"}
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.min is None and self.max is None:
            raise ValueError("give min or max (or both)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min!r}) must not be above max ({self.max!r})")


class Clamp(_FiniteFilter):
    """Limit readings to ``[min, max]``: clamp them, or with ``drop`` discard those outside."""

    def __init__(self, params: ClampParams) -> None:
        self.params = params

    def _apply(self, t: float, value: float) -> float | None:
        low, high = self.params.min, self.params.max
        if low is not None and value < low:
            return None if self.params.drop else low
        if high is not None and value > high:
            return None if self.params.drop else high
        return value


FILTER_TYPES: dict[str, FilterType] = {
    t.name: t
    for t in (
        FilterType(
            "delta",
            DeltaParams,
            Delta,
            "pass a value only when it moved enough since the last one passed",
        ),
        FilterType(
            "heartbeat",
            HeartbeatParams,
            Heartbeat,
            "pass changed values, and an unchanged one every so many seconds",
        ),
        FilterType(
            "debounce",
            DebounceParams,
            Debounce,
            "pass values only once they held still for some readings or seconds",
        ),
        FilterType(
            "moving_average",
            MovingAverageParams,
            MovingAverage,
            "mean of the last N readings",
        ),
        FilterType("median", MedianParams, Median, "median of the last N readings (N odd)"),
        FilterType("throttle", ThrottleParams, Throttle, "at most one value per interval"),
        FilterType(
            "calibrate",
            CalibrateParams,
            Calibrate,
            "two-point linear correction from raw readings to true values",
        ),
        FilterType("clamp", ClampParams, Clamp, "limit values to a range, or drop those outside"),
    )
}
