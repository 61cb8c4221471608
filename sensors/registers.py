"""Any simple I2C chip described in config only: one register field read as a number.

A :class:`RegisterLayout` says where the value sits and how its bits become a
number; :meth:`RegisterLayout.decode` does, in this order:

1. the ``length`` bytes from ``register`` on, read with one I2C block read, as an
   unsigned integer in ``byte_order``;
2. AND ``mask`` when one is given: a single run of 1 bits starting at bit
   ``shift`` (bits outside it are flags or other fields, and are dropped);
3. shift right by ``shift``: the field, ``width`` bits wide (the mask's run of 1
   bits, or all ``8 * length - shift`` bits left when there is no mask);
4. when ``signed``, read the field as two's complement of ``width`` bits;
5. times ``scale``, plus ``offset``.

So a TMP102's temperature is ``register=0, length=2, signed, shift=4,
scale=0.0625``. Chips that need a mode set first get byte writes, done once
before the first read (``setup="0xF4=0x27,0xF5=0xA0"``).

No ``from __future__ import annotations``: the config validator reads real types
from the params dataclass.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import SensorConfigError
from sensors.ports import I2CBus, hex_text

ByteOrder = Literal["big", "little"]
#: 7-bit addresses a chip may have: 0x00-0x02 and 0x78-0x7F are reserved by the I2C spec.
ADDRESSES = range(0x03, 0x78)
MAX_LENGTH = 8
#: A register write done once before the first read: (register, byte value).
SetupWrite = tuple[int, int]


@dataclass(frozen=True)
class RegisterLayout:
    """Where a value sits in a chip's registers and how its bits become a number.

    See the module docstring for the decoding steps. Invalid layouts raise
    :class:`~sensors.errors.SensorConfigError` naming the field.
    """

    register: int
    length: int = 2
    byte_order: ByteOrder = "big"
    signed: bool = False
    mask: int | None = None
    shift: int = 0
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.register <= 0xFF:
            raise SensorConfigError(f"register must be 0..255, got {self.register!r}")
        if not 1 <= self.length <= MAX_LENGTH:
            raise SensorConfigError(f"length must be 1..{MAX_LENGTH} bytes, got {self.length!r}")
        if self.register + self.length > 0x100:
            raise SensorConfigError(
                f"register 0x{self.register:02X} + length {self.length} runs past register 0xFF"
            )
        if self.byte_order not in ("big", "little"):
            raise SensorConfigError(
                f"byte_order must be 'big' or 'little', got {self.byte_order!r}"
            )
        bits = 8 * self.length
        if not 0 <= self.shift < bits:
            raise SensorConfigError(
                f"shift must be 0..{bits - 1} for a {self.length}-byte value, got {self.shift!r}"
            )
        if self.mask is not None:
            if not 0 < self.mask < 1 << bits:
                raise SensorConfigError(
                    f"mask must be 1..{(1 << bits) - 1:#x} for a {self.length}-byte value,"
                    f" got {self.mask:#x}"
                )
            lowest = (self.mask & -self.mask).bit_length() - 1
            run = self.mask >> lowest
            if run & (run + 1):
                raise SensorConfigError(f"mask {self.mask:#x} must be one run of 1 bits, no gaps")
            if lowest != self.shift:
                raise SensorConfigError(
                    f"mask {self.mask:#x} starts at bit {lowest} but shift is {self.shift}:"
                    f" set shift = {lowest} to move the masked field down to bit 0"
                )
        if not (math.isfinite(self.scale) and self.scale != 0):
            raise SensorConfigError(f"scale must be a finite number other than 0, got {self.scale}")
        if not math.isfinite(self.offset):
            raise SensorConfigError(f"offset must be a finite number, got {self.offset}")

    @property
    def width(self) -> int:
        """Bits in the field once masked and shifted."""
        if self.mask is None:
            return 8 * self.length - self.shift
        return (self.mask >> self.shift).bit_length()

    @property
    def field_range(self) -> tuple[int, int]:
        """The smallest and largest integer the field holds."""
        if self.signed:
            return -(1 << (self.width - 1)), (1 << (self.width - 1)) - 1
        return 0, (1 << self.width) - 1

    def field_value(self, data: Sequence[int]) -> int:
        """The field's integer from the register bytes (steps 1-4)."""
        if len(data) != self.length:
            raise ValueError(f"expected {self.length} register bytes, got {len(data)}")
        word = int.from_bytes(bytes(data), self.byte_order)
        counts = (word & self._field_mask) >> self.shift
        if self.signed and counts >> (self.width - 1):
            counts -= 1 << self.width
        return counts

    def decode(self, data: Sequence[int]) -> float:
        """Register bytes -> the value (all five steps)."""
        return self.field_value(data) * self.scale + self.offset

    def encode(self, value: float, around: Sequence[int] | None = None) -> bytes:
        """The value -> register bytes, rounded to the nearest count and clamped to the field.

        Bits outside the field are taken from ``around`` (the register's bytes as
        they are), or are 0.
        """
        if not math.isfinite(value):
            raise ValueError(f"value must be finite, got {value!r}")
        low, high = self.field_range
        exact = (value - self.offset) / self.scale
        # Clamp before rounding so an out-of-range value never makes a huge integer.
        counts = round(min(max(exact, low), high))
        word = (counts << self.shift) & self._field_mask
        if around is not None:
            word |= int.from_bytes(bytes(around), self.byte_order) & ~self._field_mask
        return word.to_bytes(self.length, self.byte_order)

    @property
    def _field_mask(self) -> int:
        return ((1 << self.width) - 1) << self.shift


