"""The ports hardware drivers are written against: an I2C bus and a clock.

Drivers take these as arguments so that the same driver code runs on a Pi
(``smbus2.SMBus(1)``, ``time.monotonic``) and in the simulator or the tests
(:class:`sensors.sim.bus.SimulatedBus`, a virtual clock).

Beside the port, the transfers several chips share that SMBus has no single call for:
a bare read (:func:`bare_read`) and 16-bit registers sent most significant byte first
(:func:`read_word_be`, :func:`write_word_be`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

#: The read flag of a Linux ``i2c_msg`` (linux/i2c.h), and of smbus2's.
#: A GPIO input's internal resistor.
Pull = Literal["up", "down", "none"]

I2C_M_RD = 0x0001


def hex_text(value: object) -> str:
    """An I2C address or a register as datasheets write it: 0x76, 0x5C (uppercase digits);
    anything that is not an integer as its repr (messages about bad arguments use it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"0x{value:02X}" if value >= 0 else f"-0x{-value:02X}"
    return repr(value)


#: A clock function returning seconds. The runtime passes its own clock, real or
#: virtual, so sensors never call ``time.*`` for logic (debounce, signals).
Monotonic = Callable[[], float]


@runtime_checkable
class I2CBus(Protocol):
    """The subset of ``smbus2.SMBus`` that drivers use, with smbus2's names.

    A NACK or bus fault raises ``OSError`` (errno 121 on a Pi 5, 5 on older Pis).
    Word transfers are little-endian as SMBus defines them; big-endian chips
    read their registers with ``read_i2c_block_data`` instead.
    """

    def read_byte(self, i2c_addr: int) -> int: ...

    def write_byte(self, i2c_addr: int, value: int) -> None: ...

    def read_byte_data(self, i2c_addr: int, register: int) -> int: ...

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_word_data(self, i2c_addr: int, register: int) -> int: ...

    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None: ...

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """Combined transfers with smbus2's ``i2c_msg``: a bare read (no register byte),
        as command-driven chips (SHT3x, BH1750) need."""
        ...

    def close(self) -> None: ...


if TYPE_CHECKING:
    # mypy proves here, at no runtime cost, that the real bus satisfies the port.
    from smbus2 import SMBus

    _real_bus_is_a_port: type[I2CBus] = SMBus


def bare_read(bus: I2CBus, address: int, length: int) -> list[int]:
    """Read ``length`` bytes from ``address`` with no register byte first.

    Command-driven chips (SHT3x, BH1750) need this: SMBus's reads first write a
    "register" byte, which such a chip takes as (half) a command. The transfer is
    ``bus.i2c_rdwr`` with smbus2's ``i2c_msg.read`` (``SMBus.i2c_rdwr`` packs only its
    own message type); where smbus2 cannot load (it needs ``fcntl``, which Windows
    lacks: only simulated buses exist there) with a look-alike message. smbus2 is
    imported here, not at module import, so ``import sensors`` stays light.
    """
    message: Any
    try:
        from smbus2 import i2c_msg
    except ImportError:
        message = _ReadMessage(address, length)
    else:
        message = i2c_msg.read(address, length)
    bus.i2c_rdwr(message)
    return [int(byte) for byte in message]


class _ReadMessage:
    """A read message of smbus2's ``i2c_msg`` shape: ``addr``, ``flags``, ``len``, a
    ``buf`` the bus fills with ints, iteration over its bytes."""

    flags = I2C_M_RD

    def __init__(self, addr: int, length: int) -> None:
        self.addr = addr
        self.len = length
        self.buf = bytearray(length)

    def __iter__(self) -> Iterator[int]:
        return iter(self.buf)

    def __bytes__(self) -> bytes:
        return bytes(self.buf)


def read_word_be(bus: I2CBus, address: int, register: int) -> int:
    """An unsigned 16-bit register sent most significant byte first (ADS1115, INA219,
    TMP102). SMBus words travel low byte first, so this is a 2-byte block read."""
    msb, lsb = bus.read_i2c_block_data(address, register, 2)
    return int(msb << 8 | lsb)


def write_word_be(bus: I2CBus, address: int, register: int, value: int) -> None:
    """Write a 16-bit register most significant byte first (see :func:`read_word_be`)."""
    bus.write_i2c_block_data(address, register, [value >> 8, value & 0xFF])
