"""The I2C port and the transfers drivers share: bare reads and big-endian 16-bit words."""

import sys
from typing import Any

import pytest
from smbus2 import SMBus

from sensors import I2CBus, SimulatedBus, SimulatedChip
from sensors.ports import I2C_M_RD, bare_read, read_word_be, write_word_be
from sensors.sim.bus import repeat_word, written_word


class CommandChip(SimulatedChip):
    """A chip without registers: records writes, answers a bare read with fixed bytes."""

    def __init__(self, result: list[int]) -> None:
        super().__init__()
        self.result = result
        self.writes: list[tuple[int, bytes]] = []

    def receive(self, length: int) -> list[int]:
        return self.result[:length]

    def read(self, register: int, length: int) -> list[int]:
        raise AssertionError("a bare read must not send a register byte")

    def write(self, register: int, data: bytes) -> None:
        self.writes.append((register, data))


class RecordingBus:
    """Keeps the messages ``i2c_rdwr`` was given, filling each read with 0xA5."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        for msg in i2c_msgs:
            self.messages.append(msg)
            for i in range(msg.len):
                msg.buf[i] = 0xA5


class RegisterOnlyBus:
    """smbus2's register transfers but no ``i2c_rdwr``: not an I2CBus."""

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        raise AssertionError("not reached")


def test_smbus2_and_the_simulated_bus_satisfy_the_port() -> None:
    assert isinstance(SMBus(), I2CBus)  # not opened: no /dev/i2c-N needed
    assert isinstance(SimulatedBus(), I2CBus)
    assert not isinstance(RegisterOnlyBus(), I2CBus)


def test_bare_read_sends_no_register_byte() -> None:
    bus = SimulatedBus()
    chip = CommandChip([0x12, 0x34, 0x56])
    bus.attach(0x44, chip)
    assert bare_read(bus, 0x44, 2) == [0x12, 0x34]
    assert chip.writes == []


def test_bare_read_uses_smbus2s_message_where_smbus2_loads() -> None:
    from smbus2 import i2c_msg

    bus = RecordingBus()
    assert bare_read(bus, 0x23, 2) == [0xA5, 0xA5]  # type: ignore[arg-type]
    (message,) = bus.messages
    assert isinstance(message, i2c_msg)  # SMBus.i2c_rdwr packs only its own type
    assert (message.addr, message.flags, message.len) == (0x23, I2C_M_RD, 2)


def test_bare_read_works_where_smbus2_cannot_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "smbus2", None)  # import smbus2 now raises ImportError
    recording = RecordingBus()
    assert bare_read(recording, 0x5C, 3) == [0xA5] * 3  # type: ignore[arg-type]
    (message,) = recording.messages
    assert (message.addr, message.flags, message.len) == (0x5C, I2C_M_RD, 3)
    assert bytes(message) == b"\xa5\xa5\xa5"
    bus = SimulatedBus()
    bus.attach(0x44, CommandChip([1, 2, 3, 4, 5, 6]))
    assert bare_read(bus, 0x44, 6) == [1, 2, 3, 4, 5, 6]


def test_bare_read_from_a_missing_chip_nacks() -> None:
    with pytest.raises(OSError) as info:
        bare_read(SimulatedBus(), 0x44, 6)
    assert info.value.errno == 121


def test_words_travel_most_significant_byte_first() -> None:
    bus = SimulatedBus()
    chip = SimulatedChip()
    bus.attach(0x48, chip)
    write_word_be(bus, 0x48, 0x01, 0xC3A5)
    assert chip.registers[0x01:0x03] == bytes([0xC3, 0xA5])
    assert read_word_be(bus, 0x48, 0x01) == 0xC3A5
    assert bus.read_word_data(0x48, 0x01) == 0xA5C3  # SMBus words: low byte first


def test_a_word_out_of_range_is_refused_not_truncated() -> None:
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedChip())
    with pytest.raises(ValueError, match="data byte"):
        write_word_be(bus, 0x48, 0x01, 0x1_0000)


def test_model_words_repeat_past_two_bytes_and_one_byte_writes_keep_the_low_byte() -> None:
    assert repeat_word(0x1234, 5) == [0x12, 0x34, 0x12, 0x34, 0x12]
    assert repeat_word(0x1234, 0) == []
    assert written_word(b"\xab\xcd", 0x1234) == 0xABCD
    assert written_word(b"\xab", 0x1234) == 0xAB34
