"""Bosch BME280 temperature, pressure and humidity sensor: driver, register model, registry entry.

Datasheet: Bosch BST-BME280-DS002. The driver runs the chip in forced mode: each
``read()`` starts one measurement, waits the datasheet's maximum measurement time,
polls the status register until the conversion is done, then burst-reads the eight
data registers. Between reads the chip sleeps, which keeps self-heating out of the
temperature. Raw values are compensated with the chip's factory calibration by the
double-precision formulas of datasheet section 8.1.

This module deliberately has no ``from __future__ import annotations``: the config
validator reads real types from the fields of :class:`BME280Params`.
"""

import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import SensorConfigError, SensorError, SensorTimeout
from sensors.ports import I2CBus, hex_text

# Registers (datasheet 5.3, memory map).
CALIB_TP = 0x88  # dig_T1..dig_P9 at 0x88..0x9F, then 0xA0 unused and dig_H1 at 0xA1
CALIB_TP_LENGTH = 26
CHIP_ID = 0xD0
RESET = 0xE0
CALIB_H = 0xE1  # dig_H2..dig_H6 at 0xE1..0xE7
CALIB_H_LENGTH = 7
CTRL_HUM = 0xF2
STATUS = 0xF3
CTRL_MEAS = 0xF4
CONFIG = 0xF5
DATA = 0xF7  # press msb, lsb, xlsb; temp msb, lsb, xlsb; hum msb, lsb
DATA_LENGTH = 8

ADDRESSES = (0x76, 0x77)  # SDO pin to GND, to VDDIO
CHIP_ID_VALUE = 0x60
RESET_WORD = 0xB6
STATUS_MEASURING = 0x08
STATUS_IM_UPDATE = 0x01
MODE_SLEEP = 0b00
MODE_FORCED = 0b01  # 0b10 is forced mode too
MODE_NORMAL = 0b11

#: Oversampling factor -> osrs_x register code (0 = measurement skipped).
OVERSAMPLING = {1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}
#: IIR filter coefficient -> filter register code (0 = filter off).
FILTER = {0: 0b000, 2: 0b001, 4: 0b010, 8: 0b011, 16: 0b100}
#: What a skipped measurement leaves in the data registers (datasheet 4.1: 0x80000, 0x8000).
SKIPPED_20_BIT = 0x80000
SKIPPED_16_BIT = 0x8000

#: Status polls after the maximum measurement time before the driver gives up.
STATUS_POLLS = 10
POLL_INTERVAL = 0.001  # seconds between status polls
STARTUP_TIME = 0.002  # seconds from power-on or soft reset until the chip answers (datasheet 1.1)


@dataclass(frozen=True)
class Calibration:
    """The chip's factory trimming parameters (datasheet 4.2.2, table 16)."""

    t1: int
    t2: int
    t3: int
    p1: int
    p2: int
    p3: int
    p4: int
    p5: int
    p6: int
    p7: int
    p8: int
    p9: int
    h1: int
    h2: int
    h3: int
    h4: int
    h5: int
    h6: int

    # dig_T1 u16, T2 T3 s16, P1 u16, P2..P9 s16 (little-endian), one unused byte, dig_H1 u8.
    _TP_FORMAT = "<HhhHhhhhhhhhxB"

    @classmethod
    def from_registers(cls, tp: bytes, h: bytes) -> "Calibration":
        """Decode the 26 bytes from 0x88 and the 7 bytes from 0xE1."""
        t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1 = struct.unpack(cls._TP_FORMAT, tp)
        h2, h3, e4, e5, e6, h6 = struct.unpack("<hBbBbb", h)
        # dig_H4 and dig_H5 are signed 12-bit values sharing 0xE5: H4 = 0xE4[7:0] 0xE5[3:0],
        # H5 = 0xE6[7:0] 0xE5[7:4] (most significant bits first); 0xE4 and 0xE6 carry the sign.
        h4 = e4 * 16 | (e5 & 0x0F)
        h5 = e6 * 16 | (e5 >> 4)
        return cls(t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9, h1, h2, h3, h4, h5, h6)

    def to_registers(self) -> tuple[bytes, bytes]:
        """The inverse of :meth:`from_registers`: what a chip holds at 0x88 and 0xE1."""
        tp = struct.pack(
            self._TP_FORMAT,
            *(self.t1, self.t2, self.t3),
            *(self.p1, self.p2, self.p3, self.p4, self.p5, self.p6, self.p7, self.p8, self.p9),
            self.h1,
        )
        for name, value in (("h4", self.h4), ("h5", self.h5)):
            if not -2048 <= value <= 2047:
                raise ValueError(f"dig_{name.upper()} is signed 12-bit, got {value}")
        e5 = (self.h4 & 0x0F) | (self.h5 & 0x0F) << 4
        h = struct.pack("<hBbBbb", self.h2, self.h3, self.h4 >> 4, e5, self.h5 >> 4, self.h6)
        return tp, h


