"""Scenario files: a device config plus a ``[simulation]`` table that says what happens.

The ``[simulation]`` table gives the duration, speed, seed and wall-clock start; the signal
each sensor quantity follows (``[simulation.signals."<sensor>[.<quantity>]"]``, built by
``sensors.sim.signals.signal_from_spec``); GPIO presses; and timed injections, each a piece of
ground truth: an ``anomaly`` (a signal added to a sensor for a while), a hardware ``fault``
on a simulated chip, a ``network`` outage between device and broker, a ``power-cut``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from edge.config import device as configuration
from edge.config.validation import Problems, build, describe, join
from edge.errors import ConfigError
from edge.sim import scenarios
from edge.sim.labels import Label
from sensors import SensorConfigError
from sensors.sim.signals import signal_from_spec

DEFAULT_START = "2026-01-01T00:00:00Z"


def iso_instant(value: str) -> str | None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "an ISO 8601 time such as 2026-06-01T06:00:00Z"
    return None


@dataclass(frozen=True)
class SimulationSettings:
    duration: float = field(
        default=60.0, metadata={"min": 0.001, "max": 31_536_000, "doc": "simulated seconds"}
    )
    speed: float = field(
        default=10.0, metadata={"min": 0.01, "max": 100_000, "doc": "times real time"}
    )
    seed: int = field(default=0, metadata={"min": 0, "doc": "noise and random events"})
    start: str = field(
        default=DEFAULT_START,
        metadata={"check": iso_instant, "doc": "wall-clock time at the start (UTC)"},
    )

    @property
    def start_epoch(self) -> float:
        return datetime.fromisoformat(self.start.replace("Z", "+00:00")).timestamp()

    @property
    def start_hour(self) -> float:
        """Hour of day at t = 0, for daily cycles."""
        moment = datetime.fromisoformat(self.start.replace("Z", "+00:00"))
        return moment.hour + moment.minute / 60 + moment.second / 3600


@dataclass(frozen=True)
class Press:
    pin: int = field(metadata={"min": 0, "max": 27, "doc": "BCM pin driven low"})
    at: float = field(metadata={"min": 0, "doc": "seconds after start"})
    hold: float = field(default=0.2, metadata={"min": 0.001, "doc": "seconds held low"})


@dataclass(frozen=True)
class RandomPresses:
    """Presses at random (a PIR seeing animals, people pressing a button): Poisson times."""

    pin: int = field(metadata={"min": 0, "max": 27, "doc": "BCM pin driven low"})
    rate_per_hour: float = field(metadata={"min": 0, "max": 36_000, "doc": "mean presses"})
    hold: float = field(default=0.5, metadata={"min": 0.001, "doc": "seconds held low"})
    start: float = field(default=0.0, metadata={"min": 0, "doc": "from, seconds"})
    end: float | None = field(default=None, metadata={"min": 0, "doc": "until (default: end)"})


InjectionKind = Literal["anomaly", "fault", "network", "power-cut"]
FaultName = Literal[
    "nack", "eio", "timeout", "vanish", "stuck", "garbage", "corrupt", "truncate", "reboot",
    "drift",
]  # fmt: skip
BUS_FAULTS = ("nack", "eio", "timeout", "vanish", "stuck", "garbage")
# On a serial.mcu sensor's line: noise bursts, frames with a flipped bit, frames cut short
# (one frame in four of those sent during the injection), the port gone, a restart, drift.
MCU_FAULTS = ("garbage", "corrupt", "truncate", "vanish", "reboot", "drift")


@dataclass(frozen=True)
class McuChannelSim:
    """A channel of a simulated MCU: READINGs ``every`` seconds, or SAMPLES blocks of
    ``block`` samples at ``rate`` Hz; its value follows the signal ``<sensor>.<name>``."""

    name: str = field(metadata={"doc": "the channel's name in the MCU's HELLO"})
    unit: str = field(default="", metadata={"doc": "its unit in HELLO"})
    every: float | None = field(
        default=None, metadata={"min": 0.001, "max": 3600, "doc": "seconds between READINGs"}
    )
    rate: float | None = field(
        default=None, metadata={"min": 1.0, "max": 100_000, "doc": "samples/s, in SAMPLES"}
    )
    block: int = field(
        default=250, metadata={"min": 1, "max": 16_384, "doc": "samples per SAMPLES block"}
    )

    def __post_init__(self) -> None:
        if (self.every is None) == (self.rate is None):
            raise ValueError("give every (READINGs) or rate (SAMPLES blocks), one of them")


@dataclass(frozen=True)
class McuSim:
    """What a serial.mcu sensor's simulated MCU declares and sends."""

    channels: tuple[McuChannelSim, ...] = field(
        default=(), metadata={"doc": "default: the sensor's channels, a READING each second"}
    )
    outputs: tuple[str, ...] = field(
        default=(), metadata={"doc": "outputs in HELLO (default: the sensor's outputs)"}
    )
    heartbeat: float = field(
        default=1.0, metadata={"min": 0.01, "max": 60, "doc": "seconds between HEARTBEATs"}
    )


