"""What every sensor type is made of: the ports it is built on, the two shapes of sensor
the runtime drives, and the registry entry that ties a config table to a driver.

This module deliberately has no ``from __future__ import annotations``: the config
validator reads real types from ``dataclasses.fields`` of the params classes.
"""

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from sensors.ports import I2CBus, Monotonic

Scalar = float | int | bool | tuple[float, ...]
# A reading: one scalar or vector, or several named quantities read together from one chip
# (a BME280's temperature, pressure and humidity).
Value = Scalar | Mapping[str, Scalar]


@dataclass(frozen=True)
class Hardware:
    """The ports a sensor is built on; the runtime owns them and closes them."""

    pin_factory: object | None  # a gpiozero Factory; None = gpiozero's default (auto-detect)
    i2c: Callable[[int], I2CBus]  # open, or reuse, bus number N
    now: Monotonic
    # Waits a driver makes for a conversion: real on a device; none in the simulator,
    # whose chip models answer at once and whose clock is virtual.
    sleep: Callable[[float], None] = time.sleep


class PolledSensor(Protocol):
    """A sensor the runtime samples on its schedule."""

    unit: str

    def read(self) -> Value: ...

    def close(self) -> None: ...


class EdgeSensor(Protocol):
    """A sensor that reports changes itself, from another thread, through ``emit``."""

    unit: str

    def start(self, emit: Callable[[Value], None]) -> None: ...

    def close(self) -> None: ...


class Readings(Protocol):
    """Where a pushed sensor hands what it hears (any thread; the runtime moves each onto
    its sampling thread). ``at`` is a time on the runtime's monotonic clock (``Hardware.now``)
    at which the value was measured, ``synced`` whether that time is mapped from a clock
    known to agree with it."""

    def reading(self, value: "Value", at: float, synced: bool) -> None: ...

    def block(self, quantity: str, times: Any, samples: Any, synced: bool) -> None:
        """A block of samples of one quantity: ``times`` (n,) on the runtime's clock and
        ``samples`` (n,) or (n, width)."""
        ...

    def fault(self, error: Exception) -> None:
        """The sensor stopped hearing from its hardware: ``degraded`` until the next reading."""
        ...

    def report(self, kind: str, severity: str, value: Any, fields: dict[str, Any]) -> None:
        """Anything else worth an event (a command's outcome)."""
        ...


@runtime_checkable
class PushedSensor(Protocol):
    """A sensor whose hardware sends readings when it has them, stamped with when they were
    measured (an MCU on a serial link): the runtime neither polls it nor stamps them."""

    unit: str

    def listen(self, readings: Readings) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class NamedUnits(Protocol):
    """A sensor whose quantities' units its config chose (a counter's rate unit): they
    override its type's declared ``units``."""

    units: Mapping[str, str]


@runtime_checkable
class SampleBlocks(Protocol):
    """A sensor that also hands over a block of samples per read (an MPU-6050's FIFO)."""

    def block(self, end: float) -> tuple[str, Sequence[float], Sequence[tuple[float, ...]]] | None:
        """The last read's samples as (quantity, times, samples), times ending at ``end``;
        ``None`` when the last read brought none."""
        ...


@dataclass(frozen=True)
class SensorType:
    """A registry entry: how a ``[[sensors]]`` table of this ``name`` becomes a sensor.

    ``units`` names the quantities of a sensor whose ``read()`` returns a mapping, with
    their units; ``limits`` gives each quantity's measurable range. The simulated chip an
    I2C type runs on in the simulator is registered apart, in :mod:`sensors.sim`, so a
    device never loads it.
    """

    name: str
    params: type
    build: Callable[[Any, Hardware], PolledSensor | EdgeSensor | PushedSensor]
    polled: bool
    summary: str
    units: Mapping[str, str] = field(default_factory=dict)
    # What the chip can measure (datasheet), per quantity ("" for a single value): a
    # reading outside is a fault, reported as a health event and not acted on.
    limits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    # Checks that need the sensor's poll interval as well as its params: (params,
    # interval) -> what is wrong, or None. E.g. a FIFO that would overflow between polls.
    check: Callable[[Any, float | None], str | None] | None = None
    # When the quantities depend on the params (an ADS1115 reads one input, or all four):
    # params -> quantity -> unit; ``units`` is then the widest set, for documentation.
    quantities: Callable[[Any], Mapping[str, str]] | None = None
    # When the params set plausible ranges per quantity: params -> quantity -> (low, high),
    # over ``limits``.
    ranges: Callable[[Any], Mapping[str, tuple[float, float]]] | None = None
    # The hardware names its quantities at run time when the params name none (an MCU's
    # channels, from its HELLO): a detector may then watch any quantity name.
    open_quantities: Callable[[Any], bool] | None = None
    # Quantities read as vectors (an accelerometer's x, y, z), not single numbers: params ->
    # their names. Consumers that take numbers only (Home Assistant) leave them out.
    vectors: Callable[[Any], Collection[str]] | None = None

    def units_of(self, params: Any) -> Mapping[str, str]:
        """The quantities a sensor with these params reads ({} for a single value)."""
        return self.quantities(params) if self.quantities is not None else self.units

    def limits_of(self, params: Any) -> Mapping[str, tuple[float, float]]:
        """Each quantity's plausible range ("" for a single value)."""
        if self.ranges is None:
            return self.limits
        return {**self.limits, **self.ranges(params)}

    def vectors_of(self, params: Any) -> frozenset[str]:
        """The quantities read as vectors."""
        return frozenset(self.vectors(params)) if self.vectors is not None else frozenset()

    def quantities_open(self, params: Any) -> bool:
        """Whether the quantities are named by the hardware, at run time."""
        return self.open_quantities is not None and self.open_quantities(params)
