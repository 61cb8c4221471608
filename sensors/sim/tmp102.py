"""Simulated TMP102: the TMP102's register model, fed by a temperature signal."""

from __future__ import annotations

from collections.abc import Callable

from sensors.sim.bus import SimulatedChip, repeat_word, written_word
from sensors.sim.parts import SignalFor, SimulatedPart
from sensors.tmp102 import (
    CONFIG,
    CONFIG_EM,
    CONFIG_POWER_UP,
    T_HIGH,
    T_LOW,
    TEMPERATURE,
    encode_temperature,
)
from sensors.types import TMP102Params


class SimulatedTMP102(SimulatedChip):
    """Register model of a TMP102 for :class:`~sensors.sim.bus.SimulatedBus`.

    ``signal()`` gives the true temperature in degC; each read of the temperature
    register converts it afresh. Not modelled: the 4 Hz conversion cadence,
    shutdown and one-shot, the alert output.
    """

    # Bits a write can change: OS, F1, F0, POL, TM, SD, CR1, CR0, EM. R1/R0 always
    # read 1 and AL is the chip's own output.
    _CONFIG_WRITABLE = 0x9FD0

    def __init__(self, signal: Callable[[], float]) -> None:
        super().__init__()
        self._signal = signal
        self.words = {TEMPERATURE: 0x0000, CONFIG: CONFIG_POWER_UP, T_LOW: 0x4B00, T_HIGH: 0x5000}

    def read(self, register: int, length: int) -> list[int]:
        # Only P1/P0 of the pointer select a register, and it does not auto-increment:
        # bytes past the second repeat the register (a model choice; drivers read 2).
        pointer = register & 0x03
        self.pointer = pointer
        if pointer == TEMPERATURE:
            extended = bool(self.words[CONFIG] & CONFIG_EM)
            msb, lsb = encode_temperature(self._signal(), extended=extended)
            self.words[TEMPERATURE] = msb << 8 | lsb
        word = self.words[pointer]
        return repeat_word(word, length)

    def write(self, register: int, data: bytes) -> None:
        pointer = register & 0x03
        self.pointer = pointer
        if pointer == TEMPERATURE or not data:
            return  # read-only register, or a pointer-only write
        old = self.words[pointer]
        new = written_word(data, old)
        if pointer == CONFIG:
            new = (new & self._CONFIG_WRITABLE) | 0x6000 | (old & 0x0020)
        self.words[pointer] = new


def simulate(params: TMP102Params, signal: SignalFor) -> SimulatedPart:
    return SimulatedPart(params.bus, params.address, SimulatedTMP102(signal("temperature", 21.0)))