@dataclass(frozen=True)
class Injection:
    """Something that happens to the device, and the ground truth it leaves."""

    kind: InjectionKind = field(metadata={"doc": "anomaly, fault, network or power-cut"})
    at: float = field(metadata={"min": 0, "doc": "seconds after start"})
    until: float | None = field(default=None, metadata={"min": 0, "doc": "end, seconds"})
    label: str | None = field(default=None, metadata={"doc": "what the ground truth says"})
    sensor: str | None = field(default=None, metadata={"doc": "the sensor it affects"})
    quantity: str | None = field(default=None, metadata={"doc": "for multi-quantity sensors"})
    fault: FaultName | None = field(
        default=None, metadata={"doc": "bus or serial-line fault (kind fault)"}
    )
    down: float = field(
        default=5.0, metadata={"min": 0, "max": 86_400, "doc": "seconds without power"}
    )
    ppm: float | None = field(
        default=None,
        metadata={"min": -10_000, "max": 10_000, "doc": "an MCU crystal's drift (fault drift)"},
    )

    def __post_init__(self) -> None:
        timed = self.kind != "power-cut"
        if timed and (self.until is None or self.until <= self.at):
            raise ValueError(f"a {self.kind} injection needs until > at")
        if not timed and self.until is not None:
            raise ValueError("a power-cut has no until: give down (seconds without power)")
        if self.kind in ("anomaly", "fault") and self.sensor is None:
            raise ValueError(f"a {self.kind} injection needs a sensor")
        if (self.kind == "fault") != (self.fault is not None):
            raise ValueError(
                "fault (nack, eio, timeout, vanish, stuck, garbage; corrupt, truncate, reboot,"
                " drift on an MCU's line) goes with kind fault"
            )
        if (self.fault == "drift") != (self.ppm is not None):
            raise ValueError("a drift fault needs ppm, and only a drift fault takes it")

    @property
    def end(self) -> float:
        return self.until if self.until is not None else self.at + self.down

    @property
    def text(self) -> str:
        return self.label or (self.fault if self.fault else self.kind)


@dataclass(frozen=True)
class Scenario:
    name: str
    config: configuration.Config
    settings: SimulationSettings
    signals: Mapping[str, Mapping[str, Any]]  # "<sensor>[.<quantity>]" -> signal spec
    presses: tuple[Press, ...]
    injections: tuple[Injection, ...] = ()
    anomalies: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # index -> spec
    random_presses: tuple[RandomPresses, ...] = ()
    mcus: Mapping[str, McuSim] = field(default_factory=dict)  # serial.mcu sensor id -> MCU


# Line faults the MCU link absorbs (each costs the frames it hits, nothing else): context
# in the ground truth, not faults a health event should report.
ABSORBED = ("garbage", "corrupt", "truncate", "reboot", "drift")


