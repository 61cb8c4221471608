"""Threshold rules: alarm when a reading stays beyond a limit, clear when it is back by a margin.

The detector is a three-state machine per series:

* ``normal`` — readings are inside the limits;
* ``pending`` — readings have been *out* (``value > above`` or ``value < below``) since some
  time, but not yet for ``min_duration`` seconds; a reading back in range returns to normal
  without a detection;
* ``active`` — the alarm fired (one ``state="active"`` detection) and stays silent until the
  value is back inside the limit by ``hysteresis``, which emits one ``state="clear"``
  detection with severity ``info`` and re-arms.

At most one detection comes out of each reading. A reading that clears an alarm while beyond the
opposite limit (a jump from above ``above`` to below ``below``) clears the first alarm and starts
the opposite limit's ``min_duration`` timer at that reading. NaN readings are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from models.detection import Detection, Severity
from models.errors import ParamsError
from models.params import check_fields

Limit = Literal["above", "below"]
ThresholdState = Literal["normal", "pending", "active"]

# Durations are compared with this slack, in seconds, so that readings on a sampling grid built
# by adding floats (0.1 + 0.1 + ...) fire on the reading a person would expect, not one late.
_TIME_SLACK = 1e-6


@dataclass(frozen=True)
class ThresholdParams:
    """Parameters of a ``threshold`` detector; at least one of ``above`` and ``below`` is set."""

    above: float | None = field(
        default=None, metadata={"doc": "alarm when the value rises above this"}
    )
    below: float | None = field(
        default=None, metadata={"doc": "alarm when the value falls below this"}
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far back inside the limit the value must come to clear"},
    )
    min_duration: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "seconds the value must stay out before the alarm fires"},
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.above is None and self.below is None:
            raise ParamsError("threshold needs at least one of above and below")
        if self.above is not None and self.below is not None:
            if not self.below < self.above:
                raise ParamsError(f"below ({self.below}) must be less than above ({self.above})")
            if not self.below + self.hysteresis < self.above - self.hysteresis:
                raise ParamsError(
                    f"hysteresis ({self.hysteresis}) must fit between below ({self.below}) "
                    f"and above ({self.above}): below + hysteresis < above - hysteresis"
                )


class ThresholdDetector:
    """Watch one series against upper and/or lower limits; see the module docstring."""

    def __init__(self, params: ThresholdParams) -> None:
        self.params = params
        self._state: ThresholdState = "normal"
        self._limit: Limit = "above"
        # pending: time of the first out reading; active: time the alarm fired.
        self._since = 0.0

    @property
    def state(self) -> ThresholdState:
        """``normal``, ``pending`` (out, waiting for ``min_duration``) or ``active``."""
        return self._state

    def observe(self, t: float, value: float) -> Detection | None:
        if math.isnan(value):
            return None
        if self._state == "active":
            return self._observe_active(t, value)
        side = self._out_side(value)
        if side is None:
            self._state = "normal"
            return None
        if self._state != "pending" or side != self._limit:
            self._state, self._limit, self._since = "pending", side, t
        elapsed = t - self._since
        if elapsed < self.params.min_duration - _TIME_SLACK:
            return None
        self._state, self._since = "active", t
        return self._detection(value, self.params.severity, "active", elapsed)

    def _observe_active(self, t: float, value: float) -> Detection | None:
        threshold = self._threshold(self._limit)
        hysteresis = self.params.hysteresis
        if self._limit == "above":
            cleared = value <= threshold - hysteresis
        else:
            cleared = value >= threshold + hysteresis
        if not cleared:
            return None
        detection = self._detection(value, "info", "clear", t - self._since)
        # Cleared straight into the opposite limit: that limit's timer starts at this reading.
        side = self._out_side(value)
        if side is None:
            self._state = "normal"
        else:
            self._state, self._limit, self._since = "pending", side, t
        return detection

    def _out_side(self, value: float) -> Limit | None:
        above, below = self.params.above, self.params.below
        if above is not None and value > above:
            return "above"
        if below is not None and value < below:
            return "below"
        return None

    def _threshold(self, limit: Limit) -> float:
        value = self.params.above if limit == "above" else self.params.below
        assert value is not None  # only a configured limit can be the current one
        return value

    def _detection(
        self,
        value: float,
        severity: Severity,
        state: Literal["active", "clear"],
        duration: float,
    ) -> Detection:
        payload = {
            "state": state,
            "limit": self._limit,
            "threshold": self._threshold(self._limit),
            "duration": duration,
        }
        return Detection(kind="threshold", severity=severity, value=value, fields=payload)
