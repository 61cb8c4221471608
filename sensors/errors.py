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
