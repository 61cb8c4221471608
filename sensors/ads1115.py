"""TI ADS1115 16-bit ADC: the driver and its registry entry (its model: sensors.sim).

Datasheet: TI SBAS444. Four 16-bit registers, most significant byte first, picked by a
2-bit pointer: 0x00 conversion (two's complement), 0x01 config, 0x02/0x03 comparator
thresholds. In single-shot mode writing the config register with OS = 1 starts one
conversion of the input pair MUX selects, at the PGA's full-scale range (FSR) and the
data rate DR; OS reads 0 while converting and 1 when the result is ready. Code -> volts:
``code * FSR / 2**15``; the code clips at 0x7FFF and 0x8000 beyond full scale.

This module has no ``from __future__ import annotations``: the config validator reads
real types from the params dataclass's fields.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import SensorConfigError, SensorError, SensorTimeout
from sensors.ports import I2CBus, hex_text, read_word_be, write_word_be

CONVERSION = 0x00
CONFIG = 0x01
LO_THRESH = 0x02
HI_THRESH = 0x03

#: The four addresses the ADDR pin can select (GND, VDD, SDA, SCL).
ADDRESSES = range(0x48, 0x4C)

# Config register fields (SBAS444, config register field descriptions).
OS = 0x8000  # write 1: start a single conversion; read 0: converting, 1: idle
MUX_SHIFT = 12  # bits 14:12
PGA_SHIFT = 9  # bits 11:9
MODE_SINGLE_SHOT = 0x0100  # bit 8: 1 = single-shot / power-down, 0 = continuous
DR_SHIFT = 5  # bits 7:5
COMP_QUE_DISABLE = 0x0003  # bits 1:0 = 11: comparator off, ALERT/RDY high impedance
CONFIG_POWER_UP = 0x8583  # AIN0-AIN1, +-2.048 V, single-shot, 128 SPS, comparator off

Channel = Literal["0", "1", "2", "3", "0-1", "0-3", "1-3", "2-3"]

#: MUX codes: "n" is AINn against GND, "p-n" the differential pair AINp - AINn.
MUX: dict[str, int] = {
    "0": 0b100,
    "1": 0b101,
    "2": 0b110,
    "3": 0b111,
    "0-1": 0b000,
    "0-3": 0b001,
    "1-3": 0b010,
    "2-3": 0b011,
}
#: PGA codes by full-scale range in volts (codes 110 and 111 also mean +-0.256 V).
FULL_SCALES: dict[float, int] = {
    6.144: 0b000,
    4.096: 0b001,
    2.048: 0b010,
    1.024: 0b011,
    0.512: 0b100,
    0.256: 0b101,
}
#: DR codes by data rate in samples per second.
DATA_RATES: dict[int, int] = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}

_CODE_MAX = 0x7FFF
_CODE_MIN = -0x8000
# Polls of OS after the nominal conversion time, each a tenth of it apart: together
# they allow 3x the nominal time, well past the oscillator's +-10% tolerance.
_POLLS = 20


def config_word(channel: str, full_scale: float, data_rate: int) -> int:
    """The config register value that starts one single-shot conversion."""
    return (
        OS
        | MUX[channel] << MUX_SHIFT
        | FULL_SCALES[full_scale] << PGA_SHIFT
        | MODE_SINGLE_SHOT
        | DATA_RATES[data_rate] << DR_SHIFT
        | COMP_QUE_DISABLE
    )


def decode_volts(msb: int, lsb: int, full_scale: float) -> float:
    """Conversion register bytes -> volts at the given full-scale range."""
    code = msb << 8 | lsb
    if code & 0x8000:
        code -= 0x10000
    return code * full_scale / 32768


def encode_volts(volts: float, full_scale: float) -> tuple[int, int]:
    """Volts -> conversion register bytes, rounded to 1 LSB and clipped at full scale."""
    code = min(max(round(volts / full_scale * 32768), _CODE_MIN), _CODE_MAX)
    code &= 0xFFFF
    return code >> 8, code & 0xFF


def _check_options(full_scale: float, data_rate: int) -> None:
    if full_scale not in FULL_SCALES:
        allowed = ", ".join(str(v) for v in FULL_SCALES)
        raise SensorConfigError(
            f"ADS1115 full-scale range must be one of {allowed} V, got {full_scale!r}"
        )
    if data_rate not in DATA_RATES:
        allowed = ", ".join(str(v) for v in DATA_RATES)
        raise SensorConfigError(
            f"ADS1115 data rate must be one of {allowed} SPS, got {data_rate!r}"
        )


class ADS1115:
    """Driver: ``ADS1115(smbus2.SMBus(1), channel="1").read()`` -> ``{"voltage": 1.65}``.

    Each reading is one single-shot conversion: the driver writes the config register,
    sleeps the nominal conversion time (``1 / data_rate``; ``sleep`` is ``time.sleep``
    unless given), then polls OS. A code at full scale (7FFFh, 8000h) raises
    :class:`SensorError`: the input is beyond the range and the value clipped. Bus
    faults propagate as ``OSError``; a conversion that never finishes raises
    :class:`SensorTimeout` (a ``TimeoutError``, so an ``OSError`` too).
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x48,
        *,
        channel: Channel = "0",
        full_scale: float = 2.048,
        data_rate: int = 128,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                f"ADS1115 address must be 0x48..0x4B (set by the ADDR pin), got {hex_text(address)}"
            )
        if channel not in MUX:
            raise SensorConfigError(
                f"ADS1115 channel must be one of {', '.join(MUX)}, got {channel!r}"
            )
        _check_options(full_scale, data_rate)
        self._bus = bus
        self.address = address
        self.channel = channel
        self.full_scale = full_scale
        self.data_rate = data_rate
        self._sleep = time.sleep if sleep is None else sleep

    def read(self) -> dict[str, float]:
        """One conversion of the configured channel: ``{"voltage": V}``."""
        return {"voltage": self.read_channel(self.channel)}

    def read_all(self) -> dict[str, float]:
        """Four conversions, AIN0..AIN3 against GND: ``{"ain0": V, ..., "ain3": V}``."""
        return {f"ain{n}": self.read_channel(str(n)) for n in range(4)}

    def read_channel(self, channel: str) -> float:
        """One single-shot conversion of ``channel`` ("0".."3" or "p-n"), in volts."""
        if channel not in MUX:
            raise SensorConfigError(
                f"ADS1115 channel must be one of {', '.join(MUX)}, got {channel!r}"
            )
        config = config_word(channel, self.full_scale, self.data_rate)
        write_word_be(self._bus, self.address, CONFIG, config)
        conversion_time = 1.0 / self.data_rate
        self._sleep(conversion_time)
        for _ in range(_POLLS):
            if read_word_be(self._bus, self.address, CONFIG) & OS:
                break
            self._sleep(conversion_time / 10)
        else:
            raise SensorTimeout(
                f"ADS1115 at 0x{self.address:02X}: conversion not done after "
                f"{3 * conversion_time:.3f} s (3x the nominal time at {self.data_rate} SPS)"
            )
        code = read_word_be(self._bus, self.address, CONVERSION)
        if code in (_CODE_MAX, _CODE_MIN & 0xFFFF):
            raise SensorError(
                f"ADS1115 at 0x{self.address:02X}: input {channel} is at the +-{self.full_scale} V "
                "full scale, so the reading is clipped: choose a wider range"
            )
        return decode_volts(code >> 8, code & 0xFF, self.full_scale)