def parse_setup(text: str) -> tuple[SetupWrite, ...]:
    """``"0xF4=0x27, 0xF5=0xA0"`` -> ``((0xF4, 0x27), (0xF5, 0xA0))``, in order.

    Numbers are Python integer literals (``0x27``, ``39``, ``0b100111``); an empty
    string means no writes. Errors name the bad item and its position.
    """
    if not text.strip():
        return ()
    writes = []
    for n, item in enumerate(text.split(","), start=1):
        where = f"setup item {n} {item.strip()!r}"
        register_text, equals, value_text = item.partition("=")
        if not equals:
            raise SensorConfigError(f"{where}: expected register=value, e.g. 0xF4=0x27")
        numbers = []
        for what, number_text in (("register", register_text), ("value", value_text)):
            try:
                number = int(number_text.strip(), 0)
            except ValueError:
                raise SensorConfigError(
                    f"{where}: {what} {number_text.strip()!r} is not an integer"
                    " (write 0x27, 39 or 0b100111)"
                ) from None
            if not 0 <= number <= 0xFF:
                raise SensorConfigError(
                    f"{where}: {what} must be 0..255 (0x00..0xFF), got {number}"
                )
            numbers.append(number)
        writes.append((numbers[0], numbers[1]))
    return tuple(writes)


class RegisterReader:
    """Driver: reads one :class:`RegisterLayout` field from a chip -> ``{quantity: value}``.

    No bus traffic at construction: the ``setup`` writes (``write_byte_data``, in
    order) go out before the first read, and again before the next read if any of
    them failed. Bus faults propagate as ``OSError``.
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int,
        layout: RegisterLayout,
        *,
        setup: Sequence[SetupWrite] = (),
        quantity: str = "value",
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                f"I2C address must be 0x03..0x77 (others are reserved), got {hex_text(address)}"
            )
        for register, value in setup:
            if not (0 <= register <= 0xFF and 0 <= value <= 0xFF):
                raise SensorConfigError(
                    f"setup write {register:#x}={value:#x}: register and value must be 0..255"
                )
        self._bus = bus
        self.address = address
        self.layout = layout
        self.setup_writes = tuple(setup)
        self.quantity = quantity
        self._set_up = not self.setup_writes

    def setup(self) -> None:
        """Make the setup writes now (``read()`` does so itself when needed)."""
        for register, value in self.setup_writes:
            self._bus.write_byte_data(self.address, register, value)
        self._set_up = True

    def read(self) -> dict[str, float]:
        """One reading: ``{quantity: value}``."""
        if not self._set_up:
            self.setup()
        layout = self.layout
        data = self._bus.read_i2c_block_data(self.address, layout.register, layout.length)
        return {self.quantity: layout.decode(data)}


class RegisterSensor:
    """A :class:`RegisterReader` as a polled sensor; its value is a float in ``unit``."""

    def __init__(self, reader: RegisterReader, unit: str = "") -> None:
        self.reader = reader
        self.unit = unit

    def read(self) -> float:
        return self.reader.read()[self.reader.quantity]

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


@dataclass(frozen=True)
class RegistersParams:
    address: int = field(
        metadata={"min": 0x03, "max": 0x77, "hex": True, "doc": "I2C address of the chip (7-bit)"}
    )
    register: int = field(
        metadata={"min": 0x00, "max": 0xFF, "hex": True, "doc": "first register of the value"}
    )
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    length: int = field(
        default=2, metadata={"min": 1, "max": MAX_LENGTH, "doc": "bytes in the value"}
    )
    byte_order: ByteOrder = field(
        default="big",
        metadata={"doc": "most significant byte first (big) or last (little)"},
    )
    signed: bool = field(
        default=False, metadata={"doc": "the field (after mask and shift) is two's complement"}
    )
    mask: int | None = field(
        default=None,
        metadata={"min": 1, "doc": "bits holding the value, before the shift (one run of 1s)"},
    )
    shift: int = field(
        default=0,
        metadata={"min": 0, "max": 8 * MAX_LENGTH - 1, "doc": "right shift after the mask"},
    )
    scale: float = field(default=1.0, metadata={"doc": "value units per count of the field"})
    offset: float = field(default=0.0, metadata={"doc": "added to the scaled value"})
    unit: str = field(default="", metadata={"doc": "unit of the value, e.g. degC"})
    setup: str | None = field(
        default=None,
        metadata={"doc": "byte writes before the first read, e.g. 0xF4=0x27,0xF5=0xA0"},
    )
    quantity: str = field(
        default="value", metadata={"doc": "name of the value in readings and scenario signals"}
    )

    def __post_init__(self) -> None:
        # SensorConfigError is a ValueError, as the config validator expects.
        self.layout()
        self.setup_writes()
        if not self.quantity.isidentifier():
            raise ValueError(
                f"quantity must be a name of letters, digits and _, got {self.quantity!r}"
            )

    def layout(self) -> RegisterLayout:
        return RegisterLayout(
            register=self.register,
            length=self.length,
            byte_order=self.byte_order,
            signed=self.signed,
            mask=self.mask,
            shift=self.shift,
            scale=self.scale,
            offset=self.offset,
        )

    def setup_writes(self) -> tuple[SetupWrite, ...]:
        return parse_setup(self.setup) if self.setup is not None else ()


def _build(params: RegistersParams, hw: Hardware) -> PolledSensor:
    reader = RegisterReader(
        hw.i2c(params.bus),
        params.address,
        params.layout(),
        setup=params.setup_writes(),
        quantity=params.quantity,
    )
    return RegisterSensor(reader, params.unit)


SENSOR_TYPE = SensorType(
    name="i2c.registers",
    params=RegistersParams,
    build=_build,
    polled=True,
    summary="any simple I2C chip described in config: one register field, scaled",
)
