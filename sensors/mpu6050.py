"""InvenSense MPU-6050 accelerometer and gyroscope: the driver, its FIFO, its register-level
model, and its registry entry.

Sources: product specification PS-MPU-6000A-00 rev 3.4 (sensitivities, temperature
formula, the 1024-byte FIFO) and register map RM-MPU-6000A-00 rev 4.2 (addresses, bits).
Registers are bytes; measurements are 16-bit two's complement, high byte first, in the
order accel x, y, z, temperature, gyro x, y, z from ACCEL_XOUT_H (0x3B) to GYRO_ZOUT_L
(0x48). The chip powers up asleep (PWR_MGMT_1 = 0x40) and says WHO_AM_I = 0x68 at either
address.

Sample rate = gyro output rate / (1 + SMPLRT_DIV), where the gyro output rate is 8 kHz
with the low-pass filter off (DLPF_CFG 0) and 1 kHz with it on (DLPF_CFG 1..6, accel
bandwidth 184, 94, 44, 21, 10, 5 Hz). The accelerometer itself outputs at most 1 kHz.

The FIFO receives one frame per sample, the enabled sensors in register order. When it
is full the chip drops the *oldest bytes*: 1024 is not a multiple of a 6-byte frame, so
after an overflow the FIFO no longer starts on a frame boundary. :meth:`MPU6050.read_fifo`
therefore checks the overflow flag after draining, and on overflow discards what it read,
resets the FIFO and raises :class:`~sensors.errors.SensorError`: a window with a hole in
it is worse for an anomaly detector than no window, and the loss must not pass silently.

This module has no ``from __future__ import annotations``: the config validator reads real
types from the fields of :class:`MPU6050Params`.
"""

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, get_args

from sensors.base import Hardware, SensorType
from sensors.errors import SensorConfigError, SensorError
from sensors.ports import I2CBus, hex_text

# Registers (RM-MPU-6000A-00 rev 4.2, register map table).
SMPLRT_DIV = 0x19
CONFIG = 0x1A  # DLPF_CFG in bits 2:0
GYRO_CONFIG = 0x1B  # FS_SEL in bits 4:3
ACCEL_CONFIG = 0x1C  # AFS_SEL in bits 4:3
FIFO_EN = 0x23
INT_STATUS = 0x3A  # clears when read
ACCEL_XOUT_H = 0x3B
USER_CTRL = 0x6A
PWR_MGMT_1 = 0x6B
FIFO_COUNTH = 0x72
FIFO_R_W = 0x74
WHO_AM_I = 0x75

ADDRESSES = (0x68, 0x69)  # AD0 pin low, high
CHIP_ID = 0x68

# Bits.
FIFO_EN_TEMP, FIFO_EN_XG, FIFO_EN_YG, FIFO_EN_ZG, FIFO_EN_ACCEL = 0x80, 0x40, 0x20, 0x10, 0x08
USER_CTRL_FIFO_EN, USER_CTRL_FIFO_RESET = 0x40, 0x04
INT_FIFO_OFLOW, INT_DATA_RDY = 0x10, 0x01
PWR_DEVICE_RESET, PWR_SLEEP = 0x80, 0x40
PWR_WAKE = 0x01  # SLEEP clear, clock from the X gyro's PLL (CLKSEL 1), as the datasheet advises
PWR_POWER_UP = PWR_SLEEP

FIFO_SIZE = 1024
BURST = 14  # accel xyz, temperature, gyro xyz
# smbus2 moves at most 32 bytes a block; the largest multiple of 6 below that is 30.
FIFO_CHUNK_MAX = 30

AccelRange = Literal["2g", "4g", "8g", "16g"]
GyroRange = Literal["250dps", "500dps", "1000dps", "2000dps"]
Mode = Literal["burst", "fifo"]
Vector = tuple[float, float, float]

# Indexed by AFS_SEL / FS_SEL (PS-MPU-6000A-00, gyroscope and accelerometer specifications).
ACCEL_RANGES: tuple[AccelRange, ...] = get_args(AccelRange)
ACCEL_LSB_PER_G = (16384.0, 8192.0, 4096.0, 2048.0)
GYRO_RANGES: tuple[GyroRange, ...] = get_args(GyroRange)
GYRO_LSB_PER_DPS = (131.0, 65.5, 32.8, 16.4)
TEMP_LSB_PER_DEGC = 340.0
TEMP_OFFSET_DEGC = 36.53

DLPF_MAX = 6  # DLPF_CFG 7 is reserved
RATE_TOLERANCE = 1e-3  # relative: "333.33" names 1000/3 Hz


def gyro_output_rate(dlpf: int) -> float:
    """Hz: 8 kHz with the low-pass filter off (DLPF_CFG 0), 1 kHz with it on."""
    return 8000.0 if dlpf in (0, 7) else 1000.0


