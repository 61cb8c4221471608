"""Threshold rules: alarm when a reading stays beyond a limit, clear when it is back by a margin.

The reading itself is the measure of an :class:`~models.alarm.Alarm` (see there for the
normal / pending / active machine, ``min_duration`` and ``hysteresis``): one ``state="active"``
detection when the alarm fires, one ``state="clear"`` detection with severity ``info`` when the
value is back inside the limit by ``hysteresis``. NaN readings are ignored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from models.alarm import Alarm, AlarmState, Limits, Side
from models.detection import Detection
from models.errors import ParamsError
from models.params import check_fields
from models.tuning import check_band, number, retuned, side_of

ThresholdState = AlarmState


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
        limits = Limits(params.above, params.below, params.hysteresis)
        self._alarm = Alarm(limits, params.min_duration)

    @property
    def state(self) -> ThresholdState:
        """``normal``, ``pending`` (out, waiting for ``min_duration``) or ``active``."""
        return self._alarm.state

    def observe(self, t: float, value: float) -> Detection | None:
        if math.isnan(value):
            return None
        change = self._alarm.update(t, value)
        if change is None:
            return None
        severity = self.params.severity if change.state == "active" else "info"
        payload = {
            "state": change.state,
            "limit": change.side,
            "threshold": change.limit,
            "duration": change.duration,
        }
        return Detection(kind="threshold", severity=severity, value=value, fields=payload)

    # -- feedback (models.tuning): each configured limit is a knob ---------------------------

    def threshold(self, side: Side) -> float | None:
        limits = self._alarm.limits
        return limits.above if side == "above" else limits.below

    def set_threshold(self, side: Side, value: float) -> None:
        if self.threshold(side) is None:
            raise ValueError(f"this threshold detector has no {side} limit")
        limits = retuned(self._alarm.limits, side, value)
        check_band(limits)
        self._alarm.limits = limits

    def alarm_point(self, fields: Mapping[str, object], value: float) -> tuple[Side, float] | None:
        side, measure = side_of(fields), number(value)
        return None if side is None or measure is None else (side, measure)
