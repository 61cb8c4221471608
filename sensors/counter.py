"""Pulse counting on a GPIO pin, read as a rate: flow meters, anemometers, tachometers.

gpiozero calls back on its own thread for each edge; :class:`PulseCounter` counts
them under a lock, ignoring an edge that comes within ``debounce`` seconds of the
last counted one (on the injected clock, never ``time.*``). Each ``read()`` turns
the edges counted since the previous read into a rate on the same clock.

:class:`PulseTrain` is the simulator's side: it drives a gpiozero ``MockPin`` with
pulses at the rate a signal gives, in simulated time.

gpiozero is imported only when a counter is built, so importing this module (and
the registry entry in it) stays light. No ``from __future__ import annotations``:
the config validator reads real types from the params dataclass.
"""

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from sensors.base import Hardware, PolledSensor, SensorType
from sensors.errors import SensorConfigError, SensorError
from sensors.ports import Monotonic, Pull

Edge = Literal["rising", "falling", "both"]
_EDGES = ("rising", "falling", "both")

#: The unit of ``rate`` when no ``unit`` is given: edges per second times ``scale``.
RATE_UNIT = "1/s"


class PulseCounter:
    """Edges of a pin counted from construction; ``read()`` -> ``{"rate": ..., "count": ...}``.

    ``edge`` is relative to the pulse, as gpiozero's activation is: "rising" counts
    the input becoming active, "falling" becoming inactive, "both" each change (two
    per pulse). With the default ``pull="up"``, ``active_low=True`` a pulse is the
    pin pulled low (a reed switch or an open-collector output to ground), so
    "rising" counts the pin's falling edge.

    ``rate`` is counted edges per second since the previous ``read()`` (since
    construction for the first), times ``scale``, in :attr:`units` ``["rate"]``;
    ``count`` is every edge counted since construction. A ``read()`` at the same
    clock instant as the previous one repeats the previous rate and leaves the
    window open, so no edge is lost from a later rate.
    """

    #: Several quantities: the units of each are in :attr:`units`.
    unit = ""

    def __init__(
        self,
        pin: int,
        *,
        now: Monotonic,
        edge: Edge = "rising",
        pull: Pull = "up",
        active_low: bool = True,
        debounce: float = 0.0,
        scale: float = 1.0,
        unit: str = RATE_UNIT,
        pin_factory: object | None = None,
    ) -> None:
        if edge not in _EDGES:
            raise SensorConfigError(f"edge must be 'rising', 'falling' or 'both', got {edge!r}")
        if not 0 <= debounce < math.inf:
            raise SensorConfigError(
                f"debounce must be a finite number of seconds >= 0, got {debounce!r}"
            )
        if not (math.isfinite(scale) and scale > 0):
            raise SensorConfigError(f"scale must be a finite number > 0, got {scale!r}")
        from gpiozero import DigitalInputDevice

        from sensors.gpio import _open

        self.pin = pin
        self.units: Mapping[str, str] = {"rate": unit, "count": ""}
        self._now = now
        self._debounce = debounce
        self._scale = scale
        self._lock = threading.Lock()
        self._count = 0
        self._last_edge: float | None = None
        self._closed = False
        self._device: Any
        self._device, invert = _open(DigitalInputDevice, pin, pull, active_low, pin_factory)
        self._window_start = now()
        self._window_count = 0
        self._rate = 0.0
        # gpiozero's activated is our active unless _open had to invert the polarity.
        on_active = edge in ("rising", "both")
        on_inactive = edge in ("falling", "both")
        if invert:
            on_active, on_inactive = on_inactive, on_active
        if on_active:
            self._device.when_activated = self._on_edge
        if on_inactive:
            self._device.when_deactivated = self._on_edge

    def read(self) -> dict[str, float]:
        """``{"rate": edges/s since the previous read * scale, "count": edges so far}``."""
        with self._lock:
            if self._closed:
                raise SensorError(f"PulseCounter on GPIO{self.pin} is closed")
            t, count = self._now(), self._count
            elapsed = t - self._window_start
            if elapsed > 0:
                self._rate = (count - self._window_count) / elapsed * self._scale
                self._window_start, self._window_count = t, count
            return {"rate": self._rate, "count": count}

    @property
    def count(self) -> int:
        """Edges counted since construction."""
        with self._lock:
            return self._count

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Outside the lock: closing may wait for gpiozero's callback thread, which
        # may itself be waiting for the lock.
        # Only the callbacks that were set: gpiozero warns on clearing an unset one.
        if self._device.when_activated is not None:
            self._device.when_activated = None
        if self._device.when_deactivated is not None:
            self._device.when_deactivated = None
        self._device.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _on_edge(self) -> None:
        with self._lock:
            if self._closed:
                return
            t = self._now()
            if self._last_edge is not None and t - self._last_edge < self._debounce:
                return
            self._last_edge = t
            self._count += 1


@dataclass(frozen=True)
class CounterParams:
    pin: int = field(metadata={"min": 0, "max": 27, "doc": "BCM GPIO number"})
    edge: Edge = field(
        default="rising",
        metadata={"doc": "edges counted: pulse start (rising), pulse end (falling) or both"},
    )
    pull: Pull = field(
        default="up", metadata={"doc": "internal resistor: pull up, pull down, or none"}
    )
    active_low: bool = field(
        default=True, metadata={"doc": "a pulse is the pin low (true) or high (false)"}
    )
    debounce: float = field(
        default=0.0,
        metadata={
            "min": 0.0,
            "max": 10.0,
            "doc": "seconds to ignore edges after one is counted (minimum pulse spacing)",
        },
    )
    scale: float = field(
        default=1.0,
        metadata={"doc": "rate units per edge per second, e.g. 2.4 for km/h per Hz"},
    )
    unit: str = field(
        default=RATE_UNIT, metadata={"doc": "unit of the rate once scaled, e.g. km/h or L/min"}
    )

    def __post_init__(self) -> None:
        # BCM 2 and 3 (I2C SDA/SCL) carry fixed 1.8 kOhm pull-ups on every Pi board.
        if self.pin in (2, 3) and self.pull != "up":
            raise ValueError(
                f"pull must be 'up' for pin {self.pin}: BCM 2 and 3 have fixed pull-up resistors"
            )
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {self.scale!r}")


def _build(params: CounterParams, hw: Hardware) -> PolledSensor:
    return PulseCounter(
        params.pin,
        now=hw.now,
        edge=params.edge,
        pull=params.pull,
        active_low=params.active_low,
        debounce=params.debounce,
        scale=params.scale,
        unit=params.unit,
        pin_factory=hw.pin_factory,
    )


SENSOR_TYPE = SensorType(
    name="gpio.counter",
    params=CounterParams,
    build=_build,
    polled=True,
    summary="pulses on a GPIO pin as a rate (scaled edges/s) and a running count",
    # The rate's unit is the sensor's `unit` param: a built sensor's `units` has it.
    units={"rate": RATE_UNIT, "count": ""},
)