def sample_rate_divider(sample_rate: float, dlpf: int) -> int:
    """The SMPLRT_DIV that gives ``sample_rate`` Hz, or ``SensorConfigError`` naming the
    nearest rates the chip can make."""
    if not 0 <= dlpf <= DLPF_MAX:
        raise SensorConfigError(f"MPU6050 dlpf must be a DLPF_CFG of 0..{DLPF_MAX}, got {dlpf!r}")
    base = gyro_output_rate(dlpf)
    if not (math.isfinite(sample_rate) and sample_rate > 0):
        raise SensorConfigError(
            f"MPU6050 sample_rate must be a positive number, got {sample_rate!r}"
        )
    divider = min(max(round(base / sample_rate) - 1, 0), 255)
    achieved = base / (1 + divider)
    if abs(achieved - sample_rate) <= RATE_TOLERANCE * sample_rate:
        return divider
    below = base / (1 + min(divider + 1, 255))
    above = base / (1 + max(divider - 1, 0))
    nearest = sorted({below, achieved, above}, key=lambda r: abs(r - sample_rate))[:2]
    raise SensorConfigError(
        f"MPU6050 sample_rate {sample_rate:g} Hz is not achievable with dlpf={dlpf}"
        f" ({base:g} Hz / (1 + SMPLRT_DIV 0..255), so {base / 256:g}..{base:g} Hz);"
        f" nearest: {' or '.join(f'{r:.6g} Hz' for r in sorted(nearest))}"
    )


def decode_temperature(raw: int) -> float:
    """TEMP_OUT counts -> degC: counts / 340 + 36.53 (register map, TEMP_OUT)."""
    return raw / TEMP_LSB_PER_DEGC + TEMP_OFFSET_DEGC


def _choice(what: str, value: str, allowed: Sequence[str]) -> int:
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise SensorConfigError(f"MPU6050 {what} must be one of {choices}, got {value!r}")
    return list(allowed).index(value)


@dataclass(frozen=True)
class Settings:
    """What :meth:`MPU6050.configure` set; ``sample_rate`` is the rate the chip makes."""

    accel_range: AccelRange
    gyro_range: GyroRange
    sample_rate: float
    dlpf: int


class FifoFrame(NamedTuple):
    """One FIFO sample: accel in g, and gyro in deg/s when the FIFO carries it."""

    accel: Vector
    gyro: Vector | None


