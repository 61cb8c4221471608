"""Simulated BH1750: the BH1750's model: an illuminance signal behind its opcodes."""

from __future__ import annotations

from collections.abc import Callable

from sensors.bh1750 import (
    CONTINUOUS_H_RES,
    CONTINUOUS_H_RES2,
    CONTINUOUS_L_RES,
    ONE_TIME_H_RES,
    ONE_TIME_H_RES2,
    ONE_TIME_L_RES,
    POWER_DOWN,
    POWER_ON,
    RESET,
    BH1750Params,
    encode_lux,
)
from sensors.sim.bus import SimulatedChip, repeat_word
from sensors.sim.parts import SignalFor, SimulatedPart


class SimulatedBH1750(SimulatedChip):
    """Model of a BH1750 for :class:`~sensors.sim.bus.SimulatedBus`.

    ``signal()`` gives the illuminance in lux. The first byte of a write is an
    instruction (the bus hands it over as ``register``). A one-time H-resolution
    instruction measures at once and powers down; in continuous H-resolution mode each
    read measures afresh. A plain read (:meth:`receive`: ``i2c_rdwr``, ``read_byte``)
    returns the data register, high byte first; bytes past the second repeat them (a
    model choice). A register read's register byte is an instruction, obeyed after the
    bytes read are taken. Not modelled: the measurement time (a plain read right after
    an instruction sees its result), H-resolution mode 2, L-resolution mode and MTreg
    changes: those instructions raise ``NotImplementedError``.
    """

    _UNMODELLED = frozenset(
        {CONTINUOUS_H_RES2, CONTINUOUS_L_RES, ONE_TIME_H_RES2, ONE_TIME_L_RES}
        | set(range(0x40, 0x48))  # MTreg high bits
        | set(range(0x60, 0x80))  # MTreg low bits
    )

    def __init__(self, signal: Callable[[], float]) -> None:
        super().__init__()
        self._signal = signal
        self.powered = False
        self.continuous = False
        self.data = 0x0000

    def _measure(self) -> None:
        msb, lsb = encode_lux(self._signal())
        self.data = msb << 8 | lsb

    def _instruct(self, opcode: int) -> None:
        if opcode in self._UNMODELLED:
            raise NotImplementedError(f"SimulatedBH1750 does not model instruction 0x{opcode:02X}")
        if opcode == POWER_DOWN:
            self.powered = self.continuous = False
        elif opcode == POWER_ON:
            self.powered = True
        elif opcode == RESET and self.powered:
            self.data = 0x0000
        elif opcode == CONTINUOUS_H_RES:
            self.powered = self.continuous = True
            self._measure()
        elif opcode == ONE_TIME_H_RES:
            self._measure()
            self.powered = self.continuous = False
        # Any other byte is not an instruction the chip knows; it ignores it.

    def receive(self, length: int) -> list[int]:
        """A plain read of ``length`` bytes: the data register, high byte first."""
        if self.continuous:
            self._measure()
        return repeat_word(self.data, length)

    def read(self, register: int, length: int) -> list[int]:
        # A register read (read_i2c_block_data) first sends its register byte, which this
        # chip takes as an instruction; the bytes that follow microseconds later are the
        # result it held before, as a measurement takes 120 ms.
        held = self.receive(length)
        self._instruct(register)
        return held

    def write(self, register: int, data: bytes) -> None:
        # "Not able to accept plural command without stop condition": one opcode per
        # write; the model ignores any further bytes.
        self._instruct(register)


def simulate(params: BH1750Params, signal: SignalFor) -> SimulatedPart:
    return SimulatedPart(params.bus, params.address, SimulatedBH1750(signal("illuminance", 300.0)))
