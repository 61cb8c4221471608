"""The one TOML config file, validated at load into typed, immutable objects.

``load(path)`` returns a ``Config`` or raises ``ConfigError`` listing every problem: file,
key path, what was expected and what was found, with a "did you mean" for unknown keys.
Sensor and detector parameters are declared by their types in ``sensors`` and ``models``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from edge.config.command_key import read_key_env, read_key_file
from edge.config.feedback import FeedbackConfig
from edge.config.homeassistant import (
    HomeAssistantConfig,
    bridge_problem,
    unsigned_broker_problem,
)
from edge.config.metrics import MetricsConfig
from edge.config.secrets import hide_password, private_file_problem, read_secret_text
from edge.config.sensing import (
    ActionConfig,
    DetectorCommon,
    DetectorConfig,
    FilterConfig,
    SensorCommon,
    SensorConfig,
    action_outputs,
    parse_actions,
    parse_detectors,
    parse_sensors,
    unknown_type,
)
from edge.config.validation import (
    ID,
    KeyProblems,
    Problems,
    build,
    mqtt_text,
    topic_level,
    topic_prefix,
    unknown_key,
)
from edge.errors import ConfigError
from sensors.ports import hex_text


def broker_url(value: str) -> str | None:
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "a URL such as mqtt://host:1883 or mqtts://host:8883"
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        return "a URL such as mqtt://host:1883 or mqtts://host:8883"
    if url.password:
        return "a URL without a password (give it in password_file or password_env)"
    if url.path not in ("", "/") or url.query or url.fragment:
        return "a URL with no path, query or fragment"
    return None


def broker_problem(value: str) -> str | None:
    """What is wrong with a broker URL given on the command line, as one line (the URL's
    password hidden), or None when it is fine."""
    problem = broker_url(value)
    return f"expected {problem}, found {hide_password(value)!r}" if problem else None


def _tls(url: str) -> bool:
    return urlsplit(url).scheme == "mqtts"


MIN_CAP = 128 * 1024  # below this the WAL and SQLite's own pages leave no room for events


def cap_bytes(value: int) -> str | None:
    if value < 0 or 0 < value < MIN_CAP:
        return f"0 (no cap) or at least {MIN_CAP} bytes"
    return None


# The default bulk window is ten commit windows, at most this: a second of telemetry is
# ~100 events per commit at 100 events/s, under the flash-wear budget (docs/outbox.md).
DEFAULT_BULK_CAP_MS = 1000
MIN_CARD = 64 * 1024 * 1024  # below this, a size is surely gigabytes written as bytes
MAX_HEARTBEAT = 86_400.0


def card_size(value: int) -> str | None:
    if value < MIN_CARD:
        return f"the card's size in bytes, at least {MIN_CARD} (a 32 GB card: 32_000_000_000)"
    return None


def heartbeat_period(value: float) -> str | None:
    if value != 0 and not 1 <= value <= MAX_HEARTBEAT:
        return f"0 (no heartbeat) or a number of seconds from 1 to {MAX_HEARTBEAT:g}"
    return None


@dataclass(frozen=True)
class DeviceConfig:
    id: str = field(
        metadata={"check": topic_level, "expects": ID, "doc": "device id; an MQTT topic level"}
    )
    rtc: bool = field(
        default=False,
        metadata={"doc": "the wall clock is right from boot (RTC fitted): events are synced"},
    )


Durability = Literal["full", "normal"]


@dataclass(frozen=True)
class StorageConfig:
    state_dir: str = field(
        default="/var/lib/edgeline", metadata={"doc": "directory for the outbox and state"}
    )
    durability: Durability = field(
        default="full",
        metadata={"doc": "full: fsync each group commit; normal: survives crashes, not power cuts"},
    )
    commit_window_ms: int = field(
        default=100,
        metadata={
            "min": 0,
            "max": 10_000,
            "doc": "group commit window for warning events; critical events at once",
        },
    )
    bulk_window_ms: int | None = field(
        default=None,
        metadata={
            "min": 0,
            "max": 10_000,
            "expects": "an integer from 0 to 10000, at least commit_window_ms",
            "doc": "group commit window for telemetry and info events and for deletions;"
            " unset: 10 x commit_window_ms, at most 1000 (at least commit_window_ms)",
        },
    )
    max_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata={
            "check": cap_bytes,
            "expects": f"0 (no cap) or an integer >= {MIN_CAP}",
            "doc": "cap on the outbox files, WAL included, in bytes; 0: no cap",
        },
    )
    max_events: int | None = field(
        default=None,
        metadata={"min": 100, "doc": "cap on stored events, pending and kept; unset: none"},
    )
    critical_reserve: float = field(
        default=0.1,
        metadata={"min": 0.0, "max": 0.9, "doc": "share of the caps only critical events may use"},
    )
    keep_delivered: bool = field(
        default=True,
        metadata={"doc": "keep delivered events, within the caps, for `edge outbox replay`"},
    )
    status_interval: float = field(
        default=5.0,
        metadata={
            "min": 0.0,
            "max": 3600,
            "doc": "seconds between rewrites of <state_dir>/status.json (`edge status`); 0: none",
        },
    )
    card_bytes: int | None = field(
        default=None,
        metadata={
            "check": card_size,
            "expects": f"an integer >= {MIN_CARD}",
            "doc": "size of the SD card (or flash) holding state_dir, for the card life"
            " estimate; unset: the size of state_dir's filesystem",
        },
    )
    card_tbw_per_gb: float = field(
        default=0.1,
        metadata={
            "min": 0.001,
            "max": 1000.0,
            "doc": "the card's endurance: terabytes it takes written per gigabyte of its size",
        },
    )
    ttl_warning: float | None = field(
        default=None,
        metadata={"min": 1.0, "doc": "seconds a warning event may wait; unset: no limit"},
    )
    ttl_info: float | None = field(
        default=None,
        metadata={"min": 1.0, "doc": "seconds an info event may wait; unset: no limit"},
    )
    ttl_telemetry: float | None = field(
        default=None,
        metadata={"min": 1.0, "doc": "seconds a telemetry event may wait; unset: no limit"},
    )
    full_output: str | None = field(
        default=None,
        metadata={
            "expects": "a gpio.output sensor's id",
            "doc": "switched on while the outbox is full (alarm)",
        },
    )

    @property
    def bulk_window(self) -> int:
        """The window for telemetry, info and deletions in ms: as set, or by default ten
        commit windows, at most a second (and never shorter than the commit window)."""
        if self.bulk_window_ms is not None:
            return self.bulk_window_ms
        return max(self.commit_window_ms, min(10 * self.commit_window_ms, DEFAULT_BULK_CAP_MS))


@dataclass(frozen=True)
class UplinkConfig:
    broker: str | tuple[str, ...] = field(
        metadata={
            "check": broker_url,
            "expects": "mqtt://host[:port] or mqtts://host[:port], or a list of them",
            "redact": hide_password,
            "doc": "the broker events go to (mqtts:// for TLS); a list: the first is "
            "preferred, the others are fallbacks in order",
        }
    )
    client_id: str | None = field(
        default=None,
        metadata={"check": mqtt_text, "expects": "text", "doc": "default: edgeline-<device>"},
    )
    topic_prefix: str = field(
        default="edgeline",
        metadata={
            "check": topic_prefix,
            "expects": "topic levels joined by '/'",
            "doc": "first topic level(s)",
        },
    )
    qos: int = field(default=1, metadata={"min": 1, "max": 2, "doc": "events' MQTT QoS"})
    keepalive: int = field(default=30, metadata={"min": 5, "max": 3600, "doc": "seconds"})
    inflight: int = field(
        default=20, metadata={"min": 1, "max": 100, "doc": "events published, awaiting PUBACK"}
    )
    protocol: Literal["3.1.1", "5"] = field(default="3.1.1", metadata={"doc": "MQTT version"})
    username: str | None = field(
        default=None, metadata={"check": mqtt_text, "expects": "text", "doc": "broker user name"}
    )
    password_file: str | None = field(
        default=None,
        metadata={"doc": "file holding the password; only its owner may read it (mode 0600)"},
    )
    password_env: str | None = field(default=None, metadata={"doc": "env var with the password"})
    allow_plaintext_password: bool = field(
        default=False,
        metadata={"doc": "send the password over mqtt://, in clear text (a broker on this host)"},
    )
    ca_file: str | None = field(default=None, metadata={"doc": "CA bundle (mqtts:// only)"})
    cert_file: str | None = field(
        default=None, metadata={"doc": "client certificate (mqtts:// only)"}
    )
    key_file: str | None = field(default=None, metadata={"doc": "client key (mqtts:// only)"})
    backoff_min: float = field(
        default=0.5, metadata={"min": 0.01, "max": 60, "doc": "first reconnect delay, seconds"}
    )
    backoff_max: float = field(
        default=60.0, metadata={"min": 0.1, "max": 3600, "doc": "longest reconnect delay"}
    )
    max_rate: float = field(
        default=0.0,
        metadata={
            "min": 0.0,
            "max": 1_000_000.0,
            "doc": "events/s sent at most (metered links); 0: no limit; critical events exempt",
        },
    )
    failback: float = field(
        default=60.0,
        metadata={
            "min": 1.0,
            "max": 86_400,
            "doc": "seconds between tries to go back to the first broker while on a fallback",
        },
    )
    heartbeat: float = field(
        default=60.0,
        metadata={
            "check": heartbeat_period,
            "expects": f"0 or a number from 1 to {MAX_HEARTBEAT:g}",
            "doc": "seconds between retained `online` statuses with the device's health"
            " figures; 0: the birth only",
        },
    )

    def __post_init__(self) -> None:
        if self.backoff_max < self.backoff_min:
            raise ValueError("backoff_max must not be below backoff_min")
        if self.password_file and self.password_env:
            raise ValueError("give the password in password_file or password_env, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        wrong = self._list_problems() + self._clear_text_problems()
        if self.password_file:
            problem = private_file_problem(self.password_file)
            if problem:
                wrong.append(("password_file", problem))
        if wrong:
            raise KeyProblems(wrong)

    def _list_problems(self) -> list[tuple[str, str]]:
        """A list of brokers: not empty, no URL twice."""
        if isinstance(self.broker, str):
            return []
        if not self.broker:
            return [("broker", "expected a URL or a list of at least one, found an empty array")]
        wrong: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for index, url in enumerate(self.broker):
            if url in seen:
                wrong.append((
                    f"broker[{index}]",
                    f"expected each broker once, found {hide_password(url)!r} again"
                    f" (broker[{seen[url]}])",
                ))  # fmt: skip
            seen.setdefault(url, index)
        return wrong

    def _clear_text_problems(self) -> list[tuple[str, str]]:
        """TLS settings or a password with an mqtt:// broker: the settings would be ignored
        and the password sent in clear, so both are refused (the password unless
        ``allow_plaintext_password`` says it is meant). In a list, each mqtt:// URL is
        refused at its index."""
        if isinstance(self.broker, str):
            return self._clear_text_broker_problems()
        tls_keys = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        secret = "password_file" if self.password_file else "password_env"
        password = getattr(self, secret) and not self.allow_plaintext_password
        wrong = []
        for index, url in enumerate(self.broker):
            if _tls(url):
                continue
            found = f"found {hide_password(url)!r}"
            if tls_keys:
                wrong.append((
                    f"broker[{index}]",
                    f"expected an mqtts:// URL for TLS settings ({', '.join(tls_keys)}), {found}"
                    " (no TLS: they would be ignored)",
                ))  # fmt: skip
            if password:
                wrong.append((
                    f"broker[{index}]",
                    f"expected an mqtts:// URL with {secret}, {found}: the password would"
                    " travel in clear text (set allow_plaintext_password = true to send it"
                    " anyway)",
                ))  # fmt: skip
        return wrong

    def _clear_text_broker_problems(self) -> list[tuple[str, str]]:
        """The one broker's clear-text problems (a string ``broker``)."""
        if self.tls:
            return []
        found = f"found broker {hide_password(self.broker)!r}"
        wrong = [
            (key, f"expected an mqtts:// broker for TLS settings, {found} (no TLS: it would"
             " be ignored)")
            for key in ("ca_file", "cert_file", "key_file")
            if getattr(self, key) is not None
        ]  # fmt: skip
        secret = "password_file" if self.password_file else "password_env"
        if getattr(self, secret) and not self.allow_plaintext_password:
            wrong.append((
                secret,
                f"expected an mqtts:// broker, {found}: the password would travel in clear"
                " text (set allow_plaintext_password = true to send it anyway)",
            ))  # fmt: skip
        return wrong

    @property
    def brokers(self) -> tuple[str, ...]:
        """Every broker URL, the preferred one first: ``broker``'s list, or the one."""
        return (self.broker,) if isinstance(self.broker, str) else self.broker

    @property
    def url(self) -> str:
        """The preferred broker's URL: the one ``host``, ``port`` and ``tls`` describe."""
        return self.brokers[0]

    def at(self, index: int) -> UplinkConfig:
        """These settings with ``brokers[index]`` as the one broker (a connection's)."""
        return dataclasses.replace(self, broker=self.brokers[index])

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def tls(self) -> bool:
        return _tls(self.url)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    def password(self) -> str | None:
        """Read the secret from its file or environment variable (never inline)."""
        if self.password_file:
            return read_secret_text(self.password_file)
        if self.password_env:
            return os.environ.get(self.password_env)
        return None


