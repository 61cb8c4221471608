"""What the simulator attaches for a sensor: a chip model at an address, fed by signals.

Each I2C sensor type has a ``simulate(params, signals) -> SimulatedPart`` here, beside its
chip model, registered in :data:`sensors.sim.SIMULATED_TYPES`. GPIO types need none: they
run on gpiozero's ``MockFactory`` pins.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from sensors.ports import Monotonic
from sensors.sim.bus import SimulatedChip
from sensors.sim.signals import Signal


class SignalFor(Protocol):
    """The simulator's signals for one sensor: ``signal(quantity, typical)`` is the signal
    that quantity follows; ``clock`` is the simulation's clock, for models (a FIFO) that
    produce samples at their own rate in simulated time."""

    clock: Monotonic

    def __call__(self, quantity: str, typical: float, /) -> Signal: ...


@dataclass(frozen=True)
class SimulatedPart:
    """Where a simulated chip sits and the register model that answers there."""

    bus: int
    address: int
    chip: SimulatedChip


@runtime_checkable
class TimedSignals(Protocol):
    """Signals that also say what the quantity is at any instant of the simulation's clock,
    for chips that sample at their own rate between polls (an MPU-6050's FIFO)."""

    clock: Monotonic

    def __call__(self, quantity: str, typical: float, /) -> Signal: ...

    def over_time(self, quantity: str, typical: float) -> Callable[[float], float]: ...


#: A sensor type's simulation: (params, signals) -> the chip model and where it sits.
Simulate = Callable[[Any, SignalFor], SimulatedPart]
