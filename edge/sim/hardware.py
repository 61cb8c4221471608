"""Simulated hardware for a scenario: chips on simulated buses, gpiozero mock pins, stimuli.

The runtime runs unchanged: the real drivers read register-level chip models on a
``SimulatedBus`` and gpiozero's ``MockFactory`` pins. Each chip quantity follows the
scenario's signal (a function of simulated time) plus any anomaly injected on it; presses
and hardware faults are driven from the runtime's own scheduler, on its clock.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.clock import Clock
from edge.runtime.scheduler import Scheduler
from edge.sim.scenario import Press, Scenario
from sensors import Hardware
from sensors.sim import SIMULATED_TYPES, PulseTrain, SimulatedBus, SimulatedChip
from sensors.sim.registers import RegisterFields, SimulatedRegisters
from sensors.sim.signals import (
    Constant,
    During,
    Noise,
    Signal,
    Sum,
    TimeSignal,
    on_clock,
    sampled,
    signal_from_spec,
)

if TYPE_CHECKING:
    from edge.sim.mcu import DrivenMcu

# A quantity the scenario gives no signal for holds its typical value, with a little noise.
_NOISE_OF_TYPICAL = 0.002


class SimulatedHardware:
    """Simulated buses and pins for every sensor of a scenario, fed by its signals."""

    def __init__(self, scenario: Scenario, clock: Clock, *, seed: int | None = None) -> None:
        from gpiozero.pins.mock import MockFactory

        self.scenario = scenario
        self.clock = clock
        self.pins = MockFactory()
        self.buses: dict[int, SimulatedBus] = {}
        self.addresses: dict[str, tuple[int, int]] = {}  # sensor id -> (bus, address)
        self._t0 = clock.monotonic()
        self.seed = scenario.settings.seed if seed is None else seed
        self.mcus: dict[str, DrivenMcu] = {}  # serial.mcu sensor id -> its simulated MCU
        for sensor in scenario.config.sensors:
            if sensor.type == "serial.mcu":
                self.mcus[sensor.id] = self._mcu(sensor)
                continue
            simulate = SIMULATED_TYPES.get(sensor.type)
            if simulate is None:
                continue  # GPIO types: gpiozero's MockFactory pins
            part = simulate(sensor.params, _Signals(self, sensor.id))
            self._attach(part.bus, part.address, part.chip)
            self.addresses[sensor.id] = (part.bus, part.address)
        self.hardware = Hardware(
            pin_factory=self.pins, i2c=self._bus, now=clock.monotonic, sleep=_no_wait
        )

    def _mcu(self, sensor: Any) -> DrivenMcu:
        """A simulated MCU on a pty where the sensor's ``port`` points (``with_mcu_ports``),
        each channel following the scenario's signal ``<sensor>.<channel>``. Imported
        here: the MCU link needs numpy, which a scenario without one never loads (a
        real device without an MCU does not either)."""
        from edge.sim.mcu import DrivenMcu, mcu_spec

        def signal(channel: str) -> Callable[[float], float]:
            return on_clock(self.time_signal(sensor.id, channel, 0.0), self._t0)

        spec = mcu_spec(self.scenario, sensor)
        seed = _seed(self.seed, f"mcu-{sensor.id}")
        return DrivenMcu(sensor.id, spec, signal, self.clock.monotonic, Path(sensor.params.port),
                         seed=seed)  # fmt: skip

    def close(self) -> None:
        """The simulated MCUs' ptys go (idempotent)."""
        for mcu in self.mcus.values():
            mcu.close()

    def _attach(self, bus_number: int, address: int, chip: SimulatedChip) -> None:
        """Attach a chip model; several ``i2c.registers`` fields at one address share it."""
        bus = self._bus(bus_number)
        try:
            bus.attach(address, chip)
        except ValueError:
            present = bus.detach(address)
            if isinstance(present, RegisterFields) and isinstance(chip, SimulatedRegisters):
                present.add(chip)
                bus.attach(address, present)
            elif isinstance(present, SimulatedRegisters) and isinstance(chip, SimulatedRegisters):
                bus.attach(address, RegisterFields(present, chip))
            else:
                bus.attach(address, present)
                raise

    def _bus(self, number: int) -> SimulatedBus:
        return self.buses.setdefault(number, SimulatedBus())

    def time_signal(self, sensor: str, quantity: str, typical: float) -> TimeSignal:
        """What a quantity measures over time: its scenario signal plus injected anomalies."""
        scenario = self.scenario
        key = f"{sensor}.{quantity}"
        spec = scenario.signals.get(key) or scenario.signals.get(sensor)
        seed = _seed(self.seed, key)
        horizon = scenario.settings.duration
        hour = scenario.settings.start_hour
        if spec is None:  # no signal given: the typical value, with a little noise
            base: TimeSignal = Sum(Constant(typical), Noise(abs(typical) * _NOISE_OF_TYPICAL, seed))
        else:
            base = signal_from_spec(spec, seed=seed, start_hour=hour, horizon=horizon)
        parts = [base]
        for index, injection in enumerate(scenario.injections):
            anomaly = scenario.anomalies.get(index)
            if anomaly is None or injection.sensor != sensor:
                continue
            if injection.quantity not in (None, quantity):
                continue
            extra = signal_from_spec(anomaly, seed=seed + index + 1, start_hour=hour,
                                     horizon=horizon)  # fmt: skip
            parts.append(During(extra, injection.at, injection.end))
        return parts[0] if len(parts) == 1 else Sum(*parts)

    def presses(self) -> tuple[Press, ...]:
        """The scenario's presses, with its random ones drawn from the seed."""
        drawn = list(self.scenario.presses)
        duration = self.scenario.settings.duration
        for index, spec in enumerate(self.scenario.random_presses):
            end = duration if spec.end is None else min(spec.end, duration)
            rng = random.Random(_seed(self.seed, f"presses-{index}"))
            t = (
                spec.start + rng.expovariate(spec.rate_per_hour / 3600)
                if spec.rate_per_hour
                else end
            )
            while t < end:
                drawn.append(Press(spec.pin, t, spec.hold))
                t += rng.expovariate(spec.rate_per_hour / 3600)
        return tuple(sorted(drawn, key=lambda p: (p.at, p.pin)))

    def schedule(
        self,
        scheduler: Scheduler,
        presses: tuple[Press, ...] | None = None,
        *,
        after: float = 0.0,
        devices: Mapping[str, Any] | None = None,
    ) -> None:
        """Drive GPIO presses, hardware faults and the simulated MCUs from a runtime's
        scheduler, from ``after`` seconds on (a runtime started after a power cut picks up
        what is still ahead). ``devices`` are the runtime's sensors' devices, by id: an
        MCU's link among them."""
        t0 = self._t0
        for sensor_id, mcu in self.mcus.items():
            link = getattr((devices or {}).get(sensor_id), "link", None)
            mcu.schedule(scheduler, t0, self.scenario.injections, after, link)
        chosen = self.presses() if presses is None else presses
        for press in (p for p in chosen if p.at + p.hold > after):
            pin: Any = self.pins.pin(press.pin)
            # A press still held when a new runtime boots is driven again (its input's pull
            # resistor was just set up); driving a low pin low again changes nothing.
            start = t0 + max(press.at, after)
            scheduler.at(f"press-{press.pin}", start, _drive(pin, low=True))
            scheduler.at(f"release-{press.pin}", t0 + press.at + press.hold, _drive(pin, low=False))
        for injection in self.scenario.injections:
            if injection.kind != "fault" or injection.sensor not in self.addresses:
                continue
            bus, address = self.addresses[injection.sensor]
            if injection.end <= after:  # ended while the power was off: repaired by now
                self.buses[bus].clear(address)
                continue
            fault = injection.fault
            start = t0 + max(injection.at, after)
            scheduler.at("fault", start, _fault(self.buses[bus], address, fault))
            scheduler.at("repair", t0 + injection.end, _fault(self.buses[bus], address, None))
        for sensor in self.scenario.config.sensors:
            if sensor.type == "gpio.counter":
                self._pulses(scheduler, sensor.id, sensor.params)

    def _pulses(self, scheduler: Scheduler, sensor: str, params: Any) -> None:
        """Pulse a counter's pin at the rate its scenario signal gives (pulses per second)."""
        signals = self.scenario.signals
        if f"{sensor}.rate" not in signals and sensor not in signals:
            return
        rate = sampled(self.time_signal(sensor, "rate", 0.0), self.clock.monotonic, self._t0)
        pin = self.pins.pin(params.pin)
        train = PulseTrain(pin, rate, self.clock.monotonic, active_low=params.active_low)

        def step(due: float) -> None:  # re-arms itself at each next edge, polled at least 1/s
            following = train.advance()
            scheduler.at(f"pulses-{sensor}", min(following, due + 1.0), step)

        scheduler.at(f"pulses-{sensor}", self._t0, step)


