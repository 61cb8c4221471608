"""TI INA219 current and power monitor: the driver and its registry entry (its
register-level model is in sensors.sim).

Datasheet: TI SBOS448. Six 16-bit registers, most significant byte first: 0x00 config,
0x01 shunt voltage (two's complement, 10 uV/LSB, clipped at the PGA range), 0x02 bus
voltage (bits 15..3 at 4 mV/LSB, CNVR bit 1, OVF bit 0), 0x03 power, 0x04 current,
0x05 calibration. The chip computes current and power itself from the calibration
register (section 8.5.1):

    Current_LSB = max expected current / 2**15
    Cal         = trunc(0.04096 / (Current_LSB * R_shunt))
    current     = shunt * Cal / 4096          (equation 4)
    power       = current * bus / 5000        (equation 5), Power_LSB = 20 * Current_LSB

This module has no ``from __future__ import annotations``: the config validator reads
real types from the params dataclass's fields.
"""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import SensorConfigError, SensorError, SensorTimeout
from sensors.ports import I2CBus, hex_text, read_word_be, write_word_be

CONFIG = 0x00
SHUNT_VOLTAGE = 0x01
BUS_VOLTAGE = 0x02
POWER = 0x03
CURRENT = 0x04
CALIBRATION = 0x05

#: The sixteen addresses pins A1 and A0 can select (SBOS448 table 1).
ADDRESSES = range(0x40, 0x50)

# Config register fields (SBOS448 section 8.6.2.1).
RST = 0x8000
BRNG_SHIFT = 13
PG_SHIFT = 11
BADC_SHIFT = 7
SADC_SHIFT = 3
MODE_MASK = 0x0007
MODE_SHUNT_BUS_CONTINUOUS = 0b111
CONFIG_POWER_UP = 0x399F  # 32 V, PGA /8 (+-320 mV), 12-bit, shunt and bus continuous

# Bus voltage register flags.
CNVR = 0x0002  # conversion ready: set after a conversion, cleared by reading power
OVF = 0x0001  # math overflow: current or power out of range

SHUNT_LSB_V = 10e-6
BUS_LSB_V = 4e-3
CAL_SCALE = 0.04096  # fixed internal value in the calibration equation

#: BRNG bit by bus full-scale range in volts.
BUS_RANGES: dict[int, int] = {16: 0, 32: 1}
#: PG bits by shunt full-scale range in millivolts.
SHUNT_RANGES: dict[int, int] = {40: 0b00, 80: 0b01, 160: 0b10, 320: 0b11}
#: BADC/SADC codes by samples averaged (12-bit each); one sample is the power-up 0011.
SAMPLES: dict[int, int] = {
    1: 0b0011,
    2: 0b1001,
    4: 0b1010,
    8: 0b1011,
    16: 0b1100,
    32: 0b1101,
    64: 0b1110,
    128: 0b1111,
}
#: Conversion time in seconds by samples averaged (SBOS448 table 5).
CONVERSION_TIME: dict[int, float] = {
    1: 532e-6,
    2: 1.06e-3,
    4: 2.13e-3,
    8: 4.26e-3,
    16: 8.51e-3,
    32: 17.02e-3,
    64: 34.05e-3,
    128: 68.10e-3,
}
_CAL_MAX = 0xFFFE  # FS0 is void and reads 0
# Polls of CNVR after the nominal conversion time, each a tenth of it apart.
_POLLS = 20


def config_word(bus_range_v: int, shunt_range_mv: int, samples: int) -> int:
    """The config register value: ranges, averaging, shunt and bus converted continuously."""
    adc = SAMPLES[samples]
    return (
        BUS_RANGES[bus_range_v] << BRNG_SHIFT
        | SHUNT_RANGES[shunt_range_mv] << PG_SHIFT
        | adc << BADC_SHIFT
        | adc << SADC_SHIFT
        | MODE_SHUNT_BUS_CONTINUOUS
    )


