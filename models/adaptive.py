"""The ``adaptive`` detector: learns what normal looks like for one signal as it runs.

No training, no labels, no limits to set. It is ARTime (the best published entry of the
Numenta Anomaly Benchmark) made to stream: the readings, taken in blocks, become patterns
of their shape and level (:mod:`models.adaptive_scale`), a fuzzy ART memory
(:mod:`models.adaptive_art`) learns categories of those patterns, and a pattern of a new
cluster, unless masked by a recent one, is an anomaly report scored in (0, 1]; every other
reading scores 0.

The block length is ARTime's own rule (``0.15 n / 104`` readings for a series of ``n``,
at most 7) applied to the readings seen so far: 2 from the start, then 3, 5 and, from
4,854 readings on, 7 for good. Each time scale learns for 104 blocks before it reports; the
next one starts learning when the previous one takes over, so at most two run at once and
the coarser one is ready when the rule reaches it.

Events come from an :class:`~models.alarm.Alarm` on the score, with ``threshold``,
and ``hysteresis`` as for a ``threshold`` detector; a report is one
reading, so an alarm is active for that reading and clears on the next.

Memory is fixed whatever the run length (per time scale: 128 categories of 32 weights,
1,024 recent levels, 53 + 105 matches), all allocated up front;
:meth:`AdaptiveDetector.snapshot` and :meth:`~AdaptiveDetector.restore` carry it as
JSON-serialisable data, so a restart resumes exactly where the detector was. Counts are in
readings, not seconds: the detector expects a sensor read at a steady rate, and the times
are not used (a clock that steps back changes nothing). Non-finite readings are ignored;
one beyond ±1e300 counts as ±1e300.

This module has no ``from __future__ import annotations``: the config validator reads real
types from the fields of the params classes.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from models.alarm import Alarm, Limits, Side
from models.detection import Detection
from models.errors import ParamsError
from models.params import check_fields
from models.tuning import number

if TYPE_CHECKING:
    from models.adaptive_scale import TimeScale

STATE_VERSION = 4
# The default threshold: the one NAB's sweep chose on four categories of five in four of
# the five leave-one-category-out folds (0.463; the fifth chose 0.489).
THRESHOLD = 0.46
STEPS = (2, 3, 5, 7)  # the time scales, readings per block
LEARN_SHARE, LEARN_MAX, PATTERNS = 0.15, 750, 104  # ARTime's block rule (NAB's probation)
# Readings beyond count as this: past it, a range (high - low) or a block's sum can overflow.
LARGEST = 1e300


@dataclass(frozen=True)
class AdaptiveParams:
    """Parameters of an ``adaptive`` detector; the defaults suit most sensors."""

    threshold: float = field(
        default=THRESHOLD,
        metadata={
            "min": 0.0,
            "max": 1.0,
            "doc": "alarm when an anomaly report scores above this",
        },
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far below threshold the score must come to clear"},
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )

    # Settings of the detector's earlier design, and why a config that has them is refused.
    RETIRED: ClassVar[Mapping[str, str]] = {
        **{
            key: "the adaptive detector learns and rests by its own rules now; remove it"
            for key in ("learn", "rest", "baseline", "horizon")
        },
        "min_duration": "an adaptive report lasts one reading, so nothing could last; remove it",
    }

    def __post_init__(self) -> None:
        check_fields(self)
        if not 0 < self.threshold < 1:
            raise ParamsError(f"threshold must be between 0 and 1, got {self.threshold}")
        if not self.hysteresis < self.threshold:
            raise ParamsError(
                f"hysteresis ({self.hysteresis}) must be less than threshold ({self.threshold})"
            )


def rule_step(readings: int) -> int:
    """ARTime's block length for a series of ``readings``: its probation (``0.15 n``, even,
    at most 750) over the 104 patterns of the learning period."""
    probation = min(int(LEARN_SHARE * readings), LEARN_MAX)
    return (probation - probation % 2) // PATTERNS


def ladder(readings: int) -> tuple[int, ...]:
    """The time scales running after ``readings``: the one that reports (the longest block
    the rule has reached), and the next longer one, learning, if there is one."""
    rule = max(STEPS[0], rule_step(readings))
    i = max(i for i, s in enumerate(STEPS) if s <= rule)
    return STEPS[i : i + 2]


def _time_scale(step: int) -> "TimeScale":
    # numpy is imported with the first detector built, not with the models package
    from models.adaptive_scale import TimeScale

    return TimeScale(step)


class AdaptiveDetector:
    """Score each reading's anomaly in [0, 1] and alarm when it reaches ``threshold``.

    Build it with defaults and feed it: ``AdaptiveDetector().update(value)`` returns the
    score; :meth:`observe` does the same for the runtime and returns the alarm's changes
    as :class:`~models.detection.Detection` (``kind`` ``anomaly``; ``fields`` carry
    ``score``, ``threshold``, ``state``, ``duration``, ``signal`` — ``level`` when the
    latest value lies outside what the closest known pattern holds, ``shape`` when only the
    pattern is new — ``side`` — whether the block's value (its spike, if it has one) lies
    ``above`` or ``below`` the ``baseline``, the median of recent levels — ``match``, how
    well the closest known pattern fits, and ``scale``, the readings per block). A report
    comes as the block ends: ``value`` is the reading that ended it.
    """

    def __init__(self, params: AdaptiveParams | None = None) -> None:
        self.params = params = params or AdaptiveParams()
        self._alarm = Alarm(Limits(params.threshold, None, params.hysteresis))
        self._readings = 0
        # the time scales running, by block length; the shortest reports
        self._scales = {s: _time_scale(s) for s in ladder(0)}
        self._score = 0.0

    @property
    def anomaly_score(self) -> float:
        """The score of the last reading, in [0, 1]; 0 before any."""
        return self._score

    @property
    def readings(self) -> int:
        """Finite readings taken so far (restored ones included)."""
        return self._readings

    @property
    def step(self) -> int:
        """Readings per block of the time scale that reports."""
        return min(self._scales)

    def observe(self, t: float, value: float) -> Detection | None:
        if not math.isfinite(value):
            return None
        score = self.update(value, t)
        change = self._alarm.update(t, score)
        if change is None:
            return None
        step = self.step
        scale = self._scales[step]
        median, level = scale.median(), scale.level()
        fields: dict[str, object] = {
            "state": change.state,
            "threshold": change.limit,
            "duration": change.duration,
            "score": score,
            "signal": "level" if scale.energy < 1.0 else "shape",
            "side": "above" if not level < median else "below",
            "match": scale.match,
            "baseline": median if math.isfinite(median) else None,
            "scale": step,
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
        """Take one reading and return its anomaly score (0.0 for a non-finite one); ``t``
        is accepted for the detector protocol and not used."""
        if not math.isfinite(value):
            return 0.0
        value = min(max(value, -LARGEST), LARGEST)
        self._readings += 1
        if len(self._scales) > 1:  # one left: the longest blocks, for good
            running = ladder(self._readings)
            if running != tuple(self._scales):  # the rule moved on: scales retire and start
                # the shorter one is superseded; the longer one learns while this one reports
                self._scales = {s: self._scales.get(s) or _time_scale(s) for s in running}
        step = min(self._scales)
        score = 0.0
        for s, scale in self._scales.items():
            out = scale.update(value)
            if s == step:
                score = out
        self._score = score
        return score

    # -- state ------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything learnt, as JSON-serialisable data of bounded size."""
        return {
            "type": "adaptive",
            "version": STATE_VERSION,
            "readings": self._readings,
            "scales": [scale.snapshot() for scale in self._scales.values()],
            "score": self._score,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from a :meth:`snapshot`; raises ``ValueError`` if it is not a valid one
        (the detector is then left as it was)."""
        if state.get("type") != "adaptive" or state.get("version") != STATE_VERSION:
            raise ValueError("not a snapshot of an adaptive detector (or of another version)")
        try:
            readings = state["readings"]
            from models.adaptive_scale import TimeScale

            scales = [TimeScale.restored(s) for s in state["scales"]]
            score = float(state["score"])
        except KeyError as exc:
            raise ValueError(f"invalid adaptive detector state: no {exc}") from exc
        except (TypeError, ValueError, OverflowError, IndexError) as exc:
            raise ValueError(f"invalid adaptive detector state: {exc}") from exc
        if isinstance(readings, bool) or not isinstance(readings, int) or readings < 0:
            raise ValueError(f"invalid adaptive detector state: readings {readings!r}")
        running = ladder(readings)
        if sorted(s.step for s in scales) != list(running):
            raise ValueError(f"invalid adaptive detector state: not the time scales {running}")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"invalid adaptive detector state: score {score}")
        self._readings, self._score = readings, score
        self._scales = {s.step: s for s in sorted(scales, key=lambda s: s.step)}
        # the alarm is about this run's clock: it stays as it is
