"""ROHM BH1750FVI ambient light sensor: the driver and its registry entry (model: sensors.sim).

Datasheet: ROHM BH1750FVI. The chip has no registers and no register pointer: the host
writes one-byte instructions (opcodes) and reads the 16-bit measurement result, high
byte first, with a plain I2C read. In H-resolution mode, at the default measurement
time (MTreg = 69), ``lux = count / 1.2``; a measurement takes 120 ms typically and
180 ms at most.

Reading the result needs a bare 2-byte read. SMBus has none (``read_i2c_block_data``
and ``read_word_data`` first write a "register" byte, which this chip would take as an
instruction), so the driver uses :func:`sensors.ports.bare_read` (``i2c_rdwr``).

This module has no ``from __future__ import annotations``: the config validator reads
real types from the params dataclass's fields.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import SensorConfigError
from sensors.ports import I2CBus, bare_read, hex_text

POWER_DOWN = 0x00
POWER_ON = 0x01
RESET = 0x07  # clears the data register; ignored in power-down
CONTINUOUS_H_RES = 0x10
CONTINUOUS_H_RES2 = 0x11
CONTINUOUS_L_RES = 0x13
ONE_TIME_H_RES = 0x20  # one H-resolution measurement, then power-down
ONE_TIME_H_RES2 = 0x21
ONE_TIME_L_RES = 0x23

#: ADDR pin low -> 0x23, high -> 0x5C.
ADDRESSES = (0x23, 0x5C)
#: Counts per lux in H-resolution mode at the default MTreg (69).
COUNTS_PER_LUX = 1.2
#: Longest H-resolution measurement time, seconds (datasheet: 120 ms typ, 180 ms max).
H_RES_TIME_MAX = 0.180
_COUNT_MAX = 0xFFFF


def decode_lux(msb: int, lsb: int) -> float:
    """H-resolution result bytes -> lux (MTreg 69)."""
    return (msb << 8 | lsb) / COUNTS_PER_LUX


def encode_lux(lux: float) -> tuple[int, int]:
    """Lux -> H-resolution result bytes, rounded to one count and clipped to 0..0xFFFF."""
    count = min(max(round(lux * COUNTS_PER_LUX), 0), _COUNT_MAX)
    return count >> 8, count & 0xFF


class BH1750:
    """Driver: ``BH1750(smbus2.SMBus(1)).read()`` -> ``{"illuminance": 28066.67}``.

    Each reading powers the chip on, starts one H-resolution measurement (1 lx
    resolution, after which the chip powers down by itself), sleeps the 180 ms maximum
    measurement time (``sleep`` is ``time.sleep`` unless given) and reads the result.
    Bus faults propagate as ``OSError``.
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x23,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                "BH1750 address must be 0x23 (ADDR low) or 0x5C (ADDR high),"
                f" got {hex_text(address)}"
            )
        self._bus = bus
        self.address = address
        self._sleep = time.sleep if sleep is None else sleep

    def read(self) -> dict[str, float]:
        """One measurement: ``{"illuminance": lx}``."""
        self._bus.write_byte(self.address, POWER_ON)
        self._bus.write_byte(self.address, ONE_TIME_H_RES)
        self._sleep(H_RES_TIME_MAX)
        msb, lsb = bare_read(self._bus, self.address, 2)
        return {"illuminance": decode_lux(msb, lsb)}


# Registry entry -----------------------------------------------------------------


@dataclass(frozen=True)
class BH1750Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x23,
        metadata={
            "choices": ADDRESSES,
            "hex": True,
            "doc": "I2C address: 0x23 with ADDR low, 0x5C with ADDR high",
        },
    )

    def __post_init__(self) -> None:
        # The config validator refuses other addresses first (the field's choices); this
        # is for params built in code.
        if self.address not in ADDRESSES:
            raise ValueError(
                f"address must be 0x23 (ADDR low) or 0x5C (ADDR high), got {hex_text(self.address)}"
            )


class BH1750Sensor:
    """A BH1750 as a polled sensor; its value is the illuminance in lx."""

    unit = "lx"

    def __init__(self, driver: BH1750) -> None:
        self.driver = driver

    def read(self) -> float:
        return self.driver.read()["illuminance"]

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: BH1750Params, hw: Hardware) -> PolledSensor:
    return BH1750Sensor(BH1750(hw.i2c(params.bus), params.address, sleep=hw.sleep))


SENSOR_TYPE = SensorType(
    name="i2c.bh1750",
    params=BH1750Params,
    build=_build,
    polled=True,
    summary="ROHM BH1750FVI ambient light sensor on I2C, lx",
    limits={"": (0.0, _COUNT_MAX / COUNTS_PER_LUX)},  # H-resolution counts 0..65535
)