def calibration_value(shunt_ohms: float, max_current: float) -> int:
    """Cal = trunc(0.04096 / (Current_LSB * R_shunt)) with Current_LSB = max_current / 2**15.

    A quotient that is an integer on paper may come out a hair below it in binary
    floating point (0.04096 / (0.001 * 0.002) = 20479.999...); it is nudged up first,
    so the datasheet's own example gives its 20480. Bit 0 is void in the chip, so it is
    cleared here too.
    """
    current_lsb = max_current / 2**15
    cal = math.floor(CAL_SCALE / (current_lsb * shunt_ohms) * (1 + 1e-12))
    if not 2 <= cal <= _CAL_MAX:
        lowest = CAL_SCALE * 2**15 / (_CAL_MAX * shunt_ohms)
        raise SensorConfigError(
            f"INA219 calibration {cal} for {shunt_ohms} ohm and {max_current} A is outside "
            f"the 16-bit register: max_current must be at least {lowest:.6g} A for this shunt"
        )
    return cal & _CAL_MAX


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def _check_options(
    shunt_ohms: float, max_current: float, bus_range_v: int, shunt_range_mv: int, samples: int
) -> None:
    if not (math.isfinite(shunt_ohms) and shunt_ohms > 0):
        raise SensorConfigError(f"INA219 shunt_ohms must be > 0, got {shunt_ohms!r}")
    if not (math.isfinite(max_current) and max_current > 0):
        raise SensorConfigError(f"INA219 max_current must be > 0, got {max_current!r}")
    for name, value, allowed in (
        ("bus_range_v", bus_range_v, BUS_RANGES),
        ("shunt_range_mv", shunt_range_mv, SHUNT_RANGES),
        ("samples", samples, SAMPLES),
    ):
        if value not in allowed:
            choices = ", ".join(str(v) for v in allowed)
            raise SensorConfigError(f"INA219 {name} must be one of {choices}, got {value!r}")
    # max_current may exceed shunt_range_mv / shunt_ohms: it only sets the current LSB
    # (the datasheet's own example does so); readings at the shunt's full scale raise.
    calibration_value(shunt_ohms, max_current)