@dataclass(frozen=True)
class CommandsConfig:
    enabled: bool = field(
        default=False,
        metadata={"doc": "accept downlink commands on {prefix}/{device}/cmd/{name}"},
    )
    key_file: str | None = field(
        default=None,
        metadata={"doc": "file holding the command key: hex text, mode 0600"},
    )
    key_env: str | None = field(
        default=None, metadata={"doc": "env var with the command key, as hex text"}
    )
    allow_unsigned: bool = field(
        default=False, metadata={"doc": "accept commands with no signature (a lab bench only)"}
    )
    max_age: float = field(
        default=300.0,
        metadata={"min": 1.0, "max": 86_400, "doc": "seconds a command stays valid"},
    )
    max_size: int = field(
        default=16_384,
        metadata={
            "min": 256,
            "max": 1_048_576,
            "doc": "largest command payload, bytes; bigger ones are dropped unread "
            "(MQTT 5: the broker is asked never to send them)",
        },
    )

    def __post_init__(self) -> None:
        if self.key_file and self.key_env:
            raise ValueError("give the command key in key_file or key_env, not both")
        if self.enabled and not (self.key_file or self.key_env or self.allow_unsigned):
            raise ValueError(
                "commands need a key (key_file or key_env), or allow_unsigned = true on a lab bench"
            )

    def key(self) -> bytes | None:
        """The command key from its file or environment variable; None when unsigned.

        Raises ``CommandKeyError`` (an ``OSError``) naming the file or variable."""
        if self.key_file:
            return read_key_file(self.key_file)
        if self.key_env:
            return read_key_env(self.key_env)
        return None