#: T/P trimming from the worked example in the BMP280 datasheet (BST-BMP280-DS001,
#: 3.12 table 15), whose compensation the BME280 shares; H values are plausible ones.
EXAMPLE_CALIBRATION = Calibration(
    t1=27504, t2=26435, t3=-1000,
    p1=36477, p2=-10685, p3=3024, p4=2855, p5=140, p6=-7, p7=15500, p8=-14600, p9=6000,
    h1=75, h2=362, h3=0, h4=313, h5=50, h6=30,
)  # fmt: skip


# Compensation, double precision (datasheet 8.1). t_fine carries the temperature into the
# pressure and humidity formulas. Bosch's code truncates it to an integer; it stays a float
# here, as in the datasheet's worked example (p = 100653.27 Pa; truncated: 100653.26 Pa).


def t_fine(cal: Calibration, adc_t: int) -> float:
    """Fine temperature (5120 per degC) from the raw temperature."""
    var1 = (adc_t / 16384.0 - cal.t1 / 1024.0) * cal.t2
    var2 = (adc_t / 131072.0 - cal.t1 / 8192.0) ** 2 * cal.t3
    return var1 + var2


def compensate_pressure(cal: Calibration, fine: float, adc_p: int) -> float:
    """Pressure in Pa from the raw pressure and ``t_fine``."""
    var1 = fine / 2.0 - 64000.0
    var2 = var1 * var1 * cal.p6 / 32768.0
    var2 = var2 + var1 * cal.p5 * 2.0
    var2 = var2 / 4.0 + cal.p4 * 65536.0
    var1 = (cal.p3 * var1 * var1 / 524288.0 + cal.p2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * cal.p1
    if var1 == 0.0:
        return 0.0  # as Bosch's code: avoids a division by zero on a blank calibration
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = cal.p9 * p * p / 2147483648.0
    var2 = p * cal.p8 / 32768.0
    return p + (var1 + var2 + cal.p7) / 16.0


def compensate_humidity(cal: Calibration, fine: float, adc_h: int) -> float:
    """Relative humidity in %RH, clamped to 0..100, from the raw humidity and ``t_fine``."""
    var_h = fine - 76800.0
    var_h = (adc_h - (cal.h4 * 64.0 + cal.h5 / 16384.0 * var_h)) * (
        cal.h2 / 65536.0 * (1.0 + cal.h6 / 67108864.0 * var_h * (1.0 + cal.h3 / 67108864.0 * var_h))
    )
    var_h = var_h * (1.0 - cal.h1 * var_h / 524288.0)
    return min(max(var_h, 0.0), 100.0)


def compensate(cal: Calibration, adc_t: int, adc_p: int, adc_h: int) -> dict[str, float]:
    """Raw ADC values -> ``{"temperature": degC, "pressure": hPa, "humidity": %RH}``."""
    fine = t_fine(cal, adc_t)
    return {
        "temperature": fine / 5120.0,
        "pressure": compensate_pressure(cal, fine, adc_p) / 100.0,
        "humidity": compensate_humidity(cal, fine, adc_h),
    }


def measurement_time(osrs_t: int, osrs_p: int, osrs_h: int) -> float:
    """Maximum forced-mode measurement time in seconds (datasheet 9.1), factors as 1..16."""
    return (1.25 + 2.3 * osrs_t + (2.3 * osrs_p + 0.575) + (2.3 * osrs_h + 0.575)) / 1000.0


def _check_choice(name: str, value: int, allowed: Mapping[int, int]) -> None:
    if value not in allowed:
        choices = ", ".join(str(v) for v in allowed)
        raise SensorConfigError(f"BME280 {name} must be one of {choices}, got {value!r}")


class BME280:
    """Driver: ``BME280(smbus2.SMBus(1)).read()`` ->
    ``{"temperature": 21.3, "pressure": 1008.2, "humidity": 45.1}`` (degC, hPa, %RH).

    The constructor does no I/O; the first ``read()`` checks the chip id, soft-resets
    the chip and loads its calibration. Bus faults propagate as ``OSError``; a status
    bit (measuring, im_update) still set after the last poll raises :class:`SensorTimeout`.
    ``sleep`` waits for the conversion (``time.sleep`` by default; tests pass a recorder).
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x76,
        *,
        oversampling_temperature: int = 1,
        oversampling_pressure: int = 1,
        oversampling_humidity: int = 1,
        iir_filter: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                f"BME280 address must be 0x76 or 0x77 (set by the SDO pin), got {hex_text(address)}"
            )
        _check_choice("oversampling_temperature", oversampling_temperature, OVERSAMPLING)
        _check_choice("oversampling_pressure", oversampling_pressure, OVERSAMPLING)
        _check_choice("oversampling_humidity", oversampling_humidity, OVERSAMPLING)
        _check_choice("iir_filter", iir_filter, FILTER)
        self._bus = bus
        self.address = address
        self._sleep = sleep
        self._ctrl_hum = OVERSAMPLING[oversampling_humidity]
        self._ctrl_meas = (
            OVERSAMPLING[oversampling_temperature] << 5
            | OVERSAMPLING[oversampling_pressure] << 2
            | MODE_FORCED
        )
        self._config = FILTER[iir_filter] << 2
        self._wait = measurement_time(
            oversampling_temperature, oversampling_pressure, oversampling_humidity
        )
        self.calibration: Calibration | None = None

    def read(self) -> dict[str, float]:
        """One forced measurement: temperature in degC, pressure in hPa, humidity in %RH."""
        if self.calibration is None:
            self.calibration = self._start()
        bus, address = self._bus, self.address
        # ctrl_hum takes effect only with the next ctrl_meas write (datasheet 5.4.3); it is
        # rewritten each time so a chip that lost power mid-run measures humidity again.
        bus.write_byte_data(address, CTRL_HUM, self._ctrl_hum)
        bus.write_byte_data(address, CTRL_MEAS, self._ctrl_meas)
        self._sleep(self._wait)
        self._poll_status(STATUS_MEASURING, "a measurement")
        data = bus.read_i2c_block_data(address, DATA, DATA_LENGTH)
        adc_p = data[0] << 12 | data[1] << 4 | data[2] >> 4
        adc_t = data[3] << 12 | data[4] << 4 | data[5] >> 4
        adc_h = data[6] << 8 | data[7]
        if adc_t == SKIPPED_20_BIT or adc_p == SKIPPED_20_BIT or adc_h == SKIPPED_16_BIT:
            self.calibration = None  # the chip was reset behind our back: set it up again
            raise SensorError(
                f"BME280 at 0x{address:02X} skipped a measurement (raw T 0x{adc_t:05X}, "
                f"P 0x{adc_p:05X}, H 0x{adc_h:04X}); it will be set up again on the next read"
            )
        return compensate(self.calibration, adc_t, adc_p, adc_h)

    def _start(self) -> Calibration:
        bus, address = self._bus, self.address
        found = bus.read_byte_data(address, CHIP_ID)
        if found != CHIP_ID_VALUE:
            hint = (
                " (0x56..0x58 is a BMP280, which has no humidity)" if 0x56 <= found <= 0x58 else ""
            )
            raise SensorError(
                f"no BME280 at 0x{address:02X}: chip id register 0xD0 reads 0x{found:02X}, "
                f"expected 0x{CHIP_ID_VALUE:02X}{hint}"
            )
        bus.write_byte_data(address, RESET, RESET_WORD)
        self._sleep(STARTUP_TIME)
        self._poll_status(STATUS_IM_UPDATE, "the calibration copy after reset")
        tp = bytes(bus.read_i2c_block_data(address, CALIB_TP, CALIB_TP_LENGTH))
        h = bytes(bus.read_i2c_block_data(address, CALIB_H, CALIB_H_LENGTH))
        bus.write_byte_data(address, CONFIG, self._config)  # only honoured in sleep mode
        return Calibration.from_registers(tp, h)

    def _poll_status(self, bit: int, what: str) -> None:
        for attempt in range(STATUS_POLLS):
            if not self._bus.read_byte_data(self.address, STATUS) & bit:
                return
            if attempt < STATUS_POLLS - 1:
                self._sleep(POLL_INTERVAL)
        raise SensorTimeout(
            f"BME280 at 0x{self.address:02X} did not finish {what}: "
            f"status bit 0x{bit:02X} still set after {STATUS_POLLS} polls"
        )


# -- the register model ------------------------------------------------------------------

#: Datasheet operating range; the model clamps its signals to it.
RANGES: Mapping[str, tuple[float, float]] = {
    "temperature": (-40.0, 85.0),
    "pressure": (300.0, 1100.0),
    "humidity": (0.0, 100.0),
}


# -- the registry entry ------------------------------------------------------------------


@dataclass(frozen=True)
class BME280Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x76,
        metadata={"choices": ADDRESSES, "hex": True, "doc": "I2C address, set by the SDO pin"},
    )
    oversampling_temperature: int = field(
        default=1, metadata={"min": 1, "max": 16, "doc": "temperature oversampling: 1, 2, 4, 8, 16"}
    )
    oversampling_pressure: int = field(
        default=1, metadata={"min": 1, "max": 16, "doc": "pressure oversampling: 1, 2, 4, 8, 16"}
    )
    oversampling_humidity: int = field(
        default=1, metadata={"min": 1, "max": 16, "doc": "humidity oversampling: 1, 2, 4, 8, 16"}
    )
    iir_filter: int = field(
        default=0,
        metadata={"min": 0, "max": 16, "doc": "IIR filter coefficient: 0 (off), 2, 4, 8, 16"},
    )

    def __post_init__(self) -> None:
        for name in ("oversampling_temperature", "oversampling_pressure", "oversampling_humidity"):
            value = getattr(self, name)
            if value not in OVERSAMPLING:
                raise ValueError(f"{name} must be 1, 2, 4, 8 or 16, got {value}")
        if self.iir_filter not in FILTER:
            raise ValueError(f"iir_filter must be 0, 2, 4, 8 or 16, got {self.iir_filter}")


class BME280Sensor:
    """A BME280 as a polled sensor: temperature (degC), pressure (hPa), humidity (%RH)."""

    unit = ""

    def __init__(self, driver: BME280) -> None:
        self.driver = driver

    def read(self) -> Mapping[str, float]:
        return self.driver.read()

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: BME280Params, hw: Hardware) -> PolledSensor:
    driver = BME280(
        hw.i2c(params.bus),
        params.address,
        oversampling_temperature=params.oversampling_temperature,
        oversampling_pressure=params.oversampling_pressure,
        oversampling_humidity=params.oversampling_humidity,
        iir_filter=params.iir_filter,
        sleep=hw.sleep,
    )
    return BME280Sensor(driver)


SENSOR_TYPE = SensorType(
    name="i2c.bme280",
    params=BME280Params,
    build=_build,
    polled=True,
    summary="Bosch BME280 temperature, pressure and humidity sensor on I2C (forced mode)",
    units={"temperature": "degC", "pressure": "hPa", "humidity": "%RH"},
    limits=RANGES,
)
