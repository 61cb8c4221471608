"""The ports hardware drivers are written against: an I2C bus and a clock.

Drivers take these as arguments so that the same driver code runs on a Pi
(``smbus2.SMBus(1)``, ``time.monotonic``) and in the simulator or the tests
(:class:`sensors.simbus.SimulatedBus`, a virtual clock).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

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