def labels(scenario: Scenario) -> list[Label]:
    """The scenario's ground truth: one label per injection (an MCU line fault the link
    absorbs is labelled ``line``: context, not scored)."""
    mcus = {s.id for s in scenario.config.sensors if s.type == "serial.mcu"}

    def kind(injection: Injection) -> str:
        absorbed = injection.sensor in mcus and injection.fault in ABSORBED
        return "line" if absorbed else injection.kind

    return [
        Label(
            kind(injection),
            injection.text,
            injection.sensor if injection.quantity is None else
            f"{injection.sensor}.{injection.quantity}",
            injection.at,
            injection.end,
        )
        for injection in scenario.injections
    ]  # fmt: skip


def is_scenario(path: str) -> bool:
    """Whether a TOML file has a [simulation] table (unreadable files are not scenarios)."""
    try:
        return "simulation" in tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
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
    elif name_or_path is None or name_or_path in scenarios.names():
        name = name_or_path or scenarios.DEFAULT
        source = f"scenario '{name}'"
        text = scenarios.path(name).read_text("utf-8")
    else:
        source = name_or_path
        try:
            text = Path(name_or_path).read_text(encoding="utf-8")
        except OSError as exc:
            known = ", ".join(scenarios.names())
            raise ConfigError(
                [f"{source}: no such scenario file, nor a built-in scenario ({known})"]
            ) from exc
    return parse_scenario(text, source, overrides)


def parse_scenario(text: str, source: str, overrides: dict[str, Any]) -> Scenario:
    data = configuration.read_toml(text, source)
    simulation = data.pop("simulation", {})
    for section, values in overrides.items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table.update(values)
    problems = Problems(source)
    parsed = _simulation(simulation, problems)
    try:
        config = configuration.validate(data, source)
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *problems.items]) from None
    if problems or parsed is None:
        raise ConfigError(problems.items)
    settings, signals, presses, injections, anomalies, randoms, mcus = parsed
    _check_targets(config, signals, injections, problems)
    _check_mcus(config, mcus, problems)
    if problems:
        raise ConfigError(problems.items)
    return Scenario(
        source, config, settings, signals, presses, injections, anomalies, randoms, mcus
    )


_Parsed = tuple[
    SimulationSettings,
    dict[str, Mapping[str, Any]],
    tuple[Press, ...],
    tuple[Injection, ...],
    dict[int, Mapping[str, Any]],
    tuple[RandomPresses, ...],
    dict[str, McuSim],
]


def _simulation(table: Any, problems: Problems) -> _Parsed | None:
    if not isinstance(table, dict):
        problems.add("simulation", f"expected a table, found {describe(table)}")
        return None
    skip = ("signals", "presses", "injections", "random_presses", "mcu")
    settings = build(SimulationSettings, table, "simulation", problems, skip=skip)
    horizon = settings.duration if settings else 60.0
    signals: dict[str, Mapping[str, Any]] = {}
    raw_signals = table.get("signals", {})
    if not isinstance(raw_signals, dict):
        problems.add("simulation.signals", f"expected a table, found {describe(raw_signals)}")
        raw_signals = {}
    for key, spec in raw_signals.items():
        if _valid_signal(spec, f"simulation.signals.{key}", problems, horizon):
            signals[key] = spec
    presses = []
    for i, entry in enumerate(_list(table.get("presses", []), "simulation.presses", problems)):
        press = build(Press, entry, join("simulation.presses", i), problems)
        if press is not None:
            presses.append(press)
    randoms = []
    where = "simulation.random_presses"
    for i, entry in enumerate(_list(table.get("random_presses", []), where, problems)):
        randoms_entry = build(RandomPresses, entry, join(where, i), problems)
        if randoms_entry is not None:
            randoms.append(randoms_entry)
    injections: list[Injection] = []
    anomalies: dict[int, Mapping[str, Any]] = {}
    raw = _list(table.get("injections", []), "simulation.injections", problems)
    for i, entry in enumerate(raw):
        path = join("simulation.injections", i)
        injection = build(Injection, entry, path, problems, skip=("signal",))
        if injection is None:
            continue
        spec = entry.get("signal")
        if injection.kind == "anomaly":
            if spec is None:
                problems.add(join(path, "signal"), "missing; expected the signal the anomaly adds")
                continue
            if not _valid_signal(spec, join(path, "signal"), problems, horizon):
                continue
            anomalies[len(injections)] = spec
        elif spec is not None:
            problems.add(join(path, "signal"), f"not used by a {injection.kind} injection")
            continue
        injections.append(injection)
    mcus: dict[str, McuSim] = {}
    raw_mcus = table.get("mcu", {})
    if not isinstance(raw_mcus, dict):
        problems.add("simulation.mcu", f"expected a table, found {describe(raw_mcus)}")
        raw_mcus = {}
    for key, entry in raw_mcus.items():
        mcu = build(McuSim, entry, f"simulation.mcu.{key}", problems)
        if mcu is not None:
            mcus[key] = mcu
    if settings is None:
        return None
    return settings, signals, tuple(presses), tuple(injections), anomalies, tuple(randoms), mcus


