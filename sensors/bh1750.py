"""ROHM BH1750FVI ambient light sensor: the driver, its model and its registry entry.

Datasheet: ROHM BH1750FVI. The chip has no registers and no register pointer: the host
writes one-byte instructions (opcodes) and reads the 16-bit measurement result, high
byte first, with a plain I2C read. In H-resolution mode, at the default measurement
time (MTreg = 69), ``lux = count / 1.2``; a measurement takes 120 ms typically and
180 ms at most.

Reading the result needs a bare 2-byte read. SMBus has none (``read_i2c_block_data``
and ``read_word_data`` first write a "register" byte, which this chip would take as an
instruction), so the driver uses :func:`sensors.ports.bare_read` (``i2c_rdwr``).

This module has no ``from __future__ import annotations``: the config validator reads
real types from the params dataclass's fields.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sensors.base import Hardware, PolledSensor, SensorType, SignalFor, SimulatedPart
from sensors.errors import SensorConfigError
from sensors.ports import I2CBus, bare_read
from sensors.simbus import SimulatedChip, repeat_word

POWER_DOWN = 0x00
POWER_ON = 0x01
RESET = 0x07  # clears the data register; ignored in power-down
CONTINUOUS_H_RES = 0x10
CONTINUOUS_H_RES2 = 0x11
CONTINUOUS_L_RES = 0x13
ONE_TIME_H_RES = 0x20  # one H-resolution measurement, then power-down
ONE_TIME_H_RES2 = 0x21
ONE_TIME_L_RES = 0x23

#: ADDR pin low -> 0x23, high -> 0x5C.
ADDRESSES = (0x23, 0x5C)
#: Counts per lux in H-resolution mode at the default MTreg (69).
COUNTS_PER_LUX = 1.2
#: Longest H-resolution measurement time, seconds (datasheet: 120 ms typ, 180 ms max).
H_RES_TIME_MAX = 0.180
_COUNT_MAX = 0xFFFF


def decode_lux(msb: int, lsb: int) -> float:
    """H-resolution result bytes -> lux (MTreg 69)."""
    return (msb << 8 | lsb) / COUNTS_PER_LUX


def encode_lux(lux: float) -> tuple[int, int]:
    """Lux -> H-resolution result bytes, rounded to one count and clipped to 0..0xFFFF."""
    count = min(max(round(lux * COUNTS_PER_LUX), 0), _COUNT_MAX)
    return count >> 8, count & 0xFF


class BH1750:
    """Driver: ``BH1750(smbus2.SMBus(1)).read()`` -> ``{"illuminance": 28066.67}``.

    Each reading powers the chip on, starts one H-resolution measurement (1 lx
    resolution, after which the chip powers down by itself), sleeps the 180 ms maximum
    measurement time (``sleep`` is ``time.sleep`` unless given) and reads the result.
    Bus faults propagate as ``OSError``.
    """

    def __init__(
        self,
        bus: I2CBus,
        address: int = 0x23,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if address not in ADDRESSES:
            raise SensorConfigError(
                f"BH1750 address must be 0x23 (ADDR low) or 0x5C (ADDR high), got {address:#04x}"
            )
        self._bus = bus
        self.address = address
        self._sleep = time.sleep if sleep is None else sleep

    def read(self) -> dict[str, float]:
        """One measurement: ``{"illuminance": lx}``."""
        self._bus.write_byte(self.address, POWER_ON)
        self._bus.write_byte(self.address, ONE_TIME_H_RES)
        self._sleep(H_RES_TIME_MAX)
        msb, lsb = bare_read(self._bus, self.address, 2)
        return {"illuminance": decode_lux(msb, lsb)}


class SimulatedBH1750(SimulatedChip):
    """Model of a BH1750 for :class:`~sensors.simbus.SimulatedBus`.

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
            raise NotImplementedError(f"SimulatedBH1750 does not model instruction {opcode:#04x}")
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


# Registry entry -----------------------------------------------------------------


@dataclass(frozen=True)
class BH1750Params:
    bus: int = field(default=1, metadata={"min": 0, "doc": "I2C bus number (/dev/i2c-N)"})
    address: int = field(
        default=0x23,
        metadata={
            "min": 0x23,
            "max": 0x5C,
            "doc": "I2C address: 0x23 with ADDR low, 0x5C with ADDR high",
        },
    )

    def __post_init__(self) -> None:
        if self.address not in ADDRESSES:
            raise ValueError(
                f"address must be 0x23 (ADDR low) or 0x5C (ADDR high), got {self.address:#04x}"
            )


class BH1750Sensor:
    """A BH1750 as a polled sensor; its value is the illuminance in lx."""

    unit = "lx"

    def __init__(self, driver: BH1750) -> None:
        self.driver = driver

    def read(self) -> float:
        return self.driver.read()["illuminance"]

    def close(self) -> None:
        """Nothing to release: the bus belongs to :class:`Hardware`, shared with other chips."""


def _build(params: BH1750Params, hw: Hardware) -> PolledSensor:
    return BH1750Sensor(BH1750(hw.i2c(params.bus), params.address, sleep=hw.sleep))


def _simulate(params: BH1750Params, signal: SignalFor) -> SimulatedPart:
    return SimulatedPart(params.bus, params.address, SimulatedBH1750(signal("illuminance", 300.0)))


SENSOR_TYPE = SensorType(
    name="i2c.bh1750",
    params=BH1750Params,
    build=_build,
    polled=True,
    summary="ROHM BH1750FVI ambient light sensor on I2C, lx",
    simulate=_simulate,
    limits={"": (0.0, _COUNT_MAX / COUNTS_PER_LUX)},  # H-resolution counts 0..65535
)
