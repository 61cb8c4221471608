"""The ``adaptive`` detector: learns what normal looks like for one signal as it runs.

No training, no labels, no limits to set. Every reading is measured ten ways, each a
non-negative measure of how unusual it is, and each measure is turned into a rarity on one
common scale by :class:`~models.adaptive_rarity.Rarity` (``log`` of how many readings ago a
measure at least as large was last seen, over ``log`` of the readings seen; 1 is "the most
extreme in the horizon", more is a new extreme by a margin). The measures:

* **level** (above, below): distance from the median of the last ``baseline`` readings, in
  units of the half inter-quartile range on that side: a value the signal never reaches;
* **jump** (above, below) at three scales: distance above the upper median (below the
  lower median) of the previous 2, 8 and 32 readings, in units of the median step between
  readings: a sudden change, even inside the usual range (a spike at night, a drop in speed);
* **shift**: relative entropy of the last 32 readings' histogram against the baseline's:
  the signal stays where it seldom goes, or its spread changes (a stuck value, a burst);
* **lull**: readings since the last one at or above the baseline's upper quartile: the
  signal's usual highs stop coming although every value is in range (a missed daily peak,
  an idle machine), which no distance from a median or a histogram over 32 readings sees.

Given the reading's time (:meth:`AdaptiveDetector.observe`), it also learns the signal's
daily cycle (:class:`~models.adaptive_season.DailyProfile`) and measures the six jumps on
the signal with that cycle taken out; once the cycle is learnt and explains the signal,
each jump's rarity is the smaller of the two, so the daily rise and fall stop scoring as
new extremes while a jump at an unusual hour still does.

The score is ``c / (1 + c)`` of the largest rarity ``c``, so it lies in [0, 1) and 0.5 is a
new extreme. Two rules make it report an anomaly at its first sign and once: nothing is
scored during the first ``learn`` readings, and after a score of 0.5 or more, the next
``rest`` readings score 0 unless one is 10 % higher (the anomaly grows). Events come from
an :class:`~models.alarm.Alarm` on the score, with ``threshold``, ``hysteresis`` and
``min_duration`` exactly as a ``threshold`` detector.

Memory is fixed whatever the run length (``baseline`` values, 300 steps, 32 recent values,
one count, and at most 84 pairs per measure; for the deseasonalised jumps, 300 steps, 32
values and six more measures' pairs, and the 288 bins of the daily profile);
:meth:`AdaptiveDetector.snapshot` and :meth:`~AdaptiveDetector.restore` carry all of it as
JSON-serialisable data, so a restart resumes exactly where the detector was. Counts are in
readings, not seconds: the detector expects a sensor read at a steady rate (only the daily
profile goes by the clock). Non-finite readings are ignored.

This module has no ``from __future__ import annotations``: the config validator reads real
types from the fields of the params classes.
"""

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from models.adaptive_rarity import Rarity, RollingQuantiles
from models.adaptive_season import DailyProfile
from models.alarm import Alarm, Limits, Side
from models.detection import Detection
from models.errors import ParamsError
from models.params import check_fields
from models.tuning import number

STATE_VERSION = 3
JUMP_SCALES = (2, 8, 32)  # readings in the local medians a jump is measured from
RECENT = 32  # readings in the recent histogram (and the longest local median)
BINS = 8  # histogram bins across the baseline's 1st to 99th percentile
STEPS = 300  # steps between readings whose median is the jump unit
REST_FACTOR = 1.1  # during a rest, a score this many times the last reported one is new
NEW_EXTREME = 0.5  # the score of a new extreme: it starts a rest
_WARM_LEVEL = 20  # baseline readings before the level and jump are measured
_WARM_STEPS = 10
_WARM_SHIFT = 100
_TINY = 1e-9
LULL_QUANTILE = 0.75  # a lull: readings since the last one at or above this baseline quantile


