"""Hardware access for edgeline: chip drivers, GPIO inputs and outputs, filters.

Each chip driver is built as ``Driver(bus, address=<datasheet default>)`` on any bus
with smbus2's method names (:class:`I2CBus`). Its register-level model lives beside it in
:mod:`sensors.sim` (``SimulatedBME280`` for ``BME280``, ...), for a :class:`SimulatedBus`.

Import-light on purpose: no gpiozero, numpy, smbus2 or simulator at ``import sensors``.
``PulseCounter`` and ``GpioOutput`` import gpiozero when one is built;
``GpioInput``/``GpioEdge`` live in a module that imports it, so they load when first
named here. A device with only I2C sensors never imports gpiozero. The simulator's names
(``SimulatedBus``, ``SimulatedBME280``, ``Signal``, ...) are still offered here, loaded
from :mod:`sensors.sim` when first named. May import nothing outside ``sensors``.
"""

import importlib
from typing import TYPE_CHECKING

from sensors.ads1115 import ADS1115
from sensors.bh1750 import BH1750
from sensors.bme280 import BME280
from sensors.counter import PulseCounter
from sensors.errors import CRCError, SensorConfigError, SensorError, SensorTimeout
from sensors.filters import FILTER_TYPES, Chain
from sensors.ina219 import INA219
from sensors.mpu6050 import MPU6050
from sensors.output import GpioOutput
from sensors.ports import I2CBus, Monotonic
from sensors.registers import RegisterLayout, RegisterReader
from sensors.sht3x import SHT3x
from sensors.tmp102 import TMP102
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
    from sensors.sim import (
        Fault,
        FaultKind,
        Noisy,
        Piecewise,
        PulseTrain,
        Signal,
        SimulatedADS1115,
        SimulatedBH1750,
        SimulatedBME280,
        SimulatedBus,
        SimulatedChip,
        SimulatedINA219,
        SimulatedMPU6050,
        SimulatedRegisters,
        SimulatedSHT3x,
        SimulatedTMP102,
    )

# Names offered here but loaded on first use: gpiozero's inputs, and the simulator's.
_LAZY = {"GpioInput": "sensors.gpio", "GpioEdge": "sensors.gpio"}
_SIMULATED = (
    "Fault",
    "FaultKind",
    "Noisy",
    "Piecewise",
    "PulseTrain",
    "Signal",
    "SimulatedADS1115",
    "SimulatedBH1750",
    "SimulatedBME280",
    "SimulatedBus",
    "SimulatedChip",
    "SimulatedINA219",
    "SimulatedMPU6050",
    "SimulatedRegisters",
    "SimulatedSHT3x",
    "SimulatedTMP102",
)
_LAZY.update(dict.fromkeys(_SIMULATED, "sensors.sim"))

__all__ = [
    "ADS1115",
    "BH1750",
    "BME280",
    "FILTER_TYPES",
    "INA219",
    "MPU6050",
    "SENSOR_TYPES",
    "TMP102",
    "CRCError",
    "Chain",
    "EdgeSensor",
    "Fault",
    "FaultKind",
    "GpioEdge",
    "GpioInput",
    "GpioOutput",
    "Hardware",
    "I2CBus",
    "Monotonic",
    "Noisy",
    "Piecewise",
    "PolledSensor",
    "PulseCounter",
    "PulseTrain",
    "RegisterLayout",
    "RegisterReader",
    "SHT3x",
    "SensorConfigError",
    "SensorError",
    "SensorTimeout",
    "SensorType",
    "Signal",
    "SimulatedADS1115",
    "SimulatedBH1750",
    "SimulatedBME280",
    "SimulatedBus",
    "SimulatedChip",
    "SimulatedINA219",
    "SimulatedMPU6050",
    "SimulatedRegisters",
    "SimulatedSHT3x",
    "SimulatedTMP102",
    "Value",
]

if not TYPE_CHECKING:
    # Runtime only, so that mypy still flags misspelt names imported from sensors.
    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'sensors' has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)
