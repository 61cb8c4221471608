"""The sensor registry the runtime's config is built from, and the built-in simple types.

Each :class:`SensorType` names a frozen params dataclass that ``edge/config.py``
validates generically, so params fields use only ``int``, ``float``, ``bool``,
``str``, ``Literal`` of strings or ``X | None``; ``metadata`` carries ``min`` and
``max`` or ``choices``, ``hex`` for a value shown in hex (an I2C address) and a one-line
``doc``; cross-field checks raise ``ValueError`` from ``__post_init__``. This module
deliberately has no ``from __future__ import annotations``: the config validator reads
real types from ``dataclasses.fields``.
"""

from dataclasses import dataclass, field
from typing import Literal

from sensors import (
    ads1115,
    bh1750,
    bme280,
    counter,
    ina219,
    mcu,
    mpu6050,
    output,
    registers,
    sht3x,
)
from sensors.base import (
    EdgeSensor,
    Hardware,
    PolledSensor,
    SensorType,
    Value,
)
from sensors.tmp102 import ADDRESSES as TMP102_ADDRESSES
from sensors.tmp102 import TMP102

__all__ = ["SENSOR_TYPES", "EdgeSensor", "Hardware", "PolledSensor", "SensorType", "Value"]


@dataclass(frozen=True)
class TMP102Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x48,
        metadata={
            "choices": tuple(TMP102_ADDRESSES),
            "hex": True,
            "doc": "I2C address, set by the ADD0 pin",
        },
    )


@dataclass(frozen=True)
class GpioInputParams:
    pin: int = field(metadata={"min": 0, "max": 27, "doc": "BCM GPIO number"})
    pull: Literal["up", "down", "none"] = field(
        default="up", metadata={"doc": "internal resistor: pull up, pull down, or none"}
    )
    active_low: bool = field(
        default=True, metadata={"doc": "the input is active (true) when the pin is low"}
    )

    def __post_init__(self) -> None:
        # BCM 2 and 3 (I2C SDA/SCL) carry fixed 1.8 kOhm pull-ups on every Pi board.
        if self.pin in (2, 3) and self.pull != "up":
            raise ValueError(
                f"pull must be 'up' for pin {self.pin}: BCM 2 and 3 have fixed pull-up resistors"
            )


@dataclass(frozen=True)
class GpioEdgeParams(GpioInputParams):
    debounce: float = field(
        default=0.05,
        metadata={
            "min": 0.0,
            "max": 10.0,
            "doc": "seconds to ignore changes after one is reported",
        },
    )


class TMP102Sensor:
    """A TMP102 as a polled sensor; its value is the temperature in degC."""

    unit = "degC"

    def __init__(self, driver: TMP102) -> None:
        self.driver = driver

    def read(self) -> float:
        return self.driver.read()["temperature"]

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build_tmp102(params: TMP102Params, hw: Hardware) -> PolledSensor:
    return TMP102Sensor(TMP102(hw.i2c(params.bus), params.address))


# gpiozero is imported only when a config actually uses a GPIO sensor.
def _build_gpio_input(params: GpioInputParams, hw: Hardware) -> PolledSensor:
    from sensors.gpio import GpioInput

    return GpioInput(
        params.pin, pull=params.pull, active_low=params.active_low, pin_factory=hw.pin_factory
    )


def _build_gpio_edge(params: GpioEdgeParams, hw: Hardware) -> EdgeSensor:
    from sensors.gpio import GpioEdge

    return GpioEdge(
        params.pin,
        now=hw.now,
        pull=params.pull,
        active_low=params.active_low,
        debounce=params.debounce,
        pin_factory=hw.pin_factory,
    )


_BUILT_IN = (
    SensorType(
        name="i2c.tmp102",
        params=TMP102Params,
        build=_build_tmp102,
        polled=True,
        summary="TI TMP102 temperature sensor on I2C, degC",
        limits={"": (-55.0, 150.0)},
    ),
    SensorType(
        name="gpio.input",
        params=GpioInputParams,
        build=_build_gpio_input,
        polled=True,
        summary="level of a GPIO pin, read on each sample (true = active)",
    ),
    SensorType(
        name="gpio.edge",
        params=GpioEdgeParams,
        build=_build_gpio_edge,
        polled=False,
        summary="debounced changes of a GPIO pin, reported as they happen (true = active)",
    ),
)

# Each chip module declares its own entry; this is the one place that lists them.
SENSOR_TYPES: dict[str, SensorType] = {
    t.name: t
    for t in (
        *_BUILT_IN,
        counter.SENSOR_TYPE,
        output.SENSOR_TYPE,
        registers.SENSOR_TYPE,
        mpu6050.SENSOR_TYPE,
        bme280.SENSOR_TYPE,
        sht3x.SENSOR_TYPE,
        ads1115.SENSOR_TYPE,
        ina219.SENSOR_TYPE,
        bh1750.SENSOR_TYPE,
        mcu.SENSOR_TYPE,
    )
}
