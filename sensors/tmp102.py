"""TI TMP102 digital temperature sensor: the driver (its register-level model: sensors.sim).

Datasheet: TI SBOS397. Registers are 16 bits wide, sent most significant byte
first, selected by a 2-bit pointer: 0x00 temperature (read-only), 0x01
configuration, 0x02 T_LOW, 0x03 T_HIGH. Temperature is two's complement at
0.0625 degC per LSB, left-aligned: 12 bits in normal mode, 13 bits in extended
mode (EM), where bit 0 of the low byte reads 1 to tell the two formats apart.
"""

from __future__ import annotations

import math

from sensors.errors import SensorConfigError
from sensors.ports import I2CBus, hex_text, read_word_be, write_word_be

TEMPERATURE = 0x00
CONFIG = 0x01
T_LOW = 0x02
T_HIGH = 0x03

#: The four addresses the ADD0 pin can select (GND, V+, SDA, SCL).
ADDRESSES = range(0x48, 0x4C)
LSB_DEGC = 0.0625
CONFIG_EM = 0x0010  # extended mode: bit 4 of the configuration register's low byte
CONFIG_POWER_UP = 0x60A0  # 12-bit, 4 Hz conversions, comparator mode, AL = 1
_FORMAT_FLAG = 0x0001  # bit 0 of the temperature register: 1 in the 13-bit format


def decode_temperature(msb: int, lsb: int) -> float:
    """Temperature register bytes -> degC, in whichever format bit 0 announces."""
    raw = msb << 8 | lsb
    bits = 13 if raw & _FORMAT_FLAG else 12
    counts = raw >> (16 - bits)
    if counts >= 1 << (bits - 1):
        counts -= 1 << bits
    return counts * LSB_DEGC


def encode_temperature(celsius: float, *, extended: bool = False) -> tuple[int, int]:
    """degC -> temperature register bytes, clamped to the chip's range and rounded to 1 LSB."""
    if not math.isfinite(celsius):
        raise ValueError(f"temperature must be finite, got {celsius!r}")
    # Specified range is -55..+128 degC in 12-bit mode (the top code is 127.9375)
    # and -55..+150 degC in extended mode.
    high = 150.0 if extended else 127.9375
    counts = round(min(max(celsius, -55.0), high) / LSB_DEGC)
    bits = 13 if extended else 12
    raw = (counts & ((1 << bits) - 1)) << (16 - bits)
    if extended:
        raw |= _FORMAT_FLAG
    return raw >> 8, raw & 0xFF


class TMP102:
    """Driver: ``TMP102(smbus2.SMBus(1)).read()`` -> ``{"temperature": 23.5}``.

    Bus faults (a NACK when the chip is missing) propagate as ``OSError``.
    """

    def __init__(self, bus: I2CBus, address: int = 0x48) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                f"TMP102 address must be 0x48..0x4B (set by the ADD0 pin), got {hex_text(address)}"
            )
        self._bus = bus
        self.address = address

    def read(self) -> dict[str, float]:
        """One reading: ``{"temperature": degC}``."""
        # A 2-byte block read keeps the chip's big-endian order; SMBus words are little-endian.
        msb, lsb = self._bus.read_i2c_block_data(self.address, TEMPERATURE, 2)
        return {"temperature": decode_temperature(msb, lsb)}

    @property
    def extended_mode(self) -> bool:
        """Whether the chip reports 13-bit temperatures (range up to +150 degC)."""
        return bool(self._read_config() & CONFIG_EM)

    @extended_mode.setter
    def extended_mode(self, enabled: bool) -> None:
        config = self._read_config()
        config = config | CONFIG_EM if enabled else config & ~CONFIG_EM
        write_word_be(self._bus, self.address, CONFIG, config)

    def _read_config(self) -> int:
        return read_word_be(self._bus, self.address, CONFIG)
