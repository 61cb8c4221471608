"""GPIO inputs on gpiozero 2.x: a polled level and debounced edge events.

gpiozero is the only GPIO layer: on a Pi its default factory auto-detects the
pin library (lgpio on a Pi 5); in tests and the simulator its ``MockFactory``
is the fake. gpiozero types stay inside this module.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gpiozero import (
    BadPinFactory,
    DigitalInputDevice,
    GPIOZeroError,
    InputDevice,
    PinFixedPull,
    PinInvalidPin,
    PinInvalidPull,
)

from sensors.errors import NoPinFactory, SensorConfigError, SensorError
from sensors.ports import Monotonic, Pull

PINS = range(28)  # BCM 0..27: the 40-pin header of every Pi model
_PULL_UP: dict[str, bool | None] = {"up": True, "down": False, "none": None}


def _open(
    kind: type[Any], pin: int, pull: Pull, active_low: bool, pin_factory: object | None
) -> tuple[Any, bool]:
    """Open a gpiozero input; return it with whether its notion of active must be inverted.

    gpiozero ties polarity to the pull (pull-up means active-low) and refuses
    ``active_state`` unless the pin floats, so any other pairing is inverted here.
    """
    if pin not in PINS:
        raise SensorConfigError(f"GPIO pin must be a BCM number 0..27, got {pin!r}")
    if pull not in _PULL_UP:
        raise SensorConfigError(f"GPIO pull must be 'up', 'down' or 'none', got {pull!r}")
    pull_up = _PULL_UP[pull]
    kwargs: dict[str, Any] = {"pull_up": pull_up, "pin_factory": pin_factory}
    if pull_up is None:
        kwargs["active_state"] = not active_low
    if kind is DigitalInputDevice:
        # gpiozero debounces on real time; we debounce on the runtime's clock instead.
        kwargs["bounce_time"] = None
    try:
        device = kind(pin, **kwargs)
    except (PinFixedPull, PinInvalidPull, PinInvalidPin) as exc:
        raise SensorConfigError(f"GPIO{pin} with pull {pull!r}: {exc}") from exc
    except (BadPinFactory, ImportError) as exc:  # GPIOZERO_PIN_FACTORY names a missing one
        raise NoPinFactory(f"cannot open GPIO{pin}: no GPIO pin library could be loaded") from exc
    except GPIOZeroError as exc:
        raise SensorError(f"cannot open GPIO{pin}: {exc}") from exc
    invert = pull_up is not None and active_low != pull_up
    return device, invert


class GpioInput:
    """The level of a pin, read on demand: ``read()`` is True when the input is active.

    With ``pull="up"`` and ``active_low=True`` (the default) a button to ground
    reads True while pressed.
    """

    unit = ""

    def __init__(
        self,
        pin: int,
        *,
        pull: Pull = "up",
        active_low: bool = True,
        pin_factory: object | None = None,
    ) -> None:
        self.pin = pin
        self._device, self._invert = _open(InputDevice, pin, pull, active_low, pin_factory)
        self._closed = False

    def read(self) -> bool:
        if self._closed:
            raise SensorError(f"GpioInput on GPIO{self.pin} is closed")
        return bool(self._device.is_active) != self._invert

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._device.close()

    def __enter__(self) -> GpioInput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class GpioEdge:
    """Interrupt-driven changes of a pin, debounced on the injected clock.

    After :meth:`start`, ``emit(True)``/``emit(False)`` is called for each
    accepted change: a change within ``debounce`` seconds of the last accepted
    one is ignored, and so is a change back to the state already reported.
    ``emit`` runs on gpiozero's thread (with ``MockFactory``, on the thread
    driving the pin) and must not block. No ``emit`` happens after ``close()``
    returns.
    """

    unit = ""

    def __init__(
        self,
        pin: int,
        *,
        now: Monotonic,
        pull: Pull = "up",
        active_low: bool = True,
        debounce: float = 0.05,
        pin_factory: object | None = None,
    ) -> None:
        if not 0 <= debounce < float("inf"):
            raise SensorConfigError(
                f"debounce must be a finite number of seconds >= 0, got {debounce!r}"
            )
        self.pin = pin
        self._now = now
        self._debounce = debounce
        self._device, self._invert = _open(DigitalInputDevice, pin, pull, active_low, pin_factory)
        # Re-entrant so that emit may call close(); held while emitting, which
        # keeps emits ordered and none after close() returns.
        self._lock = threading.RLock()
        self._emit: Callable[[bool], None] | None = None
        self._reported = False
        self._last_accepted: float | None = None
        self._closed = False

    def start(self, emit: Callable[[bool], None]) -> None:
        """Start calling ``emit`` on changes; the level now counts as already reported."""
        with self._lock:
            if self._closed:
                raise SensorError(f"GpioEdge on GPIO{self.pin} is closed")
            if self._emit is not None:
                raise SensorError(f"GpioEdge on GPIO{self.pin} is already started")
            self._reported = bool(self._device.is_active) != self._invert
            self._emit = emit
        self._device.when_activated = self._on_activated
        self._device.when_deactivated = self._on_deactivated

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._emit = None
        # Outside the lock: closing may wait for gpiozero's callback thread, which
        # may itself be waiting for the lock.
        # Only the callbacks that were set (start() sets both): gpiozero warns
        # (CallbackSetToNone) on clearing an unset one.
        if self._device.when_activated is not None:
            self._device.when_activated = None
        if self._device.when_deactivated is not None:
            self._device.when_deactivated = None
        self._device.close()

    def __enter__(self) -> GpioEdge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_activated(self) -> None:
        self._changed(not self._invert)

    def _on_deactivated(self) -> None:
        self._changed(self._invert)

    def _changed(self, active: bool) -> None:
        with self._lock:
            if self._emit is None or active == self._reported:
                return
            t = self._now()
            if self._last_accepted is not None and t - self._last_accepted < self._debounce:
                return
            self._reported = active
            self._last_accepted = t
            self._emit(active)
