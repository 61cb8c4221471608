"""Simulated INA219: the INA219's register model: bus voltage and current through a shunt."""

from __future__ import annotations

import math
from collections.abc import Callable

from sensors.ina219 import (
    _CAL_MAX,
    BRNG_SHIFT,
    BUS_LSB_V,
    BUS_VOLTAGE,
    CALIBRATION,
    CNVR,
    CONFIG,
    CONFIG_POWER_UP,
    CURRENT,
    MODE_MASK,
    OVF,
    PG_SHIFT,
    POWER,
    RST,
    SHUNT_LSB_V,
    SHUNT_VOLTAGE,
    INA219Params,
)
from sensors.sim.bus import SimulatedChip, repeat_word, written_word
from sensors.sim.parts import SignalFor, SimulatedPart


class SimulatedINA219(SimulatedChip):
    """Register model of an INA219 for :class:`~sensors.sim.bus.SimulatedBus`.

    ``bus_voltage()`` gives the voltage at IN- (volts) and ``current()`` the current
    through the shunt (amperes); the shunt voltage is ``current * shunt_ohms``. Each read
    of the shunt or bus voltage register completes a conversion: both ADC registers are
    quantised and clipped like the chip's, and the current and power registers are
    computed from the programmed calibration by equations 4 and 5 (so a wrong
    calibration shows), setting CNVR, and OVF when current or power overflow. A config
    write that sets a mode restarts conversion: the next ADC register read still sees
    the old results, with CNVR clear. RST restores the power-up registers. Not
    modelled: conversion timing (so CNVR's clearing by a power register read is never
    seen), averaging noise, triggered and power-down modes (the model always converts).
    """

    def __init__(
        self,
        bus_voltage: Callable[[], float],
        current: Callable[[], float],
        shunt_ohms: float = 0.1,
    ) -> None:
        super().__init__()
        self._bus_voltage = bus_voltage
        self._current = current
        self.shunt_ohms = shunt_ohms
        self.words: dict[int, int] = {}
        self._reset()

    def _reset(self) -> None:
        self.words = {CONFIG: CONFIG_POWER_UP, SHUNT_VOLTAGE: 0, BUS_VOLTAGE: 0}
        self.words.update({POWER: 0, CURRENT: 0, CALIBRATION: 0})
        self._restarted = False

    def _convert(self) -> None:
        config = self.words[CONFIG]
        shunt_full = 4000 << (config >> PG_SHIFT & 0b11)  # 40 mV << PG, in 10 uV counts
        shunt = round(self._current() * self.shunt_ohms / SHUNT_LSB_V)
        shunt = min(max(shunt, -shunt_full), shunt_full)
        bus_full = 8000 if config >> BRNG_SHIFT & 1 else 4000  # 32 V or 16 V, 4 mV counts
        bus = min(max(round(self._bus_voltage() / BUS_LSB_V), 0), bus_full)
        overflow = False
        current = math.trunc(shunt * self.words[CALIBRATION] / 4096)
        if not -0x8000 <= current <= 0x7FFF:
            overflow = True
            current = min(max(current, -0x8000), 0x7FFF)
        power = abs(current) * bus // 5000
        if power > 0xFFFF:
            overflow = True
            power = 0xFFFF
        self.words[SHUNT_VOLTAGE] = shunt & 0xFFFF
        self.words[BUS_VOLTAGE] = bus << 3 | CNVR | (OVF if overflow else 0)
        self.words[CURRENT] = current & 0xFFFF
        self.words[POWER] = power

    def read(self, register: int, length: int) -> list[int]:
        # The pointer does not auto-increment: bytes past the second repeat the register
        # (a model choice; drivers read 2). Pointers past 0x05 read 0.
        self.pointer = register
        if register in (SHUNT_VOLTAGE, BUS_VOLTAGE):
            if self._restarted:
                self._restarted = False
            else:
                self._convert()
        word = self.words.get(register, 0)
        return repeat_word(word, length)

    def write(self, register: int, data: bytes) -> None:
        self.pointer = register
        if register not in (CONFIG, CALIBRATION) or not data:
            return  # read-only register, or a pointer-only write
        old = self.words[register]
        new = written_word(data, old)
        if register == CALIBRATION:
            self.words[CALIBRATION] = new & _CAL_MAX
        elif new & RST:
            self._reset()
        else:
            self.words[CONFIG] = new
            if new & MODE_MASK not in (0b000, 0b100):  # a new mode other than off
                self.words[BUS_VOLTAGE] &= ~CNVR
                self._restarted = True


def simulate(params: INA219Params, signal: SignalFor) -> SimulatedPart:
    chip = SimulatedINA219(
        signal("voltage", 5.0),
        signal("current", params.max_current / 4),
        shunt_ohms=params.shunt_ohms,
    )
    return SimulatedPart(params.bus, params.address, chip)
