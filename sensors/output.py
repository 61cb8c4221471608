"""A GPIO output for local actions (a relay, a buzzer, an LED) that reports its own state.

The runtime switches it with :meth:`GpioOutput.set` and times pulses on its own
clock; as an edge sensor the output reports every change upstream as a state
event, so actuation is visible in the cloud like any other reading.

gpiozero is imported only when an output is built, so importing this module (and
the registry entry in it) stays light. No ``from __future__ import annotations``:
the config validator reads real types from the params dataclass.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from sensors.base import EdgeSensor, Hardware, SensorType
from sensors.errors import SensorConfigError, SensorError

OnOff = Literal["off", "on"]
SafeState = Literal["off", "on", "keep"]
_SAFE_STATES = ("off", "on", "keep")


class GpioOutput:
    """A digital output: ``set(True)`` turns the relay, buzzer or LED on.

    ``active_high=False`` is for boards switched on by a low pin (most relay
    modules with an optocoupler input). ``initial`` is the state set when the
    output opens; ``safe_state`` is the state :meth:`close` sets before releasing
    the pin ("keep" leaves it as it is).

    After ``close()`` gpiozero returns the pin to an input (on a Pi, with no pull
    resistor): the level then holds only as far as the wiring holds it, so wire
    the load so that a floating pin is safe. ``safe_state`` covers the moment of
    closing, e.g. the runtime stopping or reloading its config.

    After :meth:`start`, ``emit(state)`` is called once with the current state and
    then after each ``set()`` that changes it, on the thread calling ``set()``.
    No ``emit`` happens after ``close()`` returns.
    """

    unit = ""

    def __init__(
        self,
        pin: int,
        *,
        active_high: bool = True,
        initial: bool = False,
        safe_state: SafeState = "off",
        pin_factory: object | None = None,
    ) -> None:
        from gpiozero import DigitalOutputDevice, GPIOZeroError

        from sensors.gpio import PINS

        if pin not in PINS:
            raise SensorConfigError(f"GPIO pin must be a BCM number 0..27, got {pin!r}")
        if safe_state not in _SAFE_STATES:
            raise SensorConfigError(f"safe_state must be 'off', 'on' or 'keep', got {safe_state!r}")
        self.pin = pin
        self.safe_state = safe_state
        self._device: Any
        try:
            self._device = DigitalOutputDevice(
                pin, active_high=active_high, initial_value=initial, pin_factory=pin_factory
            )
        except GPIOZeroError as exc:
            raise SensorError(f"cannot open GPIO{pin} as an output: {exc}") from exc
        # Re-entrant so that emit may call set() or close(); held while emitting,
        # which keeps emits in the order of the changes and none after close().
        self._lock = threading.RLock()
        self._emit: Callable[[bool], None] | None = None
        self._closed = False

    @property
    def state(self) -> bool:
        """Whether the output is on (active), whatever level that is on the pin."""
        with self._lock:
            self._check_open()
            return bool(self._device.is_active)

    def set(self, on: bool) -> None:
        """Switch the output on or off; a change is reported through ``emit``."""
        with self._lock:
            self._check_open()
            if bool(self._device.is_active) == on:
                return
            if on:
                self._device.on()
            else:
                self._device.off()
            if self._emit is not None:
                self._emit(on)

    def start(self, emit: Callable[[bool], None]) -> None:
        """Report the current state through ``emit`` now, then each change."""
        with self._lock:
            self._check_open()
            if self._emit is not None:
                raise SensorError(f"GpioOutput on GPIO{self.pin} is already started")
            self._emit = emit
            emit(bool(self._device.is_active))

    def close(self) -> None:
        """Set ``safe_state`` (not reported upstream) and release the pin. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._emit = None
            if self.safe_state == "on":
                self._device.on()
            elif self.safe_state == "off":
                self._device.off()
            self._device.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SensorError(f"GpioOutput on GPIO{self.pin} is closed")


@dataclass(frozen=True)
class GpioOutputParams:
    pin: int = field(metadata={"min": 0, "max": 27, "doc": "BCM GPIO number"})
    active_high: bool = field(
        default=True, metadata={"doc": "the output is on (true) when the pin is high"}
    )
    initial: OnOff = field(default="off", metadata={"doc": "state set when the output opens"})
    safe_state: SafeState = field(
        default="off",
        metadata={"doc": "state set when the output closes: off, on, or keep the current one"},
    )


def _build(params: GpioOutputParams, hw: Hardware) -> EdgeSensor:
    return GpioOutput(
        params.pin,
        active_high=params.active_high,
        initial=params.initial == "on",
        safe_state=params.safe_state,
        pin_factory=hw.pin_factory,
    )


SENSOR_TYPE = SensorType(
    name="gpio.output",
    params=GpioOutputParams,
    build=_build,
    polled=False,
    summary="relay, buzzer or LED on a GPIO pin, switched by actions; reports its state",
)
