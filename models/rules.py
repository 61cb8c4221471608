"""Rules beyond fixed limits: rate of change, and a rolling z-score against an adaptive baseline.

Both measure something per reading (a slope, a score) and feed it to an
:class:`~models.alarm.Alarm`, so they fire once, clear once, and honour ``hysteresis`` and
``min_duration`` exactly as a ``threshold`` detector does. Both keep a fixed amount of state
(plain Python lists allocated once, no numpy: a rule costs microseconds per reading, and a
config with only rules never imports numpy). Non-finite readings are ignored.

This module has no ``from __future__ import annotations``: the config validator reads real
types from the fields of the params classes.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from models.alarm import Alarm, AlarmState, Change, Limits, Side
from models.detection import Detection
from models.errors import ParamsError
from models.params import check_fields
from models.tuning import check_band, number, retuned, side_of

# -- rate of change ------------------------------------------------------------------------


@dataclass(frozen=True)
class RateParams:
    """Parameters of a ``rate`` detector; at least one of ``rise`` and ``fall`` is set."""

    rise: float | None = field(
        default=None,
        metadata={"min": 0.0, "doc": "alarm when the value rises faster than this (units/per)"},
    )
    fall: float | None = field(
        default=None,
        metadata={"min": 0.0, "doc": "alarm when the value falls faster than this (units/per)"},
    )
    per: Literal["second", "minute"] = field(
        default="second", metadata={"doc": "time unit of rise, fall, hysteresis and the rate"}
    )
    window: float = field(
        default=60.0,
        metadata={"min": 0.001, "max": 86_400, "doc": "seconds of readings the slope is fitted to"},
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far back inside its limit the rate must come to clear"},
    )
    min_duration: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "seconds the rate must stay out before the alarm fires"},
    )
    max_readings: int = field(
        default=1000,
        metadata={
            "min": 3,
            "max": 1_000_000,
            "doc": "readings kept at most (the memory bound); beyond it the fit is shorter",
        },
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.rise is None and self.fall is None:
            raise ParamsError("rate needs at least one of rise and fall")
        rise, fall, hysteresis = self.rise, self.fall, self.hysteresis
        if rise is not None and fall is not None and not -fall + hysteresis < rise - hysteresis:
            raise ParamsError(
                f"hysteresis ({hysteresis}) must fit between -fall ({-fall}) and rise ({rise}):"
                f" hysteresis < (rise + fall) / 2"
            )


class RateDetector:
    """Alarm when a series rises faster than ``rise`` or falls faster than ``fall``.

    The rate is the least-squares slope of the readings of the last ``window`` seconds (at
    most ``max_readings`` of them), in units per second or per minute. It is measured only
    once those readings span half the window (or ``max_readings`` of them are kept): a slope
    fitted to a second of noise is no rate.
    ``value`` is the reading; ``fields`` carry ``rate`` and ``per`` beside the threshold
    fields (``state``, ``limit``, ``threshold``, ``duration``), and ``kind`` is ``threshold``:
    it is a limit on the rate.
    """

    def __init__(self, params: RateParams) -> None:
        self.params = params
        below = None if params.fall is None else -params.fall
        self._alarm = Alarm(Limits(params.rise, below, params.hysteresis), params.min_duration)
        self._per_second = 60.0 if params.per == "minute" else 1.0
        self._fit = _RollingFit(params.window, params.max_readings)
        self._rate: float | None = None

    @property
    def state(self) -> AlarmState:
        return self._alarm.state

    @property
    def rate(self) -> float | None:
        """The last rate measured (units per ``per``), ``None`` before the first."""
        return self._rate

    def observe(self, t: float, value: float) -> Detection | None:
        if not math.isfinite(value):
            return None
        fit = self._fit
        fit.add(t, value)
        span = fit.span
        if span == 0 or (span < self.params.window / 2 and not fit.full):
            return None
        self._rate = rate = fit.slope() * self._per_second
        change = self._alarm.update(t, rate)
        if change is None:
            return None
        payload = {**_alarm_fields(change), "rate": rate, "per": self.params.per}
        severity = self.params.severity if change.state == "active" else "info"
        return Detection(kind="threshold", severity=severity, value=value, fields=payload)

    # -- feedback (models.tuning): ``rise`` is the above knob, ``-fall`` the below one -------

    def threshold(self, side: Side) -> float | None:
        limits = self._alarm.limits
        return limits.above if side == "above" else limits.below

    def set_threshold(self, side: Side, value: float) -> None:
        if self.threshold(side) is None:
            raise ValueError(f"this rate detector has no {side} limit")
        if (value <= 0) if side == "above" else (value >= 0):
            raise ValueError(f"a rate limit must keep its sign, got {value}")
        limits = retuned(self._alarm.limits, side, value)
        check_band(limits)
        self._alarm.limits = limits

    def alarm_point(self, fields: Mapping[str, object], value: float) -> tuple[Side, float] | None:
        side, measure = side_of(fields), number(fields.get("rate"))
        return None if side is None or measure is None else (side, measure)


class _RollingFit:
    """A least-squares line through the readings of the last ``window`` seconds (at most
    ``capacity`` of them), in O(1) per reading and fixed memory.

    It keeps running sums of times and values taken relative to a reference reading, so that
    a clock at 1e6 s or a value near 1013 hPa does not drown a slope in rounding. The sums
    are rebuilt from the kept readings (re-centred on the oldest) once per ``capacity``
    readings and whenever the reference falls far behind: O(1) amortised, and rounding
    from adding and removing cannot build up.
    """

    def __init__(self, window: float, capacity: int) -> None:
        self._window = window
        self._capacity = capacity
        self._t = [0.0] * capacity
        self._x = [0.0] * capacity
        self._oldest = 0
        self._n = 0
        self._t0 = self._x0 = 0.0  # the reference reading
        self._st = self._sx = self._stt = self._stx = 0.0
        self._changes = 0  # adds and drops since the last rebuild

    @property
    def full(self) -> bool:
        """Whether ``capacity`` readings are kept (the next one pushes the oldest out)."""
        return self._n == self._capacity

    @property
    def span(self) -> float:
        """Seconds from the oldest to the newest kept reading (0 with fewer than two)."""
        if self._n < 2:
            return 0.0
        newest = (self._oldest + self._n - 1) % self._capacity
        return self._t[newest] - self._t[self._oldest]

    def add(self, t: float, x: float) -> None:
        """Take a reading, and let go of those older than ``window`` seconds before it."""
        if self._n == self._capacity:
            self._drop_oldest()
        if self._n == 0:
            self._t0, self._x0 = t, x
        i = (self._oldest + self._n) % self._capacity
        self._t[i], self._x[i] = t, x
        self._n += 1
        self._accumulate(t, x, 1.0)
        start = t - self._window
        while self._t[self._oldest] < start:  # the reading just added always stays
            self._drop_oldest()
        if self._changes >= self._capacity or self._t0 < start - self._window:
            self._rebuild()

    def slope(self) -> float:
        """Slope of the least-squares line, units per second; needs a positive span."""
        n = self._n
        return (n * self._stx - self._st * self._sx) / (n * self._stt - self._st**2)

    def _drop_oldest(self) -> None:
        i = self._oldest
        self._accumulate(self._t[i], self._x[i], -1.0)
        self._oldest = (i + 1) % self._capacity
        self._n -= 1

    def _accumulate(self, t: float, x: float, sign: float) -> None:
        dt, dx = t - self._t0, x - self._x0
        self._st += sign * dt
        self._sx += sign * dx
        self._stt += sign * dt * dt
        self._stx += sign * dt * dx
        self._changes += 1

    def _rebuild(self) -> None:
        self._st = self._sx = self._stt = self._stx = 0.0
        if self._n:
            self._t0, self._x0 = self._t[self._oldest], self._x[self._oldest]
        for k in range(self._n):
            i = (self._oldest + k) % self._capacity
            self._accumulate(self._t[i], self._x[i], 1.0)
        self._changes = 0


# -- rolling z-score -----------------------------------------------------------------------


@dataclass(frozen=True)
class ZScoreParams:
    """Parameters of a ``zscore`` detector."""

    window: int = field(
        default=100,
        metadata={"min": 2, "max": 1_000_000, "doc": "readings in the rolling baseline"},
    )
    threshold: float = field(
        default=4.0,
        metadata={"min": 0.0, "doc": "alarm when |z| exceeds this many standard deviations"},
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far below threshold |z| must come back to clear"},
    )
    min_duration: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "seconds |z| must stay above threshold before it fires"},
    )
    warmup: int | None = field(
        default=None,
        metadata={
            "min": 2,
            "max": 1_000_000,
            "doc": "readings seen before it may fire (default: window)",
        },
    )
    min_std: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "floor on the baseline's std, in the value's units"},
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.threshold > 0:
            raise ParamsError(f"threshold must be positive, got {self.threshold}")
        if not self.hysteresis < self.threshold:
            raise ParamsError(
                f"hysteresis ({self.hysteresis}) must be less than threshold ({self.threshold})"
            )


class ZScoreDetector:
    """Alarm when a reading is more than ``threshold`` standard deviations from the baseline.

    The baseline is the mean and population standard deviation of the ``window`` readings
    before this one; every reading joins it after being scored, so it adapts: a lasting step
    fires once and clears as the baseline takes the new level in. A baseline with no spread
    at all (``std`` 0 and ``min_std`` 0) cannot score a reading that differs from it; that
    reading is skipped, and the next, against a baseline that now has spread, is scored.
    ``kind`` is ``anomaly``; ``fields`` carry ``score`` (z), ``threshold``, ``baseline``,
    ``std``, ``limit`` (``above`` or ``below`` the baseline), ``state`` and ``duration``.
    """

    def __init__(self, params: ZScoreParams) -> None:
        self.params = params
        limits = Limits(params.threshold, -params.threshold, params.hysteresis)
        self._alarm = Alarm(limits, params.min_duration)
        self._warmup = params.window if params.warmup is None else params.warmup
        self._baseline = _RollingMoments(params.window)
        self._seen = 0
        self._score: float | None = None

    @property
    def state(self) -> AlarmState:
        return self._alarm.state

    @property
    def score(self) -> float | None:
        """The last z-score measured, ``None`` before the first."""
        return self._score

    def observe(self, t: float, value: float) -> Detection | None:
        if not math.isfinite(value):
            return None
        base = self._baseline
        mean, std = base.mean, max(base.std, self.params.min_std)
        ready = self._seen >= self._warmup
        self._seen += 1
        base.add(value)
        if not ready:
            return None
        if std > 0:
            score = (value - mean) / std
        elif value == mean:
            score = 0.0
        else:
            return None  # a flat baseline has no scale to measure a difference in
        self._score = score
        change = self._alarm.update(t, score)
        if change is None:
            return None
        payload = {
            **_alarm_fields(change),
            "threshold": self._alarm.limits.above,  # feedback may have moved it
            "score": score,
            "baseline": mean,
            "std": std,
        }
        severity = self.params.severity if change.state == "active" else "info"
        return Detection(kind="anomaly", severity=severity, value=value, fields=payload)

    # -- feedback (models.tuning): one knob, ``above``; |z| is the measure --------------------

    def threshold(self, side: Side) -> float | None:
        return self._alarm.limits.above if side == "above" else None

    def set_threshold(self, side: Side, value: float) -> None:
        hysteresis = self.params.hysteresis
        if side != "above":
            raise ValueError("a zscore detector's threshold is its above knob (|z|)")
        if not (math.isfinite(value) and value > hysteresis):
            raise ValueError(f"threshold must be above hysteresis ({hysteresis}), got {value}")
        self._alarm.limits = Limits(value, -value, hysteresis)

    def alarm_point(self, fields: Mapping[str, object], value: float) -> tuple[Side, float] | None:
        score = number(fields.get("score"))
        return None if score is None else ("above", abs(score))


class _RollingMoments:
    """Mean and variance of the last ``size`` values: Welford's update, sliding.

    Adding a value once the ring is full replaces the oldest in one step. The moments are
    recomputed exactly once per ``size`` additions (O(1) amortised), so rounding from the
    sliding update cannot accumulate over a long run.
    """

    def __init__(self, size: int) -> None:
        self._values = [0.0] * size
        self._next = 0
        self._n = 0
        self.mean = 0.0
        self._m2 = 0.0  # sum of squared deviations from the mean
        self._last: float | None = None
        self._run = 0  # how many of the newest values are equal

    @property
    def std(self) -> float:
        return math.sqrt(self._m2 / self._n) if self._n else 0.0

    def add(self, x: float) -> None:
        size = len(self._values)
        if self._n < size:
            self._n += 1
            delta = x - self.mean
            self.mean += delta / self._n
            self._m2 += delta * (x - self.mean)
        else:
            old = self._values[self._next]
            mean = self.mean + (x - old) / size
            self._m2 = max(0.0, self._m2 + (x - old) * (x - mean + old - self.mean))
            self.mean = mean
        self._values[self._next] = x
        self._next = (self._next + 1) % size
        # A window of one value repeated has no spread at all, exactly: the sliding update
        # would leave a rounding residue there (1e-18), and a z-score divided by it.
        self._run = self._run + 1 if x == self._last else 1
        self._last = x
        if self._run >= self._n:
            self.mean, self._m2 = x, 0.0
        elif self._next == 0 and self._n == size:
            self._recompute()

    def _recompute(self) -> None:
        self.mean = math.fsum(self._values) / self._n
        self._m2 = math.fsum((v - self.mean) ** 2 for v in self._values)


def _alarm_fields(change: Change) -> dict[str, object]:
    return {
        "state": change.state,
        "limit": change.side,
        "threshold": change.limit,
        "duration": change.duration,
    }