class INA219:
    """Driver: ``INA219(smbus2.SMBus(1)).read()`` ->
    ``{"voltage": 12.0, "shunt_voltage": 0.05, "current": 0.5, "power": 6.0}``.

    ``voltage`` is the bus voltage (IN- to GND). Each reading first checks that the
    calibration register still holds this driver's value; if not (first use, or the chip
    was reset by a power glitch) it programs calibration and config and waits for a
    fresh conversion, so current and power never come from a stale calibration.
    Raises :class:`SensorError` on the chip's math overflow (current beyond
    ``max_current``) and when the shunt voltage sits at the PGA's full scale. Bus faults
    propagate as ``OSError``; a conversion that never completes raises
    :class:`SensorTimeout` (a ``TimeoutError``).
    ``sleep`` (``time.sleep`` unless given) waits for that conversion.
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x40,
        *,
        shunt_ohms: float = 0.1,
        max_current: float = 3.2,
        bus_range_v: int = 32,
        shunt_range_mv: int = 320,
        samples: int = 1,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                "INA219 address must be 0x40..0x4F (set by pins A1 and A0),"
                f" got {hex_text(address)}"
            )
        _check_options(shunt_ohms, max_current, bus_range_v, shunt_range_mv, samples)
        self._bus = bus
        self.address = address
        self.shunt_ohms = shunt_ohms
        self.max_current = max_current
        self.shunt_range_mv = shunt_range_mv
        self.samples = samples
        self.config = config_word(bus_range_v, shunt_range_mv, samples)
        self.calibration = calibration_value(shunt_ohms, max_current)
        # The LSB the (truncated) calibration actually yields, so truncation costs nothing.
        self.current_lsb = CAL_SCALE / (self.calibration * shunt_ohms)
        self.power_lsb = 20 * self.current_lsb
        self._sleep = time.sleep if sleep is None else sleep

    def read(self) -> dict[str, float]:
        """One reading: bus ``voltage`` V, ``shunt_voltage`` V, ``current`` A, ``power`` W."""
        bus, address = self._bus, self.address
        if read_word_be(bus, address, CALIBRATION) != self.calibration:
            self.configure()
        bus_word = read_word_be(bus, address, BUS_VOLTAGE)
        shunt = _signed(read_word_be(bus, address, SHUNT_VOLTAGE))
        current = _signed(read_word_be(bus, address, CURRENT))
        power = read_word_be(bus, address, POWER)  # unsigned; this read clears CNVR
        if bus_word & OVF:
            raise SensorError(
                f"INA219 at 0x{self.address:02X}: math overflow: current beyond the calibrated "
                f"range (max_current = {self.max_current} A)"
            )
        if abs(shunt) >= self.shunt_range_mv * 100:
            raise SensorError(
                f"INA219 at 0x{self.address:02X}: shunt voltage {shunt * SHUNT_LSB_V * 1e3:.2f} mV "
                f"is at the +-{self.shunt_range_mv} mV full scale: current beyond "
                f"{self.shunt_range_mv * 1e-3 / self.shunt_ohms:.4g} A"
            )
        return {
            "voltage": (bus_word >> 3) * BUS_LSB_V,
            "shunt_voltage": shunt * SHUNT_LSB_V,
            "current": current * self.current_lsb,
            "power": power * self.power_lsb,
        }

    def configure(self) -> None:
        """Program calibration, then config, and wait for the first conversion using both.

        Calibration goes first: the config write clears CNVR and restarts conversion, so
        the next CNVR is certain to come from a conversion that used the new calibration.
        """
        write_word_be(self._bus, self.address, CALIBRATION, self.calibration)
        write_word_be(self._bus, self.address, CONFIG, self.config)
        conversion_time = 2 * CONVERSION_TIME[self.samples]  # shunt, then bus
        self._sleep(conversion_time)
        for _ in range(_POLLS):
            if read_word_be(self._bus, self.address, BUS_VOLTAGE) & CNVR:
                return
            self._sleep(conversion_time / 10)
        raise SensorTimeout(
            f"INA219 at 0x{self.address:02X}: no conversion ready {3 * conversion_time:.4f} s "
            "after configuring (3x the nominal conversion time)"
        )


# Registry entry -----------------------------------------------------------------


@dataclass(frozen=True)
class INA219Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x40,
        metadata={
            "min": 0x40,
            "max": 0x4F,
            "hex": True,
            "doc": "I2C address, set by pins A1 and A0",
        },
    )
    shunt_ohms: float = field(
        default=0.1, metadata={"min": 0.0001, "max": 100.0, "doc": "shunt resistance in ohms"}
    )
    max_current: float = field(
        default=3.2,
        metadata={
            "min": 0.0001,
            "max": 3200.0,
            "doc": "largest expected current in amperes; sets the current resolution",
        },
    )
    bus_range_v: int = field(
        default=32, metadata={"min": 16, "max": 32, "doc": "bus voltage full scale: 16 or 32 V"}
    )
    shunt_range_mv: int = field(
        default=320,
        metadata={
            "min": 40,
            "max": 320,
            "doc": "shunt voltage full scale: 40, 80, 160 or 320 mV",
        },
    )
    samples: int = field(
        default=1,
        metadata={"min": 1, "max": 128, "doc": "samples averaged per reading: 1, 2, 4, ... 128"},
    )

    def __post_init__(self) -> None:
        try:
            _check_options(
                self.shunt_ohms,
                self.max_current,
                self.bus_range_v,
                self.shunt_range_mv,
                self.samples,
            )
        except SensorConfigError as exc:
            raise ValueError(str(exc).removeprefix("INA219 ")) from None


class INA219Sensor:
    """An INA219 as a polled sensor: bus voltage, shunt voltage, current and power."""

    unit = ""

    def __init__(self, driver: INA219) -> None:
        self.driver = driver

    def read(self) -> Mapping[str, float]:
        return self.driver.read()

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: INA219Params, hw: Hardware) -> PolledSensor:
    return INA219Sensor(
        INA219(
            hw.i2c(params.bus),
            params.address,
            shunt_ohms=params.shunt_ohms,
            max_current=params.max_current,
            bus_range_v=params.bus_range_v,
            shunt_range_mv=params.shunt_range_mv,
            samples=params.samples,
            sleep=hw.sleep,
        )
    )


SENSOR_TYPE = SensorType(
    name="i2c.ina219",
    params=INA219Params,
    build=_build,
    polled=True,
    summary="TI INA219 current and power monitor on I2C: bus V, shunt V, A, W",
    units={"voltage": "V", "shunt_voltage": "V", "current": "A", "power": "W"},
    # Bus inputs take 0..26 V (section 8.1); the shunt ADC's widest range is +-320 mV.
    limits={"voltage": (0.0, 26.0), "shunt_voltage": (-0.32, 0.32)},
)