class MPU6050:
    """Driver: ``MPU6050(smbus2.SMBus(1)).read()`` ->
    ``{"accel": (x, y, z) g, "gyro": (x, y, z) deg/s, "temperature": degC}``.

    The constructor checks WHO_AM_I, wakes the chip and applies :meth:`configure`'s
    defaults, so a new driver reads at once. Bus faults propagate as ``OSError``.
    """

    def __init__(self, bus: I2CBus, address: int = 0x68) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                "MPU6050 address must be 0x68 or 0x69 (set by the AD0 pin),"
                f" got {hex_text(address)}"
            )
        self._bus = bus
        self.address = address
        found = bus.read_byte_data(address, WHO_AM_I)
        if found != CHIP_ID:
            raise SensorError(
                f"no MPU-6050 at 0x{address:02X}: WHO_AM_I (0x75) reads 0x{found:02X},"
                f" expected 0x{CHIP_ID:02X}"
            )
        self._frame = 0  # bytes per FIFO frame; 0 while this driver has not started the FIFO
        self.settings = Settings("2g", "250dps", 100.0, 3)
        self.configure()

    def configure(
        self,
        accel_range: AccelRange = "2g",
        gyro_range: GyroRange = "250dps",
        sample_rate: float = 100.0,
        dlpf: int = 3,
    ) -> None:
        """Wake the chip and set ranges, the sample rate (Hz) and the low-pass filter.

        ``dlpf`` is DLPF_CFG: 0 = off (accel bandwidth 260 Hz, gyro output 8 kHz), 1..6 =
        accel bandwidth 184, 94, 44, 21, 10, 5 Hz (gyro output 1 kHz). A running FIFO is
        emptied. Raises ``SensorConfigError`` for a range or a rate the chip cannot make.
        """
        afs = _choice("accel_range", accel_range, ACCEL_RANGES)
        fs = _choice("gyro_range", gyro_range, GYRO_RANGES)
        divider = sample_rate_divider(sample_rate, dlpf)
        self._bus.write_byte_data(self.address, PWR_MGMT_1, PWR_WAKE)
        # SMPLRT_DIV, CONFIG, GYRO_CONFIG and ACCEL_CONFIG are adjacent: one block write.
        self._bus.write_i2c_block_data(self.address, SMPLRT_DIV, [divider, dlpf, fs << 3, afs << 3])
        rate = gyro_output_rate(dlpf) / (1 + divider)
        self.settings = Settings(accel_range, gyro_range, rate, dlpf)
        if self._frame:
            self._reset_fifo()  # its frames were scaled and timed by the old settings

    def read(self) -> dict[str, Vector | float]:
        """Accel, temperature and gyro from one 14-byte burst, so all are the same sample."""
        data = bytes(self._bus.read_i2c_block_data(self.address, ACCEL_XOUT_H, BURST))
        ax, ay, az, temp, gx, gy, gz = struct.unpack(">7h", data)
        a = ACCEL_LSB_PER_G[ACCEL_RANGES.index(self.settings.accel_range)]
        g = GYRO_LSB_PER_DPS[GYRO_RANGES.index(self.settings.gyro_range)]
        return {
            "accel": (ax / a, ay / a, az / a),
            "gyro": (gx / g, gy / g, gz / g),
            "temperature": decode_temperature(temp),
        }

    def start_fifo(self, *, gyro: bool = False) -> None:
        """Empty the FIFO and start filling it with accel (and gyro) at the sample rate."""
        sensors = FIFO_EN_ACCEL | (FIFO_EN_XG | FIFO_EN_YG | FIFO_EN_ZG if gyro else 0)
        self._bus.write_byte_data(self.address, FIFO_EN, sensors)
        self._reset_fifo()
        self._frame = 12 if gyro else 6

    def stop_fifo(self) -> None:
        """Stop filling the FIFO."""
        self._bus.write_byte_data(self.address, USER_CTRL, 0x00)
        self._bus.write_byte_data(self.address, FIFO_EN, 0x00)
        self._frame = 0

    def read_fifo(self) -> list[Vector]:
        """Accel samples (g) that arrived since the last call, oldest first."""
        return [frame.accel for frame in self.read_fifo_frames()]

    def read_fifo_frames(self) -> list[FifoFrame]:
        """Whole frames that arrived since the last call, oldest first.

        Reads FIFO_COUNT, then only whole frames, in blocks of whole frames of at most
        30 bytes; a frame still being written stays for the next call. Raises
        ``SensorError`` if the FIFO overflowed (see the module docstring).
        """
        if not self._frame:
            raise SensorError("MPU6050 FIFO is off: call start_fifo() first")
        frame = self._frame
        high, low = self._bus.read_i2c_block_data(self.address, FIFO_COUNTH, 2)
        wanted = (high << 8 | low) // frame * frame
        chunk = FIFO_CHUNK_MAX // frame * frame
        data = bytearray()
        while len(data) < wanted:
            size = min(chunk, wanted - len(data))
            data += bytes(self._bus.read_i2c_block_data(self.address, FIFO_R_W, size))
        # Checked after draining: an overflow before or during the drain is caught here.
        if self._bus.read_byte_data(self.address, INT_STATUS) & INT_FIFO_OFLOW:
            self._reset_fifo()
            held = FIFO_SIZE // frame
            seconds = held / self.settings.sample_rate
            raise SensorError(
                f"MPU6050 FIFO overflow: samples lost (the 1024-byte FIFO holds {held} samples,"
                f" {seconds:.3g} s at {self.settings.sample_rate:g} Hz); the FIFO was reset."
                f" Read it at least every {seconds:.3g} s, or lower sample_rate"
            )
        a = ACCEL_LSB_PER_G[ACCEL_RANGES.index(self.settings.accel_range)]
        g = GYRO_LSB_PER_DPS[GYRO_RANGES.index(self.settings.gyro_range)]
        frames = []
        for values in struct.iter_unpack(f">{frame // 2}h", data):
            accel = (values[0] / a, values[1] / a, values[2] / a)
            gyro = (values[3] / g, values[4] / g, values[5] / g) if frame == 12 else None
            frames.append(FifoFrame(accel, gyro))
        return frames

    def _reset_fifo(self) -> None:
        # FIFO_RESET acts only while USER_CTRL.FIFO_EN is 0 (register map, USER_CTRL); so
        # does InvenSense's own mpu_reset_fifo (disable, reset, enable).
        self._bus.write_byte_data(self.address, USER_CTRL, USER_CTRL_FIFO_RESET)
        self._bus.read_byte_data(self.address, INT_STATUS)  # clears a stale overflow flag
        self._bus.write_byte_data(self.address, USER_CTRL, USER_CTRL_FIFO_EN)


# -- the simulated chip ---------------------------------------------------------------


# -- registry entry -------------------------------------------------------------------


