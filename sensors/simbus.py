"""A simulated I2C bus carrying register-level chip models.

The real drivers run on it unchanged: the bus has smbus2's methods, an address
with no chip attached NACKs with the same ``OSError`` a Pi 5 raises, and each
chip model sees the bytes a real chip would see on the wire (a register pointer,
then data).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Sequence
from types import TracebackType

# errno.EREMOTEIO (121, what a Pi 5 reports for a NACK) is Linux-only; the
# simulator also runs on macOS and Windows laptops.
NACK_ERRNO: int = getattr(errno, "EREMOTEIO", 121)

# smbus2 refuses longer i2c block transfers; so do we, so a driver that works
# here also works on a Pi.
BLOCK_MAX = 32


class SimulatedChip:
    """A chip model: a 256-byte register map behind an auto-incrementing pointer.

    Subclasses refresh measurement registers in :meth:`before_read` and react to
    configuration writes in :meth:`after_write`. Chips whose registers are not
    byte-wide (16-bit TMP102 registers, say) override :meth:`read`/:meth:`write`.
    Called only by :class:`SimulatedBus`, under its lock.
    """

    def __init__(self) -> None:
        self.registers = bytearray(256)
        self.pointer = 0

    def before_read(self, register: int, length: int) -> None:
        """Hook: called before ``length`` bytes are read starting at ``register``."""

    def after_write(self, register: int, data: bytes) -> None:
        """Hook: called after ``data`` was written starting at ``register``.

        ``data`` is empty when a driver only set the pointer (SMBus send byte).
        """

    def read(self, register: int, length: int) -> list[int]:
        """Read ``length`` bytes from ``register`` on, leaving the pointer after them."""
        self.before_read(register, length)
        out = [self.registers[(register + i) & 0xFF] for i in range(length)]
        self.pointer = (register + length) & 0xFF
        return out

    def write(self, register: int, data: bytes) -> None:
        """Set the pointer to ``register`` and store ``data`` from there on."""
        for i, byte in enumerate(data):
            self.registers[(register + i) & 0xFF] = byte
        self.pointer = (register + len(data)) & 0xFF
        self.after_write(register, data)


class SimulatedBus:
    """An :class:`~sensors.ports.I2CBus` whose devices are :class:`SimulatedChip` models.

    Thread-safe: a scenario driver (attaching, detaching chips) and the sampling
    loop (reading) may use it from different threads.
    """

    def __init__(self) -> None:
        self._chips: dict[int, SimulatedChip] = {}
        self._lock = threading.RLock()
        self._closed = False

    def attach(self, address: int, chip: SimulatedChip) -> None:
        """Put ``chip`` on the bus at 7-bit ``address``."""
        _check_range("address", address, 0x7F)
        with self._lock:
            if address in self._chips:
                raise ValueError(f"address 0x{address:02X} already has a chip attached")
            self._chips[address] = chip

    def detach(self, address: int) -> SimulatedChip:
        """Take the chip at ``address`` off the bus (it NACKs from now on) and return it."""
        with self._lock:
            try:
                return self._chips.pop(address)
            except KeyError:
                raise ValueError(f"no chip attached at address 0x{address:02X}") from None

    def read_byte(self, i2c_addr: int) -> int:
        with self._lock:
            chip = self._chip(i2c_addr)
            return chip.read(chip.pointer, 1)[0]

    def write_byte(self, i2c_addr: int, value: int) -> None:
        _check_range("value", value, 0xFF)
        with self._lock:
            self._chip(i2c_addr).write(value, b"")

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        _check_range("register", register, 0xFF)
        with self._lock:
            return self._chip(i2c_addr).read(register, 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        _check_range("register", register, 0xFF)
        _check_range("value", value, 0xFF)
        with self._lock:
            self._chip(i2c_addr).write(register, bytes([value]))

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        _check_range("register", register, 0xFF)
        with self._lock:
            low, high = self._chip(i2c_addr).read(register, 2)
        return low | high << 8  # SMBus words travel low byte first

    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None:
        _check_range("register", register, 0xFF)
        _check_range("value", value, 0xFFFF)
        with self._lock:
            self._chip(i2c_addr).write(register, bytes([value & 0xFF, value >> 8]))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        _check_range("register", register, 0xFF)
        if not 0 <= length <= BLOCK_MAX:
            raise ValueError(f"block length must be 0..{BLOCK_MAX}, got {length}")
        with self._lock:
            return self._chip(i2c_addr).read(register, length)

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        _check_range("register", register, 0xFF)
        if len(data) > BLOCK_MAX:
            raise ValueError(f"block length must be 0..{BLOCK_MAX}, got {len(data)}")
        for value in data:
            _check_range("data byte", value, 0xFF)
        with self._lock:
            self._chip(i2c_addr).write(register, bytes(data))

    def close(self) -> None:
        """Close the bus; further transfers fail as on a closed ``SMBus``. Idempotent."""
        with self._lock:
            self._closed = True

    def __enter__(self) -> SimulatedBus:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _chip(self, address: int) -> SimulatedChip:
        # Called with the lock held.
        if self._closed:
            raise OSError(errno.EBADF, "simulated I2C bus is closed")
        _check_range("address", address, 0x7F)
        try:
            return self._chips[address]
        except KeyError:
            raise OSError(NACK_ERRNO, f"no device answered at address 0x{address:02X}") from None


def _check_range(what: str, value: int, maximum: int) -> None:
    # Out-of-range values are driver bugs; a real bus would silently truncate them.
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} must be 0..0x{maximum:X}, got {value!r}")
