"""Simulated BME280: raw ADC codes whose compensation gives back the signals."""

from __future__ import annotations

import math
from collections.abc import Callable

from sensors.bme280 import (
    CALIB_H,
    CALIB_TP,
    CHIP_ID,
    CHIP_ID_VALUE,
    CONFIG,
    CTRL_HUM,
    CTRL_MEAS,
    DATA,
    DATA_LENGTH,
    EXAMPLE_CALIBRATION,
    MODE_NORMAL,
    RANGES,
    RESET,
    RESET_WORD,
    SKIPPED_16_BIT,
    SKIPPED_20_BIT,
    STATUS,
    STATUS_IM_UPDATE,
    STATUS_MEASURING,
    BME280Params,
    Calibration,
    compensate_humidity,
    compensate_pressure,
    t_fine,
)
from sensors.sim.bus import SimulatedChip
from sensors.sim.parts import SignalFor, SimulatedPart
from sensors.sim.signals import Signal


def _nearest_code(f: Callable[[int], float], target: float, top: int) -> int:
    """The code in 0..top whose ``f`` is nearest ``target``, for ``f`` monotonic."""
    increasing = f(top) >= f(0)
    low, high = 0, top  # invariant: the first code with f(code) on target's far side is in there
    while low < high:
        mid = (low + high) // 2
        if (f(mid) >= target) == increasing:
            high = mid
        else:
            low = mid + 1
    candidates = [c for c in (low - 1, low) if 0 <= c <= top]
    return min(candidates, key=lambda c: abs(f(c) - target))


def encode_measurement(
    cal: Calibration, temperature: float, pressure: float, humidity: float
) -> tuple[int, int, int]:
    """degC, hPa, %RH -> the raw (adc_t, adc_p, adc_h) whose compensation is nearest them."""
    for name, value in (
        ("temperature", temperature),
        ("pressure", pressure),
        ("humidity", humidity),
    ):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    top_20 = (1 << 20) - 1
    adc_t = _nearest_code(lambda c: t_fine(cal, c) / 5120.0, temperature, top_20)
    fine = t_fine(cal, adc_t)
    adc_p = _nearest_code(lambda c: compensate_pressure(cal, fine, c), pressure * 100.0, top_20)
    adc_h = _nearest_code(lambda c: compensate_humidity(cal, fine, c), humidity, 0xFFFF)
    return adc_t, adc_p, adc_h


class SimulatedBME280(SimulatedChip):
    """Register model of a BME280 for :class:`~sensors.sim.bus.SimulatedBus`.

    Signals give temperature (degC), pressure (hPa) and humidity (%RH), clamped to the
    operating range. Writing forced mode to ctrl_meas samples them, inverts the
    compensation to raw ADC values and stores those in the data registers; the status
    register then reads ``measuring`` for ``busy_polls`` polls (1 by default) and the
    mode falls back to sleep. ctrl_hum takes effect only at the next ctrl_meas write;
    a skipped measurement (oversampling 0) reads 0x80000 / 0x8000; 0xB6 to 0xE0
    resets the chip, and ``im_update`` reads set for one status poll afterwards.
    Normal mode measures afresh on each data read. Read-only registers ignore writes.
    Not modelled: conversion timing (data is there at once), resolution below 20 bits
    without the IIR filter, the filter's smoothing, noise, standby times, SPI.
    """

    _WRITABLE = frozenset({RESET, CTRL_HUM, CTRL_MEAS, CONFIG})

    def __init__(
        self,
        temperature: Signal,
        pressure: Signal,
        humidity: Signal,
        *,
        calibration: Calibration = EXAMPLE_CALIBRATION,
        busy_polls: int = 1,
    ) -> None:
        super().__init__()
        self._signals = {"temperature": temperature, "pressure": pressure, "humidity": humidity}
        self.calibration = calibration
        self.busy_polls = busy_polls
        self.measurements = 0
        tp, h = calibration.to_registers()
        self.registers[CALIB_TP : CALIB_TP + len(tp)] = tp
        self.registers[CALIB_H : CALIB_H + len(h)] = h
        self.registers[CHIP_ID] = CHIP_ID_VALUE
        self._power_on()

    def _power_on(self) -> None:
        for register in (RESET, CTRL_HUM, STATUS, CTRL_MEAS, CONFIG):
            self.registers[register] = 0x00
        self.registers[DATA : DATA + DATA_LENGTH] = bytes([0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
        self._osrs_h = 0  # the latched humidity oversampling
        self._measuring = 0  # status polls left that read "measuring"
        self._copying = 0  # status polls left that read "im_update"

    def write(self, register: int, data: bytes) -> None:
        self.pointer = (register + len(data)) & 0xFF
        for offset, value in enumerate(data):
            reg = (register + offset) & 0xFF
            if reg not in self._WRITABLE:
                continue
            if reg == RESET:
                if value == RESET_WORD:
                    self._power_on()
                    self._copying = 1
                continue
            self.registers[reg] = value
            if reg == CTRL_MEAS:
                self._osrs_h = self.registers[CTRL_HUM] & 0x07
                if value & 0x03 in (0b01, 0b10):
                    self._measure()
                    self._measuring = self.busy_polls
                    self.registers[CTRL_MEAS] = value & ~0x03  # back to sleep when done

    def before_read(self, register: int, length: int) -> None:
        span = range(register, register + length)
        if STATUS in span:
            status = 0
            if self._measuring:
                self._measuring -= 1
                status |= STATUS_MEASURING
            if self._copying:
                self._copying -= 1
                status |= STATUS_IM_UPDATE
            self.registers[STATUS] = status
        normal = self.registers[CTRL_MEAS] & 0x03 == MODE_NORMAL
        if normal and any(DATA <= r < DATA + DATA_LENGTH for r in span):
            self._measure()

    def _measure(self) -> None:
        values = {
            name: min(max(signal(), RANGES[name][0]), RANGES[name][1])
            for name, signal in self._signals.items()
        }
        adc_t, adc_p, adc_h = encode_measurement(self.calibration, **values)
        ctrl_meas = self.registers[CTRL_MEAS]
        if not ctrl_meas >> 5:
            adc_t = SKIPPED_20_BIT
        if not ctrl_meas >> 2 & 0x07:
            adc_p = SKIPPED_20_BIT
        if not self._osrs_h:
            adc_h = SKIPPED_16_BIT
        self.registers[DATA : DATA + DATA_LENGTH] = bytes(
            (
                *(adc_p >> 12, adc_p >> 4 & 0xFF, (adc_p & 0x0F) << 4),  # 20 bits, left-aligned
                *(adc_t >> 12, adc_t >> 4 & 0xFF, (adc_t & 0x0F) << 4),
                *(adc_h >> 8, adc_h & 0xFF),
            )
        )
        self.measurements += 1


def simulate(params: BME280Params, signal: SignalFor) -> SimulatedPart:
    chip = SimulatedBME280(
        signal("temperature", 21.0), signal("pressure", 1013.25), signal("humidity", 45.0)
    )
    return SimulatedPart(params.bus, params.address, chip)
