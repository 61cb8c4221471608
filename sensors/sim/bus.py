"""A simulated I2C bus carrying register-level chip models.

The real drivers run on it unchanged: the bus has smbus2's methods, an address
with no chip attached NACKs with the same ``OSError`` a Pi 5 raises, and each
chip model sees the bytes a real chip would see on the wire (a register pointer,
then data).

Faults a real bus has can be injected per address, on demand (see
:meth:`SimulatedBus.inject`): NACKs, EIO, timeouts, a chip that vanishes, one whose
values freeze, and garbage on the wire.
"""

from __future__ import annotations

import errno
import math
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, get_args

from sensors.ports import Monotonic, hex_text

# errno.EREMOTEIO (121, what a Pi 5 reports for a NACK) is Linux-only; the
# simulator also runs on macOS and Windows laptops.
NACK_ERRNO: int = getattr(errno, "EREMOTEIO", 121)
#: What older Pis (the BCM2835 I2C controller) report for a NACK.
EIO_ERRNO = 5
#: ETIMEDOUT as Linux numbers it (macOS says 60): a clock-stretching chip held the bus too long.
TIMEOUT_ERRNO = 110

# smbus2 refuses longer i2c block transfers; so do we, so a driver that works
# here also works on a Pi.
BLOCK_MAX = 32
_I2C_M_RD = 0x0001  # the read flag of an i2c_msg (linux/i2c.h)


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

    def receive(self, length: int) -> list[int]:
        """A bare read, with no register byte first (SMBus receive byte, i2c_rdwr read).

        Register chips read on from their pointer; command chips (SHT3x) override this.
        """
        return self.read(self.pointer, length)

    def write(self, register: int, data: bytes) -> None:
        """Set the pointer to ``register`` and store ``data`` from there on."""
        for i, byte in enumerate(data):
            self.registers[(register + i) & 0xFF] = byte
        self.pointer = (register + len(data)) & 0xFF
        self.after_write(register, data)


def repeat_word(word: int, length: int) -> list[int]:
    """A 16-bit register read ``length`` bytes long, most significant byte first.

    For chips whose pointer does not auto-increment (ADS1115, INA219, TMP102, BH1750's
    data register): bytes past the second repeat the register, a model choice, as
    drivers read two.
    """
    return [(word >> 8, word & 0xFF)[i % 2] for i in range(length)]


def written_word(data: bytes, old: int) -> int:
    """The 16-bit register a write of ``data`` (msb first) leaves: a one-byte write
    changes only the most significant byte. ``data`` must not be empty."""
    return data[0] << 8 | (data[1] if len(data) > 1 else old & 0xFF)