@dataclass(frozen=True)
class Config:
    source: str
    device: DeviceConfig
    storage: StorageConfig
    uplink: UplinkConfig
    sensors: tuple[SensorConfig, ...]
    detectors: tuple[DetectorConfig, ...]
    actions: tuple[ActionConfig, ...] = ()
    commands: CommandsConfig = CommandsConfig()
    homeassistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)

    def summary(self) -> str:
        """One paragraph saying what this config will do."""
        kinds = ", ".join(_described(s) for s in self.sensors) or "no sensors"
        dets = ", ".join(f"{d.id} on {d.sensor}" for d in self.detectors) or "no detectors"
        return (
            f"{self.source}: device '{self.device.id}' polls {len(self.sensors)} sensor(s): "
            f"{kinds}; runs {len(self.detectors)} detector(s): {dets}. Events are stored in "
            f"{self.storage.state_dir} (durability {self.storage.durability}, commit window "
            f"{self.storage.commit_window_ms} ms) and sent to {_brokers(self.uplink)} under "
            f"'{self.uplink.topic_prefix}/{self.device.id}/' at QoS {self.uplink.qos} with "
            f"{self.uplink.inflight} in flight.{_watched(self)}"
        )


def _watched(config: Config) -> str:
    """How the device reports on itself, as the summary says it: heartbeat and metrics."""
    heartbeat = config.uplink.heartbeat
    parts = [f"a heartbeat status every {heartbeat:g} s" if heartbeat else "no heartbeat"]
    metrics = config.metrics
    if metrics.textfile is not None:
        parts.append(f"metrics in {metrics.textfile} every {metrics.every:g} s")
    if metrics.port is not None:
        host = f"[{metrics.listen}]" if ":" in metrics.listen else metrics.listen
        parts.append(f"metrics at http://{host}:{metrics.port}/metrics")
    return f" Health: {'; '.join(parts)}."