@dataclass(frozen=True)
class AdaptiveParams:
    """Parameters of an ``adaptive`` detector; the defaults suit most sensors."""

    threshold: float = field(
        default=0.55,
        metadata={
            "min": 0.0,
            "max": 1.0,
            "doc": "alarm when the anomaly score exceeds this (0.5 is a new extreme)",
        },
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far below threshold the score must come to clear"},
    )
    min_duration: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "seconds the score must stay above threshold to fire"},
    )
    learn: int = field(
        default=150,
        metadata={"min": 0, "max": 1_000_000, "doc": "readings learnt before it may score"},
    )
    rest: int = field(
        default=50,
        metadata={
            "min": 0,
            "max": 1_000_000,
            "doc": "readings after an anomaly during which only a stronger one scores",
        },
    )
    baseline: int = field(
        default=1000,
        metadata={
            "min": 100,
            "max": 100_000,
            "doc": "readings in the baseline that level and shift are measured against",
        },
    )
    horizon: int = field(
        default=10_000,
        metadata={
            "min": 100,
            "max": 1_000_000_000,
            "doc": "readings an extreme is remembered for (older ones are forgotten)",
        },
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.threshold < 1:
            raise ParamsError(f"threshold must be between 0 and 1, got {self.threshold}")
        if not self.hysteresis < self.threshold:
            raise ParamsError(
                f"hysteresis ({self.hysteresis}) must be less than threshold ({self.threshold})"
            )


# The measures, in the order they are taken; each has its own Rarity.
MEASURES: tuple[tuple[str, str | None], ...] = (
    ("level", "above"),
    ("level", "below"),
    *((f"jump{scale}", side) for scale in JUMP_SCALES for side in ("above", "below")),
    ("shift", None),
    ("lull", None),
)


def _key(signal: str, side: str | None) -> str:
    return signal if side is None else f"{signal}_{side}"


class AdaptiveDetector:
    """Score each reading's anomaly in [0, 1] and alarm when it passes ``threshold``.

    Build it with defaults and feed it: ``AdaptiveDetector().update(value)`` returns the
    score; :meth:`observe` does the same for the runtime and returns the alarm's changes
    as :class:`~models.detection.Detection` (``kind`` ``anomaly``; ``fields`` carry
    ``score``, ``threshold``, ``state``, ``duration``, ``signal`` — ``level``, ``jump``,
    ``shift`` or ``lull`` — ``side`` — ``above``/``below`` the baseline, or null for a
    shift or a lull —
    ``rarity`` and ``baseline``, the median it was measured against).
    """

    def __init__(self, params: AdaptiveParams | None = None) -> None:
        self.params = params = params or AdaptiveParams()
        self._alarm = Alarm(Limits(params.threshold, None, params.hysteresis), params.min_duration)
        self._baseline = RollingQuantiles(params.baseline)
        self._steps = RollingQuantiles(STEPS)
        self._recent: deque[float] = deque(maxlen=RECENT)
        self._rarity = {_key(*m): Rarity(params.horizon) for m in MEASURES}
        self._jump_keys = [
            (scale, f"jump{scale}_above", f"jump{scale}_below", f"jump{scale}")
            for scale in JUMP_SCALES
        ]
        # The same jumps on the deseasonalised signal (the reading minus the daily profile).
        self._season = DailyProfile()
        self._steps_e = RollingQuantiles(STEPS)
        self._recent_e: deque[float] = deque(maxlen=RECENT)
        self._rarity_e = {
            key: Rarity(params.horizon)
            for _, above, below, _ in self._jump_keys
            for key in (above, below)
        }
        self._last_e: float | None = None
        self._last: float | None = None
        self._readings = 0
        self._rest = 0  # readings of rest left
        self._peak = 0.0  # the score that started (or renewed) the rest
        self._score = 0.0
        self._cause: tuple[str, str | None, float] = ("level", None, 0.0)
        self._median = math.nan
        self._lull = 0  # readings since the last one at or above the baseline's upper quartile

    @property
    def anomaly_score(self) -> float:
        """The score of the last reading, in [0, 1); 0 before any."""
        return self._score

    @property
    def readings(self) -> int:
        """Finite readings taken so far (restored ones included)."""
        return self._readings

    @property
    def time_steps_back(self) -> int:
        """Readings whose time was before the latest one's, as the daily profile counts
        them (from the 21st reading, when it starts learning); each is scored all the same."""
        return self._season.steps_back

    def observe(self, t: float, value: float) -> Detection | None:
        if not math.isfinite(value):
            return None
        score = self.update(value, t)
        change = self._alarm.update(t, score)
        if change is None:
            return None
        signal, side, rarity = self._cause
        fields: dict[str, object] = {
            "state": change.state,
            "threshold": change.limit,
            "duration": change.duration,
            "score": score,
            "signal": signal.rstrip("0123456789"),
            "side": side,
            "rarity": rarity,
            "baseline": self._median if math.isfinite(self._median) else None,
        }
        severity = self.params.severity if change.state == "active" else "info"
        return Detection(kind="anomaly", severity=severity, value=value, fields=fields)

    # -- feedback (models.tuning): one knob, ``above``, on the score in (0, 1) ---------------

    def threshold(self, side: Side) -> float | None:
        return self._alarm.limits.above if side == "above" else None

    def set_threshold(self, side: Side, value: float) -> None:
        hysteresis = self.params.hysteresis
        if side != "above":
            raise ValueError("an adaptive detector's threshold is its above knob (the score)")
        if not (math.isfinite(value) and hysteresis < value < 1):
            raise ValueError(f"threshold must be in ({hysteresis}, 1), got {value}")
        self._alarm.limits = Limits(value, None, hysteresis)

    def alarm_point(self, fields: Mapping[str, object], value: float) -> tuple[Side, float] | None:
        score = number(fields.get("score"))
        return None if score is None else ("above", score)

    def update(self, value: float, t: float | None = None) -> float:
        """Take one reading and return its anomaly score (0.0 for a non-finite one).

        ``t``, in seconds of a steady clock, lets it learn the signal's daily cycle (and
        discount the jumps that cycle explains); without it, it learns no cycle."""
        if not math.isfinite(value):
            return 0.0
        self._readings += 1
        rarities = self._measure(value, t)
        raw = 0.0
        if rarities and self._readings >= self.params.learn:
            self._cause = best = max(rarities, key=lambda item: item[2])
            raw = best[2] / (1.0 + best[2])
        self._score = self._rested(raw)
        return self._score

    def _rested(self, raw: float) -> float:
        if self._rest > 0:
            self._rest -= 1
            if raw > self._peak * REST_FACTOR:
                self._peak, self._rest = raw, self.params.rest
                return raw
            return 0.0
        if raw >= NEW_EXTREME:
            self._peak, self._rest = raw, self.params.rest
        return raw

    def _measure(self, x: float, t: float | None) -> list[tuple[str, str | None, float]]:
        """Every measure of ``x`` that can be taken yet, as (signal, side, rarity)."""
        found: list[tuple[str, str | None, float]] = []
        rarity = self._rarity
        ordered = self._baseline.sorted
        size = len(ordered)
        expected = None if t is None else self._season.expected(t)
        residual = None if expected is None else x - expected
        if size >= _WARM_LEVEL:
            median = ordered[size // 2]
            self._median = median
            full = (ordered[-1] - ordered[0]) or _TINY
            upper = (ordered[min(size - 1, (3 * size) // 4)] - median) or full
            lower = (median - ordered[size // 4]) or full
            above = (x - median) / upper if x > median else 0.0
            below = (median - x) / lower if x < median else 0.0
            found.append(("level", "above", rarity["level_above"].update(above)))
            found.append(("level", "below", rarity["level_below"].update(below)))
            if x >= ordered[int(LULL_QUANTILE * size)]:
                self._lull = 0
            else:
                self._lull += 1
            if size >= _WARM_SHIFT:
                found.append(("lull", None, rarity["lull"].update(self._lull)))
            if t is not None:
                self._season.learn(t, x - median)
            unit = _unit(self._steps.sorted)
            explained: dict[str, float] = {}
            if residual is not None and (unit_e := _unit(self._steps_e.sorted)) is not None:
                # The same jumps on the deseasonalised signal, always (their rarities must
                # see every reading from the third day); they count while the profile is trusted.
                unit_e = unit_e or unit or full
                self._jumps(residual, self._recent_e, unit_e, self._rarity_e, explained)
                if t is not None and not self._season.trusted(t):
                    explained = {}
            if unit is not None:
                self._jumps(x, self._recent, unit or full, rarity, explained, found)
        self._learn(x, residual)
        if size >= _WARM_SHIFT - 1 and len(self._recent) == RECENT:
            found.append(("shift", None, rarity["shift"].update(self._shift())))
        return found

    def _jumps(
        self,
        x: float,
        recent_values: deque[float],
        unit: float,
        rarity: Mapping[str, Rarity],
        explained: dict[str, float],
        found: list[tuple[str, str | None, float]] | None = None,
    ) -> None:
        """Distance of ``x`` from the median of the previous 2, 8 and 32 readings, as
        rarities: into ``found``, each at most its ``explained`` one (the same jump with the
        daily cycle taken out) if there is one; without ``found``, into ``explained``."""
        recent = list(recent_values)
        available = len(recent)
        for scale, above_key, below_key, signal in self._jump_keys:
            if available < (scale if scale < 4 else 4):
                continue
            window = sorted(recent[-scale:])
            k = len(window)
            high = window[k // 2]
            low = window[k - 1 - k // 2]
            above = rarity[above_key].update((x - high) / unit if x > high else 0.0)
            below = rarity[below_key].update((low - x) / unit if x < low else 0.0)
            if found is None:
                explained[above_key], explained[below_key] = above, below
                continue
            if explained:  # a jump counts only as far as the daily cycle does not explain it
                above = min(above, explained.get(above_key, above))
                below = min(below, explained.get(below_key, below))
            found.append((signal, "above", above))
            found.append((signal, "below", below))

    def _learn(self, x: float, residual: float | None) -> None:
        if self._last is not None:
            self._steps.add(abs(x - self._last))
        self._last = x
        self._baseline.add(x)
        self._recent.append(x)
        if residual is not None:
            if self._last_e is not None:
                self._steps_e.add(abs(residual - self._last_e))
            self._last_e = residual
            self._recent_e.append(residual)

    def _shift(self) -> float:
        """Relative entropy of the recent histogram against the baseline's (same bins)."""
        ordered = self._baseline.sorted
        total = len(ordered)
        low = ordered[total // 100]
        span = (ordered[min(total - 1, (99 * total) // 100)] - low) or _TINY
        step = span / BINS
        edges = [bisect.bisect_left(ordered, low + step * i) for i in range(1, BINS)]
        edges.append(total)
        recent = [0] * BINS
        top = BINS - 1
        per_bin = BINS / span
        for v in self._recent:
            i = int((v - low) * per_bin)
            recent[0 if i < 0 else (top if i > top else i)] += 1
        divergence = 0.0
        smoothed_total = (total + 0.5 * BINS) / RECENT
        previous = 0
        for count, edge in zip(recent, edges, strict=True):
            if count:
                divergence += count * math.log(count * smoothed_total / (edge - previous + 0.5))
            previous = edge
        return divergence / RECENT

    # -- state ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything learnt, as JSON-serialisable data of bounded size."""
        return {
            "type": "adaptive",
            "version": STATE_VERSION,
            "readings": self._readings,
            "last": self._last,
            "baseline": self._baseline.snapshot(),
            "steps": self._steps.snapshot(),
            "recent": list(self._recent),
            "rarity": {name: r.snapshot() for name, r in self._rarity.items()},
            "season": self._season.snapshot(),
            "residual": {
                "last": self._last_e,
                "steps": self._steps_e.snapshot(),
                "recent": list(self._recent_e),
                "rarity": {name: r.snapshot() for name, r in self._rarity_e.items()},
            },
            "rest": self._rest,
            "lull": self._lull,
            "peak": self._peak,
            "score": self._score,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from a :meth:`snapshot`; raises ``ValueError`` if it is not a valid one
        (the detector is then left as it was)."""
        if state.get("type") != "adaptive" or state.get("version") != STATE_VERSION:
            raise ValueError("not a snapshot of an adaptive detector (or of another version)")
        fresh = AdaptiveDetector(self.params)
        try:
            fresh._load(state)
        except KeyError as exc:
            raise ValueError(f"invalid adaptive detector state: no {exc}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"invalid adaptive detector state: {exc}") from exc
        alarm = self._alarm  # an alarm is about this run's clock: it starts afresh
        self.__dict__.update(fresh.__dict__)
        self._alarm = alarm

    def _load(self, state: Mapping[str, Any]) -> None:
        self._readings = _count(state["readings"])
        last = state["last"]
        self._last = None if last is None else _finite(last)
        self._baseline.restore(state["baseline"])
        self._steps.restore(state["steps"])
        self._recent.extend(_finite(v) for v in _items(state["recent"]))
        rarity = state["rarity"]
        if set(rarity) != set(self._rarity):
            raise ValueError("the measures differ")
        for name, machine in self._rarity.items():
            machine.restore(rarity[name])
        self._season.restore(state["season"])
        residual = state["residual"]
        last_e = residual["last"]
        self._last_e = None if last_e is None else _finite(last_e)
        self._steps_e.restore(residual["steps"])
        self._recent_e.extend(_finite(v) for v in _items(residual["recent"]))
        rarity_e = residual["rarity"]
        if set(rarity_e) != set(self._rarity_e):
            raise ValueError("the measures differ")
        for name, machine in self._rarity_e.items():
            machine.restore(rarity_e[name])
        self._rest = min(_count(state["rest"]), self.params.rest)
        self._lull = _count(state["lull"])
        self._peak = _finite(state["peak"])
        self._score = _finite(state["score"])


def _unit(steps: list[float]) -> float | None:
    """The jump unit: the median step between readings (or the 90th percentile if the
    median is 0); 0 if both are, None until :data:`_WARM_STEPS` steps were seen."""
    if len(steps) < _WARM_STEPS:
        return None
    return steps[len(steps) // 2] or steps[min(len(steps) - 1, len(steps) * 9 // 10)]


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a count, found {value!r}")
    return value


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, found {value!r}")
    return number


def _items(value: Any) -> Iterable[Any]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list, found {type(value).__name__}")
    return value