def _list(value: Any, path: str, problems: Problems) -> list[Any]:
    if not isinstance(value, list):
        problems.add(path, f"expected an array of tables, found {describe(value)}")
        return []
    return value


def _valid_signal(spec: Any, path: str, problems: Problems, horizon: float) -> bool:
    if not isinstance(spec, dict):
        problems.add(path, f"expected a table, found {describe(spec)}")
        return False
    try:
        signal_from_spec(spec, seed=0, horizon=horizon)
    except SensorConfigError as exc:
        problems.add(path, str(exc))
        return False
    return True


def _check_targets(
    config: configuration.Config,
    signals: Mapping[str, Any],
    injections: tuple[Injection, ...],
    problems: Problems,
) -> None:
    sensors = {s.id: s for s in config.sensors}
    for key in signals:
        if key not in sensors and key.rsplit(".", 1)[0] not in sensors:
            problems.add(f"simulation.signals.{key}", "expected a sensor id or <sensor>.<quantity>")
    for i, injection in enumerate(injections):
        path = join("simulation.injections", i)
        if injection.sensor is None:
            continue
        sensor = sensors.get(injection.sensor)
        if sensor is None:
            choices = ", ".join(sorted(sensors))
            problems.add(join(path, "sensor"), f"expected a sensor id ({choices})")
        elif injection.kind == "fault" and sensor.type == "serial.mcu":
            if injection.fault not in MCU_FAULTS:
                problems.add(
                    join(path, "fault"),
                    f"expected a fault of an MCU's line ({', '.join(MCU_FAULTS)}),"
                    f" found {injection.fault}",
                )
        elif injection.kind == "fault" and not hasattr(sensor.params, "address"):
            problems.add(
                join(path, "sensor"), f"expected an I2C or serial.mcu sensor, found {sensor.type}"
            )
        elif injection.kind == "fault" and injection.fault not in BUS_FAULTS:
            problems.add(
                join(path, "fault"),
                f"expected a bus fault ({', '.join(BUS_FAULTS)}), found {injection.fault}",
            )


def _check_mcus(
    config: configuration.Config, mcus: Mapping[str, McuSim], problems: Problems
) -> None:
    """Each simulated MCU belongs to a serial.mcu sensor, and each such sensor's MCU has
    channels: its own, or those the sensor's config names."""
    sensors = {s.id: s for s in config.sensors if s.type == "serial.mcu"}
    for key in mcus:
        if key not in sensors:
            choices = ", ".join(sorted(sensors)) or "none defined"
            problems.add(f"simulation.mcu.{key}", f"expected a serial.mcu sensor id ({choices})")
    for sensor in sensors.values():
        if not sensor.params.channels and not (sensor.id in mcus and mcus[sensor.id].channels):
            problems.add(
                f"simulation.mcu.{sensor.id}.channels",
                "missing; expected the channels the simulated MCU declares (the sensor names none)",
            )
