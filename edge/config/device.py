"""The one TOML config file, validated at load into typed, immutable objects.

``load(path)`` returns a ``Config`` or raises ``ConfigError`` listing every problem: file,
key path, what was expected and what was found, with a "did you mean" for unknown keys.
Sensor and detector parameters are declared by their types in ``sensors`` and ``models``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from edge.config.command_key import read_key_env, read_key_file
from edge.config.sensing import (
    ActionConfig,
    DetectorCommon,
    DetectorConfig,
    FilterConfig,
    SensorCommon,
    SensorConfig,
    parse_actions,
    parse_detectors,
    parse_sensors,
    unknown_type,
)
from edge.config.validation import ID, Problems, build, topic_level, unknown_key
from edge.errors import ConfigError
from sensors.ports import hex_text


def topic_prefix(value: str) -> str | None:
    levels = value.split("/")
    if not value or any(not level or topic_level(level) for level in levels):
        return "topic levels separated by '/', without '+', '#', spaces or empty levels"
    return None


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


def hide_password(value: Any) -> Any:
    """A URL as errors show it: never echo a password into a terminal or a log."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", value) if isinstance(value, str) else value


MIN_CAP = 128 * 1024  # below this the WAL and SQLite's own pages leave no room for events


def cap_bytes(value: int) -> str | None:
    if value < 0 or 0 < value < MIN_CAP:
        return f"0 (no cap) or at least {MIN_CAP} bytes"
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
        metadata={"min": 0, "max": 10_000, "doc": "group commit window; critical events at once"},
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


@dataclass(frozen=True)
class UplinkConfig:
    broker: str = field(
        metadata={
            "check": broker_url,
            "expects": "mqtt://host[:port] or mqtts://host[:port]",
            "redact": hide_password,
            "doc": "the broker events go to (mqtts:// for TLS)",
        }
    )
    client_id: str | None = field(default=None, metadata={"doc": "default: edgeline-<device>"})
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
    username: str | None = field(default=None, metadata={"doc": "broker user name"})
    password_file: str | None = field(default=None, metadata={"doc": "file holding the password"})
    password_env: str | None = field(default=None, metadata={"doc": "env var with the password"})
    ca_file: str | None = field(default=None, metadata={"doc": "CA bundle for mqtts://"})
    cert_file: str | None = field(default=None, metadata={"doc": "client certificate (mqtts://)"})
    key_file: str | None = field(default=None, metadata={"doc": "client key (mqtts://)"})
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

    def __post_init__(self) -> None:
        if self.backoff_max < self.backoff_min:
            raise ValueError("backoff_max must not be below backoff_min")
        if self.password_file and self.password_env:
            raise ValueError("give the password in password_file or password_env, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")

    @property
    def host(self) -> str:
        return urlsplit(self.broker).hostname or ""

    @property
    def tls(self) -> bool:
        return urlsplit(self.broker).scheme == "mqtts"

    @property
    def port(self) -> int:
        return urlsplit(self.broker).port or (8883 if self.tls else 1883)

    def password(self) -> str | None:
        """Read the secret from its file or environment variable (never inline)."""
        if self.password_file:
            return Path(self.password_file).read_text(encoding="utf-8").strip()
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

    def summary(self) -> str:
        """One paragraph saying what this config will do."""
        kinds = ", ".join(_described(s) for s in self.sensors) or "no sensors"
        dets = ", ".join(f"{d.id} on {d.sensor}" for d in self.detectors) or "no detectors"
        return (
            f"{self.source}: device '{self.device.id}' polls {len(self.sensors)} sensor(s): "
            f"{kinds}; runs {len(self.detectors)} detector(s): {dets}. Events are stored in "
            f"{self.storage.state_dir} (durability {self.storage.durability}, commit window "
            f"{self.storage.commit_window_ms} ms) and sent to {self.uplink.broker} under "
            f"'{self.uplink.topic_prefix}/{self.device.id}/' at QoS {self.uplink.qos} with "
            f"{self.uplink.inflight} in flight."
        )


def _described(sensor: SensorConfig) -> str:
    """A sensor as the summary names it: an I2C chip with its address, as i2cdetect shows."""
    address, bus = getattr(sensor.params, "address", None), getattr(sensor.params, "bus", None)
    if isinstance(address, int) and isinstance(bus, int):
        return f"{sensor.id} ({sensor.type} at {hex_text(address)} on bus {bus})"
    return f"{sensor.id} ({sensor.type})"


_SECTIONS = ("device", "storage", "uplink", "commands", "sensors", "detectors", "actions")


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
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer too long for int()
        raise ConfigError([f"{source}: invalid TOML: {exc}"]) from exc
    for section, values in (overrides or {}).items():
        table = data.setdefault(section, {})
        if isinstance(table, dict):
            table.update(values)
    return validate(data, source)


def validate(data: dict[str, Any], source: str) -> Config:
    problems = Problems(source)
    for key in data:
        if key not in _SECTIONS:
            unknown_key(problems, "", key, _SECTIONS)
    device = build(DeviceConfig, data.get("device", {}), "device", problems)
    storage = build(StorageConfig, data.get("storage", {}), "storage", problems)
    uplink = build(UplinkConfig, data.get("uplink", {}), "uplink", problems)
    commands = build(CommandsConfig, data.get("commands", {}), "commands", problems)
    declared: set[str] = set()  # every sensor id given, valid sensor or not
    sensors = parse_sensors(data.get("sensors", []), problems, declared)
    detectors = parse_detectors(data.get("detectors", []), sensors, declared, problems)
    actions = parse_actions(data.get("actions", []), sensors, detectors, problems)
    if storage is not None and storage.full_output is not None:
        outputs = {s.id: s for s in sensors.values() if s.type == "gpio.output"}
        if storage.full_output not in outputs:
            path = "storage.full_output"
            unknown_type(problems, path, storage.full_output, outputs, what="a gpio.output id")
    if problems or device is None or storage is None or uplink is None or commands is None:
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
    )


__all__ = [
    "ActionConfig",
    "CommandsConfig",
    "Config",
    "DetectorCommon",
    "DetectorConfig",
    "DeviceConfig",
    "FilterConfig",
    "SensorCommon",
    "SensorConfig",
    "StorageConfig",
    "UplinkConfig",
    "load",
    "parse",
    "validate",
]