# Registry entry -----------------------------------------------------------------


@dataclass(frozen=True)
class ADS1115Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x48,
        metadata={
            "choices": tuple(ADDRESSES),
            "hex": True,
            "doc": "I2C address, set by the ADDR pin",
        },
    )
    channel: Literal["0", "1", "2", "3", "0-1", "0-3", "1-3", "2-3", "all"] = field(
        default="0",
        metadata={
            "doc": "input: AINn against GND, a differential pair 'p-n', or 'all' four vs GND"
        },
    )
    range: float = field(
        default=4.096,
        metadata={
            "min": 0.256,
            "max": 6.144,
            "doc": "full-scale range in volts: 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256",
        },
    )
    data_rate: int = field(
        default=128,
        metadata={
            "min": 8,
            "max": 860,
            "doc": "samples per second: 8, 16, 32, 64, 128, 250, 475 or 860",
        },
    )

    def __post_init__(self) -> None:
        try:
            _check_options(self.range, self.data_rate)
        except SensorConfigError as exc:
            raise ValueError(str(exc).removeprefix("ADS1115 ")) from None


class ADS1115Sensor:
    """An ADS1115 as a polled sensor: one channel's volts, or all four by name."""

    def __init__(self, driver: ADS1115, *, all_channels: bool = False) -> None:
        self.driver = driver
        self.all_channels = all_channels
        self.unit = "" if all_channels else "V"

    def read(self) -> float | Mapping[str, float]:
        if self.all_channels:
            return self.driver.read_all()
        return self.driver.read()["voltage"]

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: ADS1115Params, hw: Hardware) -> PolledSensor:
    all_channels = params.channel == "all"
    driver = ADS1115(
        hw.i2c(params.bus),
        params.address,
        channel="0" if params.channel == "all" else params.channel,
        full_scale=params.range,
        data_rate=params.data_rate,
        sleep=hw.sleep,
    )
    return ADS1115Sensor(driver, all_channels=all_channels)


def _quantities(params: ADS1115Params) -> dict[str, str]:
    """All four inputs with ``channel = "all"``; otherwise one value, in volts."""
    return {f"ain{i}": "V" for i in range(4)} if params.channel == "all" else {}


SENSOR_TYPE = SensorType(
    name="i2c.ads1115",
    params=ADS1115Params,
    build=_build,
    polled=True,
    summary="TI ADS1115 16-bit ADC on I2C: one input's volts, or all four (channel = 'all')",
    units={"ain0": "V", "ain1": "V", "ain2": "V", "ain3": "V"},
    quantities=_quantities,
    # The widest full-scale range; readings at a range's full scale raise instead.
    limits={q: (-6.144, 6.144) for q in ("", "ain0", "ain1", "ain2", "ain3")},
)
