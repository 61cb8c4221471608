"""The sensors package's exception tree.

Bus faults are deliberately *not* wrapped: an I2C NACK stays an ``OSError``
(errno 121 on a Pi 5, errno 5 on older Pis) and propagates out of drivers, so
the runtime can treat every ``OSError`` from a read as a transient fault.
"""


class SensorError(Exception):
    """Base class for errors raised by the sensors package."""


class SensorConfigError(SensorError, ValueError):
    """A driver or signal was given a value it cannot accept (address, pin, pull...)."""


class CRCError(SensorError, OSError):
    """A chip's checksum did not match its data: a corrupted transfer, transient like a NACK."""


class SensorTimeout(SensorError, TimeoutError):
    """A chip did not finish a conversion (or reset) in the time its datasheet allows.

    A ``TimeoutError``, so an ``OSError`` too: the runtime treats it as a transient
    fault like a NACK, and retries on the next reading.
    """


class NoPinFactory(SensorError):
    """gpiozero found no way to drive GPIO here: no lgpio (or other pin library), or no
    GPIO chip at all (not a Raspberry Pi)."""


class NoSerialLibrary(SensorError):
    """pyserial is not installed: a ``serial.mcu`` sensor cannot open its port."""
