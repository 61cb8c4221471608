"""Simulated hardware for a config, and the scenario files that drive it.

A scenario is an edgeline config plus a ``[simulation]`` table: how long and how fast to
run, the signal each simulated chip measures, and when GPIO inputs change. The runtime
runs unchanged: the real drivers read simulated chips on a ``SimulatedBus`` and gpiozero's
``MockFactory`` pins, which the scenario drives from the runtime's own scheduler.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from sensors import SENSOR_TYPES, Hardware, Noisy, Piecewise, Signal, SimulatedBus
from sensors.base import SignalFor

from . import config as configuration
from .clock import Clock
from .errors import ConfigError
from .scheduler import Scheduler
from .validation import Problems, build, describe, join

BUILTIN = "default"


@dataclass(frozen=True)
class SimulationSettings:
    duration: float = field(
        default=60.0, metadata={"min": 0.001, "max": 31_536_000, "doc": "simulated seconds"}
    )
    speed: float = field(
        default=10.0, metadata={"min": 0.01, "max": 100_000, "doc": "times real time"}
    )


@dataclass(frozen=True)
class Press:
    pin: int = field(metadata={"min": 0, "max": 27, "doc": "BCM pin driven low"})
    at: float = field(metadata={"min": 0, "doc": "seconds after start"})
    hold: float = field(default=0.2, metadata={"min": 0.001, "doc": "seconds held low"})


@dataclass(frozen=True)
class SignalSpec:
    points: tuple[tuple[float, float], ...]
    noise: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    config: configuration.Config
    settings: SimulationSettings
    signals: dict[str, SignalSpec]
    presses: tuple[Press, ...]


def builtin_names() -> list[str]:
    folder = resources.files("edge") / "scenarios"
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def is_scenario(path: str) -> bool:
    """Whether a TOML file has a [simulation] table (unreadable files are not scenarios)."""
    try:
        return "simulation" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def load_scenario(
    name_or_path: str | None, *, config_path: str | None = None, overrides: dict[str, Any]
) -> Scenario:
    """A built-in scenario by name, a scenario file, or a plain config (``config_path``)."""
    if config_path is not None:
        source = config_path
        try:
            text = Path(config_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from exc
    elif name_or_path is None or name_or_path in builtin_names():
        name = name_or_path or BUILTIN
        source = f"scenario '{name}'"
        text = (resources.files("edge") / "scenarios" / f"{name}.toml").read_text("utf-8")
    else:
        source = name_or_path
        try:
            text = Path(name_or_path).read_text(encoding="utf-8")
        except OSError as exc:
            known = ", ".join(builtin_names())
            raise ConfigError(
                [f"{source}: no such scenario file, nor a built-in scenario ({known})"]
            ) from exc
    return parse_scenario(text, source, overrides)


def parse_scenario(text: str, source: str, overrides: dict[str, Any]) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from exc
    simulation = data.pop("simulation", {})
    for section, values in overrides.items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table.update(values)
    problems = Problems(source)
    settings, signals, presses = _simulation(simulation, problems)
    try:
        config = configuration.validate(data, source)
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *problems.items]) from None
    if problems or settings is None:
        raise ConfigError(problems.items)
    ids = {s.id for s in config.sensors}
    for key in signals:
        if key not in ids and key.rsplit(".", 1)[0] not in ids:
            problems.add(f"simulation.signals.{key}", "expected a sensor id or <sensor>.<quantity>")
    if problems:
        raise ConfigError(problems.items)
    return Scenario(source, config, settings, signals, presses)


def _simulation(
    table: Any, problems: Problems
) -> tuple[SimulationSettings | None, dict[str, SignalSpec], tuple[Press, ...]]:
    if not isinstance(table, dict):
        problems.add("simulation", f"expected a table, found {describe(table)}")
        return None, {}, ()
    settings = build(SimulationSettings, table, "simulation", problems, skip=("signals", "presses"))
    signals: dict[str, SignalSpec] = {}
    for sensor, spec in dict(table.get("signals", {})).items():
        path = f"simulation.signals.{sensor}"
        signal = _signal(spec, path, problems)
        if signal is not None:
            signals[sensor] = signal
    presses = []
    raw_presses = table.get("presses", [])
    for i, entry in enumerate(raw_presses if isinstance(raw_presses, list) else []):
        press = build(Press, entry, join("simulation.presses", i), problems)
        if press is not None:
            presses.append(press)
    return settings, signals, tuple(presses)


def _signal(spec: Any, path: str, problems: Problems) -> SignalSpec | None:
    if not isinstance(spec, dict):
        problems.add(path, f"expected a table, found {describe(spec)}")
        return None
    points = spec.get("points")
    ok = (
        isinstance(points, list)
        and points
        and all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, int | float) for x in p)
            for p in points
        )
    )
    if not ok:
        problems.add(join(path, "points"), f"expected [[t, value], ...], found {describe(points)}")
        return None
    noise = spec.get("noise", 0.0)
    if not isinstance(noise, int | float) or noise < 0:
        problems.add(join(path, "noise"), f"expected a number >= 0, found {describe(noise)}")
        return None
    for key in spec:
        if key not in ("points", "noise"):
            problems.add(join(path, key), "unknown key (known keys: noise, points)")
    assert isinstance(points, list)
    return SignalSpec(tuple((float(t), float(v)) for t, v in points), float(noise))


# A quantity the scenario gives no signal for holds its typical value, with a little noise.
_NOISE_OF_TYPICAL = 0.002


class SimulatedHardware:
    """Simulated buses and pins for every sensor of a scenario, fed by its signals."""

    def __init__(self, scenario: Scenario, clock: Clock, *, seed: int = 0) -> None:
        from gpiozero.pins.mock import MockFactory

        self.clock = clock
        self.pins = MockFactory()
        self.buses: dict[int, SimulatedBus] = {}
        self._t0 = clock.monotonic()
        self._seed = seed
        self._signals = scenario.signals
        for sensor in scenario.config.sensors:
            simulate = SENSOR_TYPES[sensor.type].simulate
            if simulate is None:
                continue  # GPIO types: gpiozero's MockFactory pins
            part = simulate(sensor.params, self._signal_for(sensor.id))
            self._bus(part.bus).attach(part.address, part.chip)
        self.hardware = Hardware(
            pin_factory=self.pins, i2c=self._bus, now=clock.monotonic, sleep=_no_wait
        )

    def _signal_for(self, sensor: str) -> SignalFor:
        return _Signals(self, sensor)

    def _bus(self, number: int) -> SimulatedBus:
        return self.buses.setdefault(number, SimulatedBus())

    def schedule(self, presses: tuple[Press, ...], scheduler: Scheduler) -> None:
        """Drive the GPIO stimuli from the runtime's scheduler, on its clock."""
        t0 = self.clock.monotonic()
        for press in presses:
            pin: Any = self.pins.pin(press.pin)
            scheduler.at(f"press-{press.pin}", t0 + press.at, _drive(pin, low=True))
            scheduler.at(f"release-{press.pin}", t0 + press.at + press.hold, _drive(pin, low=False))


def _no_wait(seconds: float) -> None:
    """Simulated chips convert at once; a driver's conversion wait costs nothing."""


class _Signals:
    """A sensor's signals from the scenario, with the simulation's clock."""

    def __init__(self, hardware: SimulatedHardware, sensor: str) -> None:
        self.hardware = hardware
        self.sensor = sensor
        self.clock = hardware.clock.monotonic

    def __call__(self, quantity: str, typical: float, /) -> Signal:
        hw = self.hardware
        spec = hw._signals.get(f"{self.sensor}.{quantity}") or hw._signals.get(self.sensor)
        if spec is None:
            spec = SignalSpec(((0.0, typical),), noise=abs(typical) * _NOISE_OF_TYPICAL)
        hw._seed += 1  # each quantity its own noise stream, the same on every run
        source: Signal = Piecewise(spec.points, self.clock, t0=hw._t0)
        return Noisy(source, spec.noise, hw._seed) if spec.noise else source


def _drive(pin: Any, *, low: bool) -> Callable[[float], None]:
    def drive(due: float) -> None:
        if low:
            pin.drive_low()
        else:
            pin.drive_high()

    return drive
