"""The device's real ports: gpiozero's default pin factory and smbus2 buses."""

from __future__ import annotations

import threading
from types import TracebackType

from edge.clock import Clock
from edge.errors import HardwareMissing
from sensors import Hardware, I2CBus


class RealHardware:
    """Opens each I2C bus once, on first use, and closes them all at the end."""

    def __init__(self, clock: Clock) -> None:
        self._buses: dict[int, I2CBus] = {}
        self._lock = threading.Lock()
        self.hardware = Hardware(pin_factory=None, i2c=self._bus, now=clock.monotonic)

    def _bus(self, number: int) -> I2CBus:
        with self._lock:
            if number not in self._buses:
                from smbus2 import SMBus

                try:
                    self._buses[number] = SMBus(number)
                except OSError as exc:
                    raise HardwareMissing(
                        f"cannot open /dev/i2c-{number}: {exc.strerror or exc}; enable I2C"
                        " (sudo raspi-config nonint do_i2c 0) and add the user to the i2c group"
                    ) from exc
            return self._buses[number]

    def close(self) -> None:
        with self._lock:
            for bus in self._buses.values():
                bus.close()
            self._buses.clear()

    def __enter__(self) -> RealHardware:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
