"""Thresholds an operator's verdicts may move: the detectors that allow it, and the step rule.

A *tunable* detector (``threshold``, ``rate``, ``zscore``, ``adaptive``) alarms when a
measure (the value, a slope, a z-score, an anomaly score) passes a limit on a side
(``above`` or ``below``). It says which side and measure an alarm was about
(``alarm_point``) and lets that side's limit be set (``set_threshold``), refusing a limit
its own parameters would refuse. ``zscore`` has one knob, ``above`` (its ``below`` limit is
the mirror image and follows it).

:func:`next_threshold` is the rule, in "oriented" units where a larger threshold always
means fewer alarms (``below`` limits are negated):

* ``false_alarm`` moves the threshold toward the alarm's measure by ``step`` (a fraction),
  never down;
* ``missed`` moves it toward the lower bound by ``step``, never up;
* ``true_alarm`` keeps it, and is remembered;
* never past ``configured`` +/- ``max_change`` x |configured| (the bounds), and never up to
  the lowest measure of a ``true_alarm`` (minus ``margin`` x |configured|), so that a
  labelled anomaly of that size is still caught. The bounds win over that ceiling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from models.alarm import Limits, Side
from models.detection import Detector

Verdict = Literal["false_alarm", "true_alarm", "missed"]
VERDICTS: tuple[Verdict, ...] = ("false_alarm", "true_alarm", "missed")
SIDES: tuple[Side, ...] = ("above", "below")


@runtime_checkable
class TunableDetector(Detector, Protocol):
    """A detector whose alarm limits feedback may move (see the module docstring)."""

    def threshold(self, side: Side) -> float | None:
        """The limit of ``side`` now, or None when that side is no knob of this detector."""
        ...

    def set_threshold(self, side: Side, value: float) -> None:
        """Set ``side``'s limit; ``ValueError`` (changing nothing) when its params refuse it."""
        ...

    def alarm_point(self, fields: Mapping[str, object], value: float) -> tuple[Side, float] | None:
        """The side and measure of an alarm, from its event's fields and value."""
        ...


@dataclass(frozen=True)
class Rule:
    """How far one verdict moves a threshold, and how far all of them together may."""

    step: float = 0.5
    max_change: float = 0.5
    margin: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.step <= 1:
            raise ValueError(f"step must be in (0, 1], got {self.step}")
        if not 0 <= self.max_change <= 10:
            raise ValueError(f"max_change must be in [0, 10], got {self.max_change}")
        if not 0 <= self.margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")

    def bounds(self, side: Side, configured: float) -> tuple[float, float]:
        """The lowest and highest limit ``side`` may take (plain units, low <= high)."""
        span = self.max_change * abs(configured)
        return configured - span, configured + span


def orient(side: Side, value: float) -> float:
    """A limit or measure in units where more means fewer alarms."""
    return value if side == "above" else -value


def next_threshold(
    rule: Rule,
    side: Side,
    *,
    configured: float,
    current: float,
    verdict: Verdict,
    measure: float | None,
    ceiling: float | None,
) -> float:
    """The threshold after ``verdict`` (see the module docstring). ``measure`` is the alarm's
    (None for a ``missed`` with no alarm); ``ceiling`` is the lowest measure of a true alarm
    on this side so far, this one included when it is one (plain units)."""
    low, high = (orient(side, b) for b in rule.bounds(side, configured))
    low, high = min(low, high), max(low, high)
    now = orient(side, current)
    target = now
    if verdict == "false_alarm" and measure is not None and math.isfinite(measure):
        m = orient(side, measure)
        target = now + rule.step * (m - now) if m > now else now
    elif verdict == "missed":
        target = now - rule.step * (now - low) if now > low else now
    new = min(max(target, low), high)
    if ceiling is not None and math.isfinite(ceiling):
        # A true alarm fired at this measure: stay below it, so one like it fires again.
        new = min(new, orient(side, ceiling) - rule.margin * abs(configured))
    new = max(new, low)
    return orient(side, new)


def retuned(limits: Limits, side: Side, value: float) -> Limits:
    """``limits`` with ``side`` set to ``value`` (the detector checks the result)."""
    if not math.isfinite(value):
        raise ValueError(f"a threshold must be a finite number, got {value}")
    if side == "above":
        return Limits(value, limits.below, limits.hysteresis)
    return Limits(limits.above, value, limits.hysteresis)


def check_band(limits: Limits) -> None:
    """A two-sided limit keeps room for its hysteresis (what ``threshold``'s params ask)."""
    above, below, hysteresis = limits.above, limits.below, limits.hysteresis
    if above is not None and below is not None and not below + hysteresis < above - hysteresis:
        raise ValueError(
            f"below ({below}) + hysteresis ({hysteresis}) must stay under above ({above}) "
            f"- hysteresis"
        )


def side_of(fields: Mapping[str, object]) -> Side | None:
    """The ``limit`` field of an alarm event (``above`` or ``below``)."""
    limit = fields.get("limit")
    if limit == "above" or limit == "below":
        return limit
    return None


def number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