FaultKind = Literal["nack", "eio", "timeout", "vanish", "stuck", "garbage"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
_ERRORS = {
    "nack": (NACK_ERRNO, "no acknowledge from the device at 0x{:02X} (injected)"),
    "eio": (EIO_ERRNO, "I/O error talking to 0x{:02X} (injected)"),
    "timeout": (TIMEOUT_ERRNO, "transfer to 0x{:02X} timed out (injected)"),
    "vanish": (NACK_ERRNO, "no device answered at address 0x{:02X} (it vanished)"),
}


@dataclass(frozen=True)
class Fault:
    """An injected fault as :attr:`SimulatedBus.faults` reports it.

    ``remaining`` is how many more accesses it lasts (None: no count given), ``until``
    the clock time it lapses at (None: no time given); the first to run out ends it.
    """

    kind: FaultKind
    remaining: int | None = None
    until: float | None = None


class _ActiveFault:
    """A fault's mutable state on the bus. Used under the bus's lock only."""

    def __init__(
        self,
        kind: FaultKind,
        remaining: int | None,
        until: float | None,
        frozen: dict[tuple[int, int], list[int]],
        rng: random.Random | None,
    ) -> None:
        self.kind = kind
        self.remaining = remaining
        self.until = until
        self.frozen = frozen  # stuck: (register, length) -> the bytes it keeps returning
        self.rng = rng  # garbage: where the bytes come from

    def public(self) -> Fault:
        return Fault(self.kind, self.remaining, self.until)


class SimulatedBus:
    """An :class:`~sensors.ports.I2CBus` whose devices are :class:`SimulatedChip` models.

    Thread-safe: a scenario driver (attaching, detaching chips, injecting faults) and
    the sampling loop (reading) may use it from different threads. ``clock`` (the
    runtime's, real or virtual) is needed only for faults injected with ``until``.
    """

    def __init__(self, *, clock: Monotonic | None = None) -> None:
        self._chips: dict[int, SimulatedChip] = {}
        self._lock = threading.RLock()
        self._closed = False
        self._clock = clock
        self._faults: dict[int, _ActiveFault] = {}
        # address -> (register, length) -> the bytes the chip last returned: what a "stuck"
        # chip keeps answering with.
        self._last_read: dict[int, dict[tuple[int, int], list[int]]] = {}

    def attach(self, address: int, chip: SimulatedChip) -> None:
        """Put ``chip`` on the bus at 7-bit ``address``."""
        _check_range("address", address, 0x7F)
        with self._lock:
            present = self._chips.get(address)
            if present is not None:
                raise ValueError(
                    f"address {hex_text(address)} already has a chip attached"
                    f" ({type(present).__name__}); detach it first, or give"
                    f" {type(chip).__name__} another address"
                )
            self._chips[address] = chip

    def detach(self, address: int) -> SimulatedChip:
        """Take the chip at ``address`` off the bus (it NACKs from now on) and return it."""
        with self._lock:
            try:
                chip = self._chips.pop(address)
            except KeyError:
                raise ValueError(f"no chip attached at address {hex_text(address)}") from None
            self._faults.pop(address, None)
            self._last_read.pop(address, None)
            return chip

    # -- fault injection ----------------------------------------------------------------

    def inject(
        self,
        address: int,
        kind: FaultKind,
        *,
        count: int | None = None,
        until: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Make the chip at ``address`` misbehave, replacing any fault it already has.

        - ``"nack"``, ``"eio"``, ``"timeout"``: every transfer raises ``OSError`` with errno
          121 (a Pi 5's NACK), 5 (an older Pi's) or 110 (ETIMEDOUT), and the chip sees nothing.
        - ``"vanish"``: the chip is gone; every transfer NACKs (errno 121) until
          :meth:`restore`. Its registers survive, as behind a loose wire.
        - ``"stuck"``: writes reach the chip, but each read returns the bytes that register
          last returned before the injection (a register not read before is read once, then
          frozen): the chip's values stop changing. Reads leave the register pointer alone.
        - ``"garbage"``: transfers reach the chip, but reads return random bytes from a
          ``random.Random(seed)`` (seed 0 by default): same seed, same bytes.

        ``count``: only the next ``count`` transfers to ``address``, reads or writes.
        ``until``: only while the bus's clock reads below ``until``. With both, the first to
        run out ends the fault. Neither: until :meth:`clear`. Raises ``ValueError`` for an
        address without a chip and for options the fault does not take.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {', '.join(FAULT_KINDS)}; got {kind!r}")
        if count is not None and count < 1:
            raise ValueError(f"count must be at least 1, got {count!r}")
        if kind == "vanish" and (count is not None or until is not None):
            raise ValueError("a vanished chip stays gone until restore(); no count or until")
        if seed is not None and kind != "garbage":
            raise ValueError(f"seed is for garbage faults, not {kind!r}")
        with self._lock:
            self._attached(address)
            if until is not None:
                if not math.isfinite(until):
                    raise ValueError(f"until must be a finite time, got {until!r}")
                if self._clock is None:
                    raise ValueError("until needs a clock: SimulatedBus(clock=...)")
                if until <= self._clock():
                    raise ValueError(f"until ({until!r}) has already passed")
            frozen = dict(self._last_read.get(address, {})) if kind == "stuck" else {}
            rng = random.Random(0 if seed is None else seed) if kind == "garbage" else None
            self._faults[address] = _ActiveFault(kind, count, until, frozen, rng)

    def clear(self, address: int) -> None:
        """End any fault at ``address`` (a vanished chip comes back too). Idempotent."""
        with self._lock:
            self._faults.pop(address, None)

    def restore(self, address: int) -> None:
        """Bring back the chip that vanished at ``address``."""
        with self._lock:
            fault = self._faults.get(address)
            if fault is None or fault.kind != "vanish":
                raise ValueError(f"the chip at {hex_text(address)} has not vanished")
            del self._faults[address]

    @property
    def faults(self) -> dict[int, Fault]:
        """The faults in force now, by address (a snapshot)."""
        with self._lock:
            now = self._clock() if self._clock is not None and self._faults else None
            return {
                address: fault.public()
                for address, fault in self._faults.items()
                if fault.until is None or (now is not None and now < fault.until)
            }

    # -- smbus2's transfers ---------------------------------------------------------------

    def read_byte(self, i2c_addr: int) -> int:
        return self._read(i2c_addr, None, 1)[0]

    def write_byte(self, i2c_addr: int, value: int) -> None:
        _check_range("value", value, 0xFF)
        self._write(i2c_addr, value, b"")

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        """smbus2's combined transfers: each ``i2c_msg.read`` fills its buffer with a bare
        read; each ``i2c_msg.write`` sends its first byte as the register, then the data."""
        for msg in i2c_msgs:
            if msg.flags & _I2C_M_RD:
                data = self._read(msg.addr, None, msg.len)
                for i, byte in enumerate(data):
                    msg.buf[i] = byte
            else:
                payload = bytes(msg)
                if payload:
                    self._write(msg.addr, payload[0], payload[1:])

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        _check_range("register", register, 0xFF)
        return self._read(i2c_addr, register, 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        _check_range("register", register, 0xFF)
        _check_range("value", value, 0xFF)
        self._write(i2c_addr, register, bytes([value]))

    def read_word_data(self, i2c_addr: int, register: int) -> int:
        _check_range("register", register, 0xFF)
        low, high = self._read(i2c_addr, register, 2)
        return low | high << 8  # SMBus words travel low byte first

    def write_word_data(self, i2c_addr: int, register: int, value: int) -> None:
        _check_range("register", register, 0xFF)
        _check_range("value", value, 0xFFFF)
        self._write(i2c_addr, register, bytes([value & 0xFF, value >> 8]))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        _check_range("register", register, 0xFF)
        if not 0 <= length <= BLOCK_MAX:
            raise ValueError(f"block length must be 0..{BLOCK_MAX}, got {length}")
        return self._read(i2c_addr, register, length)

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        _check_range("register", register, 0xFF)
        if len(data) > BLOCK_MAX:
            raise ValueError(f"block length must be 0..{BLOCK_MAX}, got {len(data)}")
        for value in data:
            _check_range("data byte", value, 0xFF)
        self._write(i2c_addr, register, bytes(data))

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

    def _read(self, address: int, register: int | None, length: int) -> list[int]:
        """One read transfer; ``register`` None reads at the chip's pointer (receive byte)."""
        with self._lock:
            chip = self._chip(address)
            fault = self._fault(address)
            plain = register is None  # no register byte first: a bare read (receive)
            register = chip.pointer if register is None else register
            key = (register, length)

            def transfer() -> list[int]:
                return chip.receive(length) if plain else chip.read(register, length)

            if fault is not None and fault.kind == "stuck":
                frozen = fault.frozen.get(key)
                if frozen is None:  # not read before the injection: this read freezes it
                    frozen = fault.frozen[key] = transfer()
                return list(frozen)
            data = transfer()
            self._last_read.setdefault(address, {})[key] = data
            if fault is not None and fault.rng is not None:
                return list(fault.rng.randbytes(length))
            return list(data)

    def _write(self, address: int, register: int, data: bytes) -> None:
        with self._lock:
            chip = self._chip(address)
            self._fault(address)
            chip.write(register, data)

    def _chip(self, address: int) -> SimulatedChip:
        # Called with the lock held.
        if self._closed:
            raise OSError(errno.EBADF, "simulated I2C bus is closed")
        _check_range("address", address, 0x7F)
        try:
            return self._chips[address]
        except KeyError:
            message = f"no device answered at address {hex_text(address)}"
            raise OSError(NACK_ERRNO, message) from None

    def _attached(self, address: int) -> None:
        # Called with the lock held.
        _check_range("address", address, 0x7F)
        if address not in self._chips:
            raise ValueError(f"no chip attached at address {hex_text(address)}")

    def _fault(self, address: int) -> _ActiveFault | None:
        """The fault this transfer meets, counting it; raises for the error kinds.

        Called with the lock held, for an attached chip.
        """
        fault = self._faults.get(address)
        if fault is None:
            return None
        if fault.until is not None and self._clock is not None and self._clock() >= fault.until:
            del self._faults[address]
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                del self._faults[address]
        error = _ERRORS.get(fault.kind)
        if error is not None:
            code, message = error
            raise OSError(code, message.format(address))
        return fault


def _check_range(what: str, value: int, maximum: int) -> None:
    # Out-of-range values are driver bugs; a real bus would silently truncate them.
    if not 0 <= value <= maximum:
        raise ValueError(f"{what} must be 0x00..{hex_text(maximum)}, got {hex_text(value)}")
