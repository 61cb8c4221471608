"""The life of one alarm on a derived series: normal, pending for a while, active until back.

Every rule detector (threshold, rate of change, rolling z-score) turns its readings into one
number per reading (the value itself, a slope, a score) and asks the same questions of it:
is it beyond a limit, has it stayed there for ``min_duration``, is it back inside by
``hysteresis``? :class:`Alarm` answers them once, so the detectors differ only in what they
measure and in the :class:`~models.detection.Detection` they build from a :class:`Change`.

The machine has three states:

* ``normal`` — the measure is inside the limits;
* ``pending`` — it has been *out* (``x > above`` or ``x < below``) since some time, but not
  yet for ``min_duration`` seconds; a measure back in range returns to normal silently;
* ``active`` — the alarm fired (one ``active`` change) and stays silent until the measure is
  back inside the limit by ``hysteresis``, which is one ``clear`` change and re-arms.

At most one change comes out of each update. An update that clears an alarm while beyond the
opposite limit (a jump from above ``above`` to below ``below``) clears the first alarm and
starts the opposite limit's ``min_duration`` timer at that update. Callers skip NaN.

Time may step back (a late reading, a new clock): durations are never negative, and a pending
measure still out at an earlier time is out since then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["above", "below"]
AlarmState = Literal["normal", "pending", "active"]

# Durations are compared with this slack, in seconds, so that readings on a sampling grid built
# by adding floats (0.1 + 0.1 + ...) fire on the reading a person would expect, not one late.
TIME_SLACK = 1e-6


@dataclass(frozen=True)
class Limits:
    """An upper and/or a lower limit, and how far back inside a measure must come to clear.

    Validating them (at least one set, ``below + hysteresis < above - hysteresis``) is the
    detector's job: only it knows what its config keys are called.
    """

    above: float | None
    below: float | None
    hysteresis: float = 0.0

    def out_side(self, x: float) -> Side | None:
        """Which limit ``x`` is beyond, if any (a value equal to a limit is not out)."""
        if self.above is not None and x > self.above:
            return "above"
        if self.below is not None and x < self.below:
            return "below"
        return None

    def back_inside(self, side: Side, x: float) -> bool:
        """Whether ``x`` is back inside ``side``'s limit by the hysteresis (inclusive)."""
        if side == "above":
            return x <= self.limit("above") - self.hysteresis
        return x >= self.limit("below") + self.hysteresis

    def limit(self, side: Side) -> float:
        value = self.above if side == "above" else self.below
        if value is None:
            raise ValueError(f"no {side} limit is set")
        return value


@dataclass(frozen=True)
class Change:
    """The alarm fired (``active``) or cleared (``clear``) on ``side``.

    ``duration`` is, for ``active``, how long the measure had been out; for ``clear``, how long
    the alarm was active.
    """

    state: Literal["active", "clear"]
    side: Side
    limit: float
    duration: float


class Alarm:
    """One alarm over a series of measures; see the module docstring."""

    def __init__(self, limits: Limits, min_duration: float = 0.0) -> None:
        self.limits = limits
        self.min_duration = min_duration
        self._state: AlarmState = "normal"
        self._side: Side = "above"
        # pending: time of the first out measure; active: time the alarm fired.
        self._since = 0.0

    @property
    def state(self) -> AlarmState:
        """``normal``, ``pending`` (out, waiting for ``min_duration``) or ``active``."""
        return self._state

    @property
    def side(self) -> Side | None:
        """The limit a pending or active alarm is about; ``None`` when normal."""
        return None if self._state == "normal" else self._side

    def update(self, t: float, x: float) -> Change | None:
        """Take the measure ``x`` at time ``t`` (never NaN); return the change it causes."""
        if self._state == "active":
            return self._update_active(t, x)
        side = self.limits.out_side(x)
        if side is None:
            self._state = "normal"
            return None
        if self._state != "pending" or side != self._side:
            self._state, self._side, self._since = "pending", side, t
        elif t < self._since:  # time stepped back (late, or a new clock): out since then
            self._since = t
        elapsed = t - self._since  # never negative: since <= t
        if elapsed < self.min_duration - TIME_SLACK:
            return None
        self._state, self._since = "active", t
        return Change("active", side, self.limits.limit(side), elapsed)

    def _update_active(self, t: float, x: float) -> Change | None:
        if not self.limits.back_inside(self._side, x):
            return None
        duration = max(0.0, t - self._since)  # never negative, if time stepped back
        change = Change("clear", self._side, self.limits.limit(self._side), duration)
        # Cleared straight into the opposite limit: that limit's timer starts at this measure.
        side = self.limits.out_side(x)
        if side is None:
            self._state = "normal"
        else:
            self._state, self._side, self._since = "pending", side, t
        return change
