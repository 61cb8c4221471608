"""Hardware access for edgeline: chip drivers, GPIO inputs, and the simulated hardware
they run on unchanged.

Import-light on purpose: gpiozero loads only when ``GpioInput``/``GpioEdge`` is
first used, so a device with only I2C sensors never imports it.
"""

from typing import TYPE_CHECKING

from sensors.errors import SensorConfigError, SensorError
from sensors.ports import I2CBus, Monotonic
from sensors.signals import Noisy, Piecewise, Signal
from sensors.simbus import SimulatedBus, SimulatedChip
from sensors.tmp102 import TMP102, SimulatedTMP102
from sensors.types import (
    SENSOR_TYPES,
    EdgeSensor,
    Hardware,
    PolledSensor,
    SensorType,
    Value,
)

if TYPE_CHECKING:
    from sensors.gpio import GpioEdge, GpioInput

__all__ = [
    "SENSOR_TYPES",
    "TMP102",
    "EdgeSensor",
    "GpioEdge",
    "GpioInput",
    "Hardware",
    "I2CBus",
    "Monotonic",
    "Noisy",
    "Piecewise",
    "PolledSensor",
    "SensorConfigError",
    "SensorError",
    "SensorType",
    "Signal",
    "SimulatedBus",
    "SimulatedChip",
    "SimulatedTMP102",
    "Value",
]

if not TYPE_CHECKING:
    # Runtime only, so that mypy still flags misspelt names imported from sensors.
    def __getattr__(name: str) -> object:
        if name in ("GpioInput", "GpioEdge"):
            from sensors import gpio

            return getattr(gpio, name)
        raise AttributeError(f"module 'sensors' has no attribute {name!r}")
