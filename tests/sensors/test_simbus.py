"""SimulatedBus: smbus2 semantics, NACKs, chip hooks, locking."""

import errno
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sensors import I2CBus, SimulatedBus, SimulatedChip

NACK = 121  # errno EREMOTEIO, what a Pi 5 reports


class RecordingChip(SimulatedChip):
    """A byte-register chip that counts refreshes and records writes."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshes: list[tuple[int, int]] = []
        self.writes: list[tuple[int, bytes]] = []

    def before_read(self, register: int, length: int) -> None:
        self.refreshes.append((register, length))
        self.registers[0x00] = len(self.refreshes)  # a "measurement" that changes per read

    def after_write(self, register: int, data: bytes) -> None:
        self.writes.append((register, data))


@pytest.fixture
def bus() -> Iterator[SimulatedBus]:
    with SimulatedBus() as b:
        yield b


def test_satisfies_the_port(bus: SimulatedBus) -> None:
    assert isinstance(bus, I2CBus)


TRANSFERS: list[Callable[[SimulatedBus, int], Any]] = [
    lambda b, a: b.read_byte(a),
    lambda b, a: b.write_byte(a, 0),
    lambda b, a: b.read_byte_data(a, 0),
    lambda b, a: b.write_byte_data(a, 0, 0),
    lambda b, a: b.read_word_data(a, 0),
    lambda b, a: b.write_word_data(a, 0, 0),
    lambda b, a: b.read_i2c_block_data(a, 0, 2),
    lambda b, a: b.write_i2c_block_data(a, 0, [1, 2]),
]


@pytest.mark.parametrize("transfer", TRANSFERS)
def test_empty_address_nacks_like_a_pi5(bus: SimulatedBus, transfer: Callable[..., Any]) -> None:
    bus.attach(0x40, RecordingChip())
    with pytest.raises(OSError) as info:
        transfer(bus, 0x41)
    assert info.value.errno == NACK
    if sys.platform.startswith("linux"):
        assert info.value.errno == errno.EREMOTEIO


def test_detached_chip_nacks(bus: SimulatedBus) -> None:
    chip = RecordingChip()
    bus.attach(0x40, chip)
    bus.read_byte_data(0x40, 0)
    assert bus.detach(0x40) is chip
    with pytest.raises(OSError) as info:
        bus.read_byte_data(0x40, 0)
    assert info.value.errno == NACK


def test_attach_and_detach_refuse_mistakes(bus: SimulatedBus) -> None:
    bus.attach(0x40, RecordingChip())
    with pytest.raises(ValueError, match="0x40"):
        bus.attach(0x40, RecordingChip())
    with pytest.raises(ValueError, match="0x41"):
        bus.detach(0x41)
    with pytest.raises(ValueError, match="address"):
        bus.attach(0x80, RecordingChip())


def test_mistakes_name_addresses_and_registers_in_hex(bus: SimulatedBus) -> None:
    bus.attach(0x4A, RecordingChip())
    with pytest.raises(ValueError) as twice:
        bus.attach(0x4A, SimulatedChip())
    assert str(twice.value) == (
        "address 0x4A already has a chip attached (RecordingChip); detach it first,"
        " or give SimulatedChip another address"
    )
    with pytest.raises(OSError, match=r"^\[Errno \d+\] no device answered at address 0x5C$"):
        bus.read_byte_data(0x5C, 0)
    with pytest.raises(ValueError, match=r"^address must be 0x00\.\.0x7F, got 0xC8$"):
        bus.attach(200, RecordingChip())
    with pytest.raises(ValueError, match=r"^register must be 0x00\.\.0xFF, got -0x01$"):
        bus.read_byte_data(0x4A, -1)


def test_block_transfers_auto_increment(bus: SimulatedBus) -> None:
    chip = RecordingChip()
    bus.attach(0x40, chip)
    bus.write_i2c_block_data(0x40, 0x10, [0xAA, 0xBB, 0xCC])
    assert chip.registers[0x10:0x13] == b"\xaa\xbb\xcc"
    assert chip.writes == [(0x10, b"\xaa\xbb\xcc")]
    assert bus.read_i2c_block_data(0x40, 0x11, 2) == [0xBB, 0xCC]
    assert chip.pointer == 0x13


def test_pointer_wraps_at_the_end_of_the_map(bus: SimulatedBus) -> None:
    chip = RecordingChip()
    bus.attach(0x40, chip)
    bus.write_i2c_block_data(0x40, 0xFF, [1, 2])
    assert (chip.registers[0xFF], chip.registers[0x00]) == (1, 2)
    assert chip.pointer == 0x01


def test_send_byte_sets_the_pointer_and_receive_byte_reads_there(bus: SimulatedBus) -> None:
    chip = RecordingChip()
    chip.registers[0x20:0x22] = b"\x12\x34"
    bus.attach(0x40, chip)
    bus.write_byte(0x40, 0x20)
    assert chip.writes == [(0x20, b"")]  # a pointer-only write: no data
    assert bus.read_byte(0x40) == 0x12
    assert bus.read_byte(0x40) == 0x34


def test_words_are_little_endian_as_smbus_defines(bus: SimulatedBus) -> None:
    chip = RecordingChip()
    bus.attach(0x40, chip)
    bus.write_word_data(0x40, 0x10, 0x1234)
    assert chip.registers[0x10:0x12] == b"\x34\x12"
    assert bus.read_word_data(0x40, 0x10) == 0x1234


def test_read_hook_refreshes_before_each_read(bus: SimulatedBus) -> None:
    chip = RecordingChip()
    bus.attach(0x40, chip)
    assert bus.read_byte_data(0x40, 0x00) == 1
    assert bus.read_i2c_block_data(0x40, 0x00, 3)[0] == 2
    assert chip.refreshes == [(0x00, 1), (0x00, 3)]


def test_out_of_range_arguments_are_driver_bugs(bus: SimulatedBus) -> None:
    bus.attach(0x40, RecordingChip())
    with pytest.raises(ValueError, match="value"):
        bus.write_byte_data(0x40, 0, 256)
    with pytest.raises(ValueError, match="register"):
        bus.read_byte_data(0x40, -1)
    with pytest.raises(ValueError, match="length"):
        bus.read_i2c_block_data(0x40, 0, 33)
    with pytest.raises(ValueError, match="length"):
        bus.write_i2c_block_data(0x40, 0, [0] * 33)


def test_close_is_idempotent_and_stops_transfers() -> None:
    bus = SimulatedBus()
    bus.attach(0x40, RecordingChip())
    bus.close()
    bus.close()
    with pytest.raises(OSError) as info:
        bus.read_byte_data(0x40, 0)
    assert info.value.errno == errno.EBADF


class TwoByteCounter(SimulatedChip):
    """Refreshes a 16-bit counter one byte at a time, so an unlocked bus would tear it."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def before_read(self, register: int, length: int) -> None:
        self.count += 1
        self.registers[0] = self.count & 0xFF
        for _ in range(50):  # widen the window in which another thread could interleave
            pass
        self.registers[1] = self.count & 0xFF