def _no_wait(seconds: float) -> None:
    """Simulated chips convert at once; a driver's conversion wait costs nothing."""


class _Signals:
    """A sensor's signals, sampled on the simulation's clock (``SignalFor``)."""

    def __init__(self, hardware: SimulatedHardware, sensor: str) -> None:
        self.hardware = hardware
        self.sensor = sensor
        self.clock = hardware.clock.monotonic

    def __call__(self, quantity: str, typical: float, /) -> Signal:
        signal = self.hardware.time_signal(self.sensor, quantity, typical)
        return sampled(signal, self.clock, self.hardware._t0)

    def over_time(self, quantity: str, typical: float) -> Callable[[float], float]:
        """The quantity as a function of the clock's time (for chips sampling at their own
        rate between polls, like a FIFO)."""
        signal = self.hardware.time_signal(self.sensor, quantity, typical)
        return on_clock(signal, self.hardware._t0)


def _seed(base: int, key: str) -> int:
    """A stable per-quantity seed: the same on every run and machine (no hash())."""
    return base * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(key))


def _fault(bus: SimulatedBus, address: int, fault: Any) -> Callable[[float], None]:
    def act(due: float) -> None:
        if fault is None:
            bus.clear(address)
        else:
            bus.inject(address, fault)

    return act


def _drive(pin: Any, *, low: bool) -> Callable[[float], None]:
    def drive(due: float) -> None:
        if low:
            pin.drive_low()
        else:
            pin.drive_high()

    return drive
