"""Simulated MPU-6050: the MPU-6050's register model, with its FIFO sampling at its own rate."""

from __future__ import annotations

import math
import struct

from sensors.errors import SensorConfigError
from sensors.mpu6050 import (
    ACCEL_CONFIG,
    ACCEL_LSB_PER_G,
    ACCEL_XOUT_H,
    BURST,
    CHIP_ID,
    CONFIG,
    FIFO_COUNTH,
    FIFO_EN,
    FIFO_EN_ACCEL,
    FIFO_EN_TEMP,
    FIFO_EN_XG,
    FIFO_EN_YG,
    FIFO_EN_ZG,
    FIFO_R_W,
    FIFO_SIZE,
    GYRO_CONFIG,
    GYRO_LSB_PER_DPS,
    INT_DATA_RDY,
    INT_FIFO_OFLOW,
    INT_STATUS,
    PWR_DEVICE_RESET,
    PWR_MGMT_1,
    PWR_POWER_UP,
    PWR_SLEEP,
    SMPLRT_DIV,
    TEMP_LSB_PER_DEGC,
    TEMP_OFFSET_DEGC,
    USER_CTRL,
    USER_CTRL_FIFO_EN,
    USER_CTRL_FIFO_RESET,
    WHO_AM_I,
    MPU6050Params,
    Vector,
    gyro_output_rate,
)
from sensors.ports import Monotonic
from sensors.sim.bus import SimulatedChip
from sensors.sim.parts import SignalFor, SimulatedPart, TimedSignals
from sensors.sim.signals import Signal, TimeSignal


def held(signal: Signal) -> TimeSignal:
    """A zero-argument signal as a time signal that ignores ``t``: every frame a FIFO
    read collects carries the signal's value at that read (sample and hold)."""
    return lambda _t: signal()


def _counts(value: float, lsb_per_unit: float) -> int:
    if not math.isfinite(value):
        raise ValueError(f"MPU6050 model signal must be finite, got {value!r}")
    return min(max(round(value * lsb_per_unit), -0x8000), 0x7FFF)  # the ADC clips at full scale