def test_concurrent_reads_never_see_a_half_refreshed_chip(bus: SimulatedBus) -> None:
    bus.attach(0x40, TwoByteCounter())
    torn: list[list[int]] = []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows

    def reader() -> None:
        for _ in range(2000):
            pair = bus.read_i2c_block_data(0x40, 0, 2)
            if pair[0] != pair[1]:
                torn.append(pair)

    try:
        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert torn == []


def test_i2c_rdwr_reads_bare_and_writes_register_then_data() -> None:
    from smbus2 import i2c_msg

    bus = SimulatedBus()
    chip = SimulatedChip()
    chip.registers[0x10:0x13] = bytes([1, 2, 3])
    bus.attach(0x40, chip)
    bus.i2c_rdwr(i2c_msg.write(0x40, [0x10]))  # set the pointer, no data
    read = i2c_msg.read(0x40, 3)
    bus.i2c_rdwr(read)
    assert list(read) == [1, 2, 3]
    bus.i2c_rdwr(i2c_msg.write(0x40, [0x20, 0xAA, 0xBB]))
    assert chip.registers[0x20:0x22] == bytes([0xAA, 0xBB])
    with pytest.raises(OSError) as missing:
        bus.i2c_rdwr(i2c_msg.read(0x41, 1))
    assert missing.value.errno == 121