def _brokers(uplink: UplinkConfig) -> str:
    """The brokers as the summary names them: the preferred one, then its fallbacks."""
    first, *fallbacks = (hide_password(url) for url in uplink.brokers)
    return f"{first} (fallbacks: {', '.join(fallbacks)})" if fallbacks else first


def _described(sensor: SensorConfig) -> str:
    """A sensor as the summary names it: an I2C chip with its address, as i2cdetect shows."""
    address, bus = getattr(sensor.params, "address", None), getattr(sensor.params, "bus", None)
    if isinstance(address, int) and isinstance(bus, int):
        return f"{sensor.id} ({sensor.type} at {hex_text(address)} on bus {bus})"
    return f"{sensor.id} ({sensor.type})"


_SECTIONS = (
    "device",
    "storage",
    "uplink",
    "commands",
    "homeassistant",
    "metrics",
    "feedback",
    "sensors",
    "detectors",
    "actions",
)


def load(path: str | Path, *, overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """Read and validate a config file. ``overrides`` replace keys per section (CLI flags)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{source}: cannot read: not UTF-8 text ({exc.reason})"]) from exc
    return parse(text, source, overrides=overrides)


def parse(
    text: str, source: str = "<config>", *, overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> Config:
    data = read_toml(text, source)
    for section, values in (overrides or {}).items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table.update(values)
    return validate(data, source)


def read_toml(text: str, source: str) -> dict[str, Any]:
    """The tables of a TOML text; ConfigError (one line, no traceback) when it is not TOML."""
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer too long for int()
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or tables
        raise ConfigError([f"{source}: invalid TOML: arrays or tables nested too deeply"]) from None


def validate(data: dict[str, Any], source: str) -> Config:
    problems = Problems(source)
    for key in data:
        if key not in _SECTIONS:
            unknown_key(problems, "", key, _SECTIONS)
    device = build(DeviceConfig, data.get("device", {}), "device", problems)
    storage = build(StorageConfig, data.get("storage", {}), "storage", problems)
    uplink = build(UplinkConfig, data.get("uplink", {}), "uplink", problems)
    commands = build(CommandsConfig, data.get("commands", {}), "commands", problems)
    homeassistant = build(
        HomeAssistantConfig, data.get("homeassistant", {}), "homeassistant", problems
    )
    metrics = build(MetricsConfig, data.get("metrics", {}), "metrics", problems)
    feedback = build(FeedbackConfig, data.get("feedback", {}), "feedback", problems)
    if feedback is not None and feedback.enabled and commands and not commands.enabled:
        problems.add("feedback.enabled", "verdicts come as commands: enable [commands] too")
    declared: set[str] = set()  # every sensor id given, valid sensor or not
    sensors = parse_sensors(data.get("sensors", []), problems, declared)
    detectors = parse_detectors(data.get("detectors", []), sensors, declared, problems)
    actions = parse_actions(data.get("actions", []), sensors, detectors, problems)
    bulk = storage.bulk_window_ms if storage is not None else None
    if storage is not None and bulk is not None and bulk < storage.commit_window_ms:
        problems.add(
            "storage.bulk_window_ms",
            f"expected at least commit_window_ms ({storage.commit_window_ms}), found {bulk}"
            " (telemetry and info never wait less than warnings)",
        )
    if storage is not None and storage.full_output is not None:
        outputs = {s.id: s for s in sensors.values() if s.type == "gpio.output"}
        if storage.full_output not in outputs:
            path = "storage.full_output"
            unknown_type(problems, path, storage.full_output, outputs, what="a gpio.output id")
    if homeassistant is not None and homeassistant.enabled and uplink and commands:
        _check_switches(homeassistant, uplink, commands, sensors, problems)
    if (
        problems
        or device is None
        or storage is None
        or uplink is None
        or commands is None
        or homeassistant is None
        or metrics is None
        or feedback is None
    ):
        raise ConfigError(problems.items)
    return Config(
        source,
        device,
        storage,
        uplink,
        tuple(sensors.values()),
        tuple(detectors),
        actions,
        commands,
        homeassistant,
        metrics,
        feedback,
    )


def _check_switches(
    settings: HomeAssistantConfig,
    uplink: UplinkConfig,
    commands: CommandsConfig,
    sensors: Mapping[str, SensorConfig],
    problems: Problems,
) -> None:
    """Home Assistant's way to the outputs must be one that works, and an unsigned one only
    over a broker whose ACL can keep it to Home Assistant."""
    path = "homeassistant.switches"
    if settings.switches == "bridge":
        problem = bridge_problem(commands.enabled, action_outputs(sensors))
        if problem:
            problems.add(path, problem)
    elif settings.switches == "unsigned":
        for url in uplink.brokers:
            problem = unsigned_broker_problem(url, uplink.username)
            if problem:
                problems.add(path, problem)


__all__ = [
    "ActionConfig",
    "CommandsConfig",
    "Config",
    "DetectorCommon",
    "DetectorConfig",
    "DeviceConfig",
    "FeedbackConfig",
    "FilterConfig",
    "HomeAssistantConfig",
    "MetricsConfig",
    "SensorCommon",
    "SensorConfig",
    "StorageConfig",
    "UplinkConfig",
    "load",
    "parse",
    "validate",
]
