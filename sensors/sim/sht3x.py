"""Simulated SHT3x: the SHT3x's command model: single-shot measurements with CRCs."""

from __future__ import annotations

from sensors.sht3x import (
    SINGLE_SHOT,
    SOFT_RESET,
    SHT3xParams,
    crc8,
    encode_humidity,
    encode_temperature,
)
from sensors.sim.bus import NACK_ERRNO, SimulatedChip
from sensors.sim.parts import SignalFor, SimulatedPart
from sensors.sim.signals import Signal


class SimulatedSHT3x(SimulatedChip):
    """Command-level model of an SHT3x for a simulated bus with ``i2c_rdwr``.

    ``temperature()`` (degC) and ``humidity()`` (%RH) are sampled when a single-shot
    command arrives; the next plain read (:meth:`receive`) returns the six result bytes
    with their CRCs, once. A plain read with no result pending is NACKed, as on the chip.
    A register-style read (SMBus ``read_i2c_block_data``, which writes a byte first) is
    NACKed too: the datasheet defines no such transfer. ``corrupt_crc`` is the number of
    coming results whose two CRC bytes are corrupted (fault injection). Soft reset
    (0x30A2) drops a pending result. Not modelled: conversion time, periodic mode,
    status register, heater, alerts, repeatability's noise; other commands are ignored.
    """

    def __init__(self, temperature: Signal, humidity: Signal) -> None:
        super().__init__()
        self._temperature = temperature
        self._humidity = humidity
        self._result: bytes | None = None
        self.corrupt_crc = 0
        self.commands: list[int] = []  # every command received, for tests

    def write(self, register: int, data: bytes) -> None:
        # The bus hands over the first byte as the "register": here, a command's msb.
        if len(data) != 1:
            return  # not a bare 16-bit command (partial, or with arguments): not modelled
        command = register << 8 | data[0]
        self.commands.append(command)
        if command in {mode.command for mode in SINGLE_SHOT.values()}:
            self._result = self._measure()
        elif command == SOFT_RESET:
            self._result = None

    def read(self, register: int, length: int) -> list[int]:
        raise OSError(
            NACK_ERRNO,
            f"SHT3x has no registers: a register read (write 0x{register:02X}, then read) "
            "is not a datasheet transfer",
        )

    def receive(self, length: int) -> list[int]:
        """A plain read of ``length`` bytes: the pending result, or a NACK."""
        if self._result is None:
            raise OSError(NACK_ERRNO, "SHT3x has no measurement result to read")
        result, self._result = self._result, None
        # Past the six result bytes the chip has nothing more to send; the bus reads 0xFF.
        return list(result[:length]) + [0xFF] * max(0, length - len(result))

    def _measure(self) -> bytes:
        words = (encode_temperature(self._temperature()), encode_humidity(self._humidity()))
        flip = 0x01 if self.corrupt_crc > 0 else 0x00
        self.corrupt_crc = max(0, self.corrupt_crc - 1)
        out = bytearray()
        for word in words:
            pair = bytes((word >> 8, word & 0xFF))
            out += pair + bytes((crc8(pair) ^ flip,))
        return bytes(out)


def simulate(params: SHT3xParams, signal: SignalFor) -> SimulatedPart:
    chip = SimulatedSHT3x(signal("temperature", 21.0), signal("humidity", 45.0))
    return SimulatedPart(params.bus, params.address, chip)
