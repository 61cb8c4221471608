"""Sensirion SHT3x (SHT30/31/35) humidity and temperature sensor: driver, model, registry entry.

Datasheet: Sensirion SHT3x-DIS. The chip has no registers: the host sends a 16-bit
command, then reads the result with a plain I2C read (no register byte first):
temperature msb, lsb, CRC, humidity msb, lsb, CRC. Each word's CRC-8 covers its two
bytes (polynomial 0x31, init 0xFF, no reflection, no final XOR).

The driver uses single-shot measurements with clock stretching disabled, so it waits
the datasheet's maximum measurement time before reading. A plain read is not an SMBus
transfer: :func:`sensors.ports.bare_read` does it with ``i2c_rdwr``. (The common
``read_i2c_block_data(address, 0x00, 6)`` first writes a 0x00 byte, half of a
command, which the datasheet does not allow.)

This module deliberately has no ``from __future__ import annotations``: the config
validator reads real types from the fields of :class:`SHT3xParams`.
"""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import CRCError, SensorConfigError
from sensors.ports import I2CBus, bare_read, hex_text

ADDRESSES = (0x44, 0x45)  # ADDR pin to VSS, to VDD
SOFT_RESET = 0x30A2
RESULT_LENGTH = 6

Repeatability = Literal["high", "medium", "low"]


class SingleShot(NamedTuple):
    """A single-shot measurement command (clock stretching disabled) and its maximum duration."""

    command: int
    duration: float  # seconds


#: Datasheet 4.3 (single-shot commands) and 2.2 (maximum measurement durations; the
#: larger of the 15 / 6 / 4 ms and 15.5 / 6.5 / 4.5 ms that datasheet revisions give).
SINGLE_SHOT: dict[str, SingleShot] = {
    "high": SingleShot(0x2400, 0.0155),
    "medium": SingleShot(0x240B, 0.0065),
    "low": SingleShot(0x2416, 0.0045),
}


def crc8(data: bytes) -> int:
    """The SHT3x's CRC-8 (datasheet 4.12): CRC(0xBEEF) = 0x92."""
    crc = 0xFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc << 1 ^ 0x31 if crc & 0x80 else crc << 1) & 0xFF
    return crc


def decode_temperature(raw: int) -> float:
    """Raw temperature word -> degC (datasheet 4.13)."""
    return -45.0 + 175.0 * raw / 65535.0


def decode_humidity(raw: int) -> float:
    """Raw humidity word -> %RH (datasheet 4.13)."""
    return 100.0 * raw / 65535.0


def encode_temperature(celsius: float) -> int:
    """degC -> the nearest raw word, clamped to what the word can carry (-45..130 degC)."""
    if not math.isfinite(celsius):
        raise ValueError(f"temperature must be finite, got {celsius!r}")
    return min(max(round((celsius + 45.0) * 65535.0 / 175.0), 0), 0xFFFF)


def encode_humidity(percent: float) -> int:
    """%RH -> the nearest raw word, clamped to 0..100 %RH."""
    if not math.isfinite(percent):
        raise ValueError(f"humidity must be finite, got {percent!r}")
    return min(max(round(percent * 65535.0 / 100.0), 0), 0xFFFF)


class SHT3x:
    """Driver: ``SHT3x(smbus2.SMBus(1)).read()`` -> ``{"temperature": 21.3, "humidity": 45.1}``.

    Each ``read()`` sends a single-shot command, waits its maximum measurement time with
    ``sleep`` (``time.sleep`` by default; tests pass a recorder), then reads six bytes.
    Bus faults propagate as ``OSError``; a checksum mismatch raises :class:`CRCError`
    (an ``OSError`` too).
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x44,
        *,
        repeatability: Repeatability = "high",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                f"SHT3x address must be 0x44 or 0x45 (set by the ADDR pin), got {hex_text(address)}"
            )
        if repeatability not in SINGLE_SHOT:
            raise SensorConfigError(
                f"SHT3x repeatability must be 'high', 'medium' or 'low', got {repeatability!r}"
            )
        self._bus = bus
        self.address = address
        self.repeatability = repeatability
        self._sleep = sleep

    def read(self) -> dict[str, float]:
        """One single-shot measurement: temperature in degC, humidity in %RH."""
        command, duration = SINGLE_SHOT[self.repeatability]
        self._bus.write_i2c_block_data(self.address, command >> 8, [command & 0xFF])
        self._sleep(duration)
        data = bytes(bare_read(self._bus, self.address, RESULT_LENGTH))
        return {
            "temperature": decode_temperature(self._word(data[0:3], "temperature")),
            "humidity": decode_humidity(self._word(data[3:6], "humidity")),
        }

    def _word(self, chunk: bytes, what: str) -> int:
        expected = crc8(chunk[:2])
        if chunk[2] != expected:
            raise CRCError(
                f"SHT3x at 0x{self.address:02X}: {what} word 0x{chunk[:2].hex().upper()} "
                f"came with CRC 0x{chunk[2]:02X}, expected 0x{expected:02X}"
            )
        return chunk[0] << 8 | chunk[1]


# -- the registry entry ------------------------------------------------------------------


@dataclass(frozen=True)
class SHT3xParams:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x44,
        metadata={"choices": ADDRESSES, "hex": True, "doc": "I2C address, set by the ADDR pin"},
    )
    repeatability: Repeatability = field(
        default="high",
        metadata={"doc": "measurement repeatability: high (15.5 ms), medium, low (4.5 ms)"},
    )


class SHT3xSensor:
    """An SHT3x as a polled sensor: temperature (degC) and humidity (%RH)."""

    unit = ""

    def __init__(self, driver: SHT3x) -> None:
        self.driver = driver

    def read(self) -> Mapping[str, float]:
        return self.driver.read()

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: SHT3xParams, hw: Hardware) -> PolledSensor:
    return SHT3xSensor(
        SHT3x(
            hw.i2c(params.bus),
            params.address,
            repeatability=params.repeatability,
            sleep=hw.sleep,
        )
    )


SENSOR_TYPE = SensorType(
    name="i2c.sht3x",
    params=SHT3xParams,
    build=_build,
    polled=True,
    summary="Sensirion SHT3x (SHT30/31/35) temperature and humidity sensor on I2C",
    units={"temperature": "degC", "humidity": "%RH"},
    limits={"temperature": (-40.0, 125.0), "humidity": (0.0, 100.0)},  # operating ranges
)