class SimulatedMPU6050(SimulatedChip):
    """Register model of an MPU-6050 for :class:`~sensors.sim.bus.SimulatedBus`.

    ``accel`` (g), ``gyro`` (deg/s) and ``temperature`` (degC) are time signals read on
    ``clock``. A burst read encodes their values now; the FIFO gets a frame at every
    sample tick (``origin + k / rate`` since the chip woke or the rate last changed),
    each sampled at its own tick, appended whenever a register is read or written.
    Modelled: sleep, DEVICE_RESET, ranges with clipping, sample rate, FIFO_EN order,
    FIFO reset (only while FIFO_EN is 0), the 1024-byte FIFO dropping its oldest bytes
    with FIFO_OFLOW, read-to-clear INT_STATUS. Not modelled: self-test, interrupts pins,
    the auxiliary I2C master, DMP, cycle mode, writes to FIFO_R_W, 1 kHz accel repeats.
    """

    def __init__(
        self,
        clock: Monotonic,
        accel: tuple[TimeSignal, TimeSignal, TimeSignal],
        gyro: tuple[TimeSignal, TimeSignal, TimeSignal] = (
            lambda _t: 0.0,
            lambda _t: 0.0,
            lambda _t: 0.0,
        ),
        temperature: TimeSignal = lambda _t: 25.0,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._accel = accel
        self._gyro = gyro
        self._temperature = temperature
        self.fifo = bytearray()
        self._power_up()

    def _power_up(self) -> None:
        self.registers[:] = bytes(256)
        self.registers[PWR_MGMT_1] = PWR_POWER_UP
        self.registers[WHO_AM_I] = CHIP_ID
        self.fifo.clear()
        self._last_fifo_byte = 0
        self._status = 0
        self._origin = self._clock()
        self._taken = 0  # sample ticks since origin

    @property
    def asleep(self) -> bool:
        return bool(self.registers[PWR_MGMT_1] & PWR_SLEEP)

    @property
    def sample_rate(self) -> float:
        dlpf = self.registers[CONFIG] & 0x07
        return gyro_output_rate(dlpf) / (1 + self.registers[SMPLRT_DIV])

    def read(self, register: int, length: int) -> list[int]:
        self._advance()
        if register == FIFO_R_W:  # the pointer stays: each byte read pops the FIFO
            self.pointer = FIFO_R_W
            popped = list(self.fifo[:length])
            del self.fifo[:length]
            if popped:
                self._last_fifo_byte = popped[-1]
            # An empty FIFO repeats the last byte read (register map, FIFO_R_W).
            return popped + [self._last_fifo_byte] * (length - len(popped))
        out = super().read(register, length)
        if register <= INT_STATUS < register + length:
            self._status = 0
        return out

    def before_read(self, register: int, length: int) -> None:
        self.registers[INT_STATUS] = self._status
        self.registers[FIFO_COUNTH : FIFO_COUNTH + 2] = len(self.fifo).to_bytes(2, "big")
        if not self.asleep and register < ACCEL_XOUT_H + BURST and register + length > ACCEL_XOUT_H:
            frame = self._encode(self._clock(), full=True)
            self.registers[ACCEL_XOUT_H : ACCEL_XOUT_H + BURST] = frame

    def write(self, register: int, data: bytes) -> None:
        self._advance()  # ticks due so far happen under the old configuration
        was_asleep = self.asleep
        super().write(register, data)
        written = range(register, register + len(data))
        self.registers[WHO_AM_I] = CHIP_ID
        if PWR_MGMT_1 in written and self.registers[PWR_MGMT_1] & PWR_DEVICE_RESET:
            self._power_up()
            return
        if (was_asleep and not self.asleep) or SMPLRT_DIV in written or CONFIG in written:
            self._origin, self._taken = self._clock(), 0
        if USER_CTRL in written and self.registers[USER_CTRL] & USER_CTRL_FIFO_RESET:
            self.registers[USER_CTRL] &= ~USER_CTRL_FIFO_RESET  # clears itself
            if not self.registers[USER_CTRL] & USER_CTRL_FIFO_EN:
                self.fifo.clear()

    def _advance(self) -> None:
        """Take the sample ticks due by now; append their frames if the FIFO is on."""
        if self.asleep:
            return
        period = 1.0 / self.sample_rate
        # The epsilon absorbs float error in a clock stepped by exact sample periods.
        due = math.floor((self._clock() - self._origin) / period + 1e-6)
        if due <= self._taken:
            return
        first, self._taken = self._taken + 1, due
        self._status |= INT_DATA_RDY
        if not self.registers[USER_CTRL] & USER_CTRL_FIFO_EN:
            return
        enabled = self.registers[FIFO_EN]
        size = 6 * bool(enabled & FIFO_EN_ACCEL) + 2 * sum(
            bool(enabled & bit) for bit in (FIFO_EN_TEMP, FIFO_EN_XG, FIFO_EN_YG, FIFO_EN_ZG)
        )
        if not size:
            return
        # Past a FIFO's worth of frames only the newest can survive: skip the rest.
        first = max(first, due - (FIFO_SIZE // size + 1))
        for k in range(first, due + 1):
            self.fifo += self._encode(self._origin + k * period)
        if len(self.fifo) > FIFO_SIZE:
            del self.fifo[: len(self.fifo) - FIFO_SIZE]
            self._status |= INT_FIFO_OFLOW

    def _encode(self, t: float, *, full: bool = False) -> bytes:
        """The sensors' bytes at time ``t``: all 14 (``full``), else those FIFO_EN selects."""
        enabled = 0xF8 if full else self.registers[FIFO_EN]
        a = ACCEL_LSB_PER_G[self.registers[ACCEL_CONFIG] >> 3 & 3]
        g = GYRO_LSB_PER_DPS[self.registers[GYRO_CONFIG] >> 3 & 3]
        counts = []
        if enabled & FIFO_EN_ACCEL:
            counts += [_counts(signal(t), a) for signal in self._accel]
        if enabled & FIFO_EN_TEMP:
            counts.append(_counts(self._temperature(t) - TEMP_OFFSET_DEGC, TEMP_LSB_PER_DEGC))
        for bit, signal in zip((FIFO_EN_XG, FIFO_EN_YG, FIFO_EN_ZG), self._gyro, strict=True):
            if enabled & bit:
                counts.append(_counts(signal(t), g))
        return struct.pack(f">{len(counts)}h", *counts)


def _stopped_clock() -> float:
    return 0.0


def simulate(
    params: MPU6050Params, signal: SignalFor, clock: Monotonic | None = None
) -> SimulatedPart:
    """The model, fed by the scenario's ``accel_x/y/z``, ``gyro_x/y/z``, ``temperature``.

    Its signals are zero-argument, so FIFO frames sample and hold them (:func:`held`).
    The FIFO's sample ticks need the simulator's clock: ``fifo`` mode without ``clock``
    raises ``SensorConfigError`` rather than deliver empty windows.
    """
    timed = signal if isinstance(signal, TimedSignals) else None
    clock = clock or (timed.clock if timed is not None else None)
    if clock is None and params.mode == "fifo":
        raise SensorConfigError(
            "simulating an i2c.mpu6050 in fifo mode needs the simulator's clock:"
            " call simulate(params, signal, clock)"
        )

    # The simulator also offers each quantity as a function of its clock's time, so FIFO
    # frames sample a 500 Hz vibration at their own instants; plain signals are held.
    def one(quantity: str, typical: float) -> TimeSignal:
        if timed is not None:
            return timed.over_time(quantity, typical)
        return held(signal(quantity, typical))

    def axes(quantity: str, typical: Vector) -> tuple[TimeSignal, TimeSignal, TimeSignal]:
        x, y, z = (one(f"{quantity}_{a}", v) for a, v in zip("xyz", typical, strict=True))
        return x, y, z

    chip = SimulatedMPU6050(
        clock or _stopped_clock,
        accel=axes("accel", (0.0, 0.0, 1.0)),  # lying flat: gravity on z
        gyro=axes("gyro", (0.0, 0.0, 0.0)),
        temperature=one("temperature", 25.0),
    )
    return SimulatedPart(params.bus, params.address, chip)
