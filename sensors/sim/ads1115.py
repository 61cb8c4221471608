"""Simulated ADS1115: the ADS1115's register model: four analog inputs, single-shot conversions."""

from __future__ import annotations

from collections.abc import Callable

from sensors.ads1115 import (
    CONFIG,
    CONFIG_POWER_UP,
    CONVERSION,
    FULL_SCALES,
    HI_THRESH,
    LO_THRESH,
    MODE_SINGLE_SHOT,
    MUX_SHIFT,
    OS,
    PGA_SHIFT,
    ADS1115Params,
    encode_volts,
)
from sensors.sim.bus import SimulatedChip, repeat_word, written_word
from sensors.sim.parts import SignalFor, SimulatedPart


def _ground() -> float:
    return 0.0


class SimulatedADS1115(SimulatedChip):
    """Register model of an ADS1115 for :class:`~sensors.sim.bus.SimulatedBus`.

    ``ain0``..``ain3`` give each input's voltage against GND. A config write with OS = 1
    in single-shot mode samples the inputs MUX selects, converts at the PGA's range
    (clipping at full scale) and reads busy (OS = 0) on the first config poll; the next
    poll reads ready and the conversion register holds the result. In continuous mode
    each read of the conversion register converts afresh. Not modelled: conversion
    timing, input limits beyond full scale (GND - 0.3 V .. VDD + 0.3 V), the comparator
    and ALERT/RDY.
    """

    def __init__(
        self,
        ain0: Callable[[], float] = _ground,
        ain1: Callable[[], float] = _ground,
        ain2: Callable[[], float] = _ground,
        ain3: Callable[[], float] = _ground,
    ) -> None:
        super().__init__()
        self._inputs = (ain0, ain1, ain2, ain3)
        self.words = {CONVERSION: 0x0000, CONFIG: CONFIG_POWER_UP, LO_THRESH: 0x8000}
        self.words[HI_THRESH] = 0x7FFF
        self._busy_polls = 0
        self._pending: int | None = None

    def _convert(self) -> int:
        config = self.words[CONFIG]
        mux = config >> MUX_SHIFT & 0b111
        pga = min(config >> PGA_SHIFT & 0b111, 0b101)
        full_scale = next(fs for fs, code in FULL_SCALES.items() if code == pga)
        positive, negative = {0: (0, 1), 1: (0, 3), 2: (1, 3), 3: (2, 3)}.get(mux, (mux - 4, -1))
        volts = self._inputs[positive]() - (self._inputs[negative]() if negative >= 0 else 0.0)
        msb, lsb = encode_volts(volts, full_scale)
        return msb << 8 | lsb

    def _finish(self) -> None:
        if self._busy_polls == 0 and self._pending is not None:
            self.words[CONVERSION] = self._pending
            self._pending = None

    def read(self, register: int, length: int) -> list[int]:
        # Only P1/P0 select a register and the pointer does not auto-increment:
        # bytes past the second repeat the register (a model choice; drivers read 2).
        pointer = register & 0x03
        self.pointer = pointer
        word = self.words[pointer]
        if pointer == CONFIG:
            if self._busy_polls:
                self._busy_polls -= 1
                word &= ~OS
            else:
                self._finish()
        elif pointer == CONVERSION:
            if not self.words[CONFIG] & MODE_SINGLE_SHOT:
                self.words[CONVERSION] = self._convert()
            self._finish()
            word = self.words[CONVERSION]
        return repeat_word(word, length)

    def write(self, register: int, data: bytes) -> None:
        pointer = register & 0x03
        self.pointer = pointer
        if pointer == CONVERSION or not data:
            return  # read-only register, or a pointer-only write
        old = self.words[pointer]
        new = written_word(data, old)
        if pointer != CONFIG:
            self.words[pointer] = new
            return
        self.words[CONFIG] = new | OS  # OS reads 1 whenever no conversion is running
        if new & OS and new & MODE_SINGLE_SHOT:
            self._pending = self._convert()
            self._busy_polls = 1


def simulate(params: ADS1115Params, signal: SignalFor) -> SimulatedPart:
    typical = params.range / 2
    if params.channel == "all":
        inputs = [signal(f"ain{n}", typical) for n in range(4)]
        return SimulatedPart(params.bus, params.address, SimulatedADS1115(*inputs))
    # The channel's positive input carries the signal; its negative input stays at GND.
    positive = int(params.channel[0])
    inputs = [_ground] * 4
    inputs[positive] = signal("voltage", typical)
    return SimulatedPart(params.bus, params.address, SimulatedADS1115(*inputs))
