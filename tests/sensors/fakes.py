"""Fakes for driver tests that check exact transfers: canned register bytes and sleeps."""

from collections.abc import Sequence
from typing import Any


class ReplayBus:
    """Answers block reads with canned register bytes (one list per read, the last one
    repeating) and records every transfer."""

    def __init__(self, registers: dict[int, list[list[int]]]) -> None:
        self.registers = registers
        self.calls: list[tuple[object, ...]] = []

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self.calls.append(("read_block", i2c_addr, register, length))
        answers = self.registers[register]
        return (answers.pop(0) if len(answers) > 1 else answers[0])[:length]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        self.calls.append(("write_block", i2c_addr, register, list(data)))

    def _unused(self, *args: object) -> Any:
        raise AssertionError("this driver uses only i2c block transfers")

    read_byte = write_byte = read_byte_data = write_byte_data = _unused
    read_word_data = write_word_data = close = _unused


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeClock:
    """A clock function the test moves by hand: ``clock.t += 1``."""

    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