@dataclass(frozen=True)
class MPU6050Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x68,
        metadata={"choices": ADDRESSES, "hex": True, "doc": "I2C address, set by the AD0 pin"},
    )
    accel_range: AccelRange = field(
        default="2g", metadata={"doc": "accelerometer full scale, +-2..16 g"}
    )
    gyro_range: GyroRange = field(
        default="250dps", metadata={"doc": "gyroscope full scale, +-250..2000 deg/s"}
    )
    sample_rate: float = field(
        default=100.0,
        metadata={
            "min": 1000.0 / 256,
            "max": 8000.0,
            "doc": "Hz: 1000 / (1 + n) with dlpf 1..6, 8000 / (1 + n) with dlpf 0, n = 0..255",
        },
    )
    dlpf: int = field(
        default=3,
        metadata={
            "min": 0,
            "max": DLPF_MAX,
            "doc": "low-pass DLPF_CFG: 0 off (260 Hz), 1..6 = 184, 94, 44, 21, 10, 5 Hz",
        },
    )
    mode: Mode = field(
        default="burst",
        metadata={"doc": "burst: one sample per read; fifo: all samples since the last read"},
    )

    def __post_init__(self) -> None:
        sample_rate_divider(self.sample_rate, self.dlpf)  # SensorConfigError is a ValueError
        if self.mode == "fifo" and self.sample_rate > 1000.0:
            raise ValueError(
                f"sample_rate must be at most 1000 Hz in fifo mode, got {self.sample_rate:g}:"
                " the accelerometer outputs at 1 kHz, so faster FIFO samples only repeat"
            )


class MPU6050Sensor:
    """An MPU-6050 as a polled sensor.

    ``burst`` mode: ``read()`` is ``{"accel", "gyro", "temperature"}`` from one burst.
    ``fifo`` mode: ``read()`` drains the FIFO and is ``{"accel": the newest sample,
    "samples": how many arrived}``; :meth:`window` holds those samples until the next
    read. With no new sample, ``accel`` is the data registers' current value.
    """

    unit = ""

    def __init__(self, driver: MPU6050, mode: Mode = "burst") -> None:
        self.driver = driver
        self.mode = mode
        self._window: list[Vector] = []
        self._last_time = -math.inf  # the last block's last sample time
        if mode == "fifo":
            driver.start_fifo()

    def read(self) -> Mapping[str, float | tuple[float, ...]]:
        if self.mode == "burst":
            return self.driver.read()
        self._window = []  # an overflow below loses this window too
        self._window = self.driver.read_fifo()
        if self._window:
            return {"accel": self._window[-1], "samples": len(self._window)}
        return {"accel": self.driver.read()["accel"], "samples": 0}

    def window(self) -> list[Vector]:
        """The accel samples (g) of the last ``read()``, oldest first (fifo mode)."""
        return list(self._window)

    def block(self, end: float) -> tuple[str, list[float], list[Vector]] | None:
        """The last read's samples for windowed detectors: (quantity, times, samples),
        the times spaced by the sample rate and ending at ``end`` (fifo mode)."""
        if self.mode != "fifo" or not self._window:
            return None
        step = 1.0 / self.driver.settings.sample_rate
        count = len(self._window)
        first = end - (count - 1) * step
        if first <= self._last_time:
            # The chip's oscillator ran fast (a few % is normal): spread the block over
            # the time since the last one, so sample times never go backwards.
            step = (end - self._last_time) / count
            first = self._last_time + step
        self._last_time = end
        return "accel", [first + i * step for i in range(count)], list(self._window)

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: MPU6050Params, hw: Hardware) -> MPU6050Sensor:
    driver = MPU6050(hw.i2c(params.bus), params.address)
    driver.configure(params.accel_range, params.gyro_range, params.sample_rate, params.dlpf)
    return MPU6050Sensor(driver, params.mode)


def _check(params: MPU6050Params, interval: float | None) -> str | None:
    """In fifo mode, each poll must come before the FIFO fills (accel frames of 6 bytes)."""
    if params.mode != "fifo" or interval is None:
        return None
    capacity = FIFO_SIZE // 6
    longest = capacity / params.sample_rate
    if interval * params.sample_rate > capacity * 0.8:  # margin for a late poll
        return (
            f"expected at most {0.8 * longest:.3g} s with mode 'fifo' at {params.sample_rate:g} Hz"
            f" (the FIFO holds {capacity} samples, {longest:.3g} s), found {interval:g}"
        )
    return None


SENSOR_TYPE = SensorType(
    name="i2c.mpu6050",
    params=MPU6050Params,
    build=_build,
    polled=True,
    summary="InvenSense MPU-6050 accelerometer (g) and gyroscope (deg/s) on I2C, FIFO windows",
    units={"accel": "g", "gyro": "deg/s", "temperature": "degC"},
    limits={"temperature": (-40.0, 85.0)},
    check=_check,
    vectors=lambda params: ("accel", "gyro"),
)
