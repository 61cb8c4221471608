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

from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES

from .errors import ConfigError
from .validation import Problems, build, describe, join, unknown_key

_FORBIDDEN_IN_TOPIC = re.compile(r"[/+#\s\x00]")


def topic_level(value: str) -> str | None:
    """An id that becomes one MQTT topic level: no '/', '+', '#', spaces; not empty."""
    if not value or _FORBIDDEN_IN_TOPIC.search(value) or len(value) > 64:
        return "1-64 characters without '/', '+', '#' or spaces (it becomes an MQTT topic level)"
    return None


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


@dataclass(frozen=True)
class DeviceConfig:
    id: str = field(metadata={"check": topic_level, "doc": "device id; an MQTT topic level"})
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


@dataclass(frozen=True)
class UplinkConfig:
    broker: str = field(
        metadata={
            "check": broker_url,
            "redact": hide_password,
            "doc": "mqtt://host[:port] or mqtts://",
        }
    )
    client_id: str | None = field(default=None, metadata={"doc": "default: edgeline-<device>"})
    topic_prefix: str = field(
        default="edgeline", metadata={"check": topic_prefix, "doc": "first topic level(s)"}
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
class SensorCommon:
    """Keys every sensor has; the rest of its table belongs to its type."""

    id: str = field(metadata={"check": topic_level, "doc": "sensor id; an MQTT topic level"})
    type: str = field(metadata={"doc": "sensor type (see Sensor types)"})
    interval: float | None = field(
        default=None,
        metadata={"min": 0.001, "max": 86_400, "doc": "seconds between polls (polled types)"},
    )
    telemetry: bool = field(
        default=False, metadata={"doc": "send every reading upstream as a telemetry event"}
    )


@dataclass(frozen=True)
class SensorConfig:
    id: str
    type: str
    interval: float | None
    telemetry: bool
    params: Any  # the sensor type's frozen params dataclass


@dataclass(frozen=True)
class DetectorCommon:
    sensor: str = field(metadata={"doc": "id of the sensor it watches"})
    type: str = field(metadata={"doc": "detector type (see Detectors)"})
    id: str | None = field(
        default=None, metadata={"check": topic_level, "doc": "default: <sensor>-<type>"}
    )


@dataclass(frozen=True)
class DetectorConfig:
    id: str
    sensor: str
    type: str
    params: Any  # the detector type's frozen params dataclass


@dataclass(frozen=True)
class Config:
    source: str
    device: DeviceConfig
    storage: StorageConfig
    uplink: UplinkConfig
    sensors: tuple[SensorConfig, ...]
    detectors: tuple[DetectorConfig, ...]

    def summary(self) -> str:
        """One paragraph saying what this config will do."""
        kinds = ", ".join(f"{s.id} ({s.type})" for s in self.sensors) or "no sensors"
        dets = ", ".join(f"{d.id} on {d.sensor}" for d in self.detectors) or "no detectors"
        return (
            f"{self.source}: device '{self.device.id}' polls {len(self.sensors)} sensor(s): "
            f"{kinds}; runs {len(self.detectors)} detector(s): {dets}. Events are stored in "
            f"{self.storage.state_dir} (durability {self.storage.durability}, commit window "
            f"{self.storage.commit_window_ms} ms) and sent to {self.uplink.broker} under "
            f"'{self.uplink.topic_prefix}/{self.device.id}/' at QoS {self.uplink.qos} with "
            f"{self.uplink.inflight} in flight."
        )


_SECTIONS = ("device", "storage", "uplink", "sensors", "detectors")


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
    declared: set[str] = set()  # every sensor id given, valid sensor or not
    sensors = _sensors(data.get("sensors", []), problems, declared)
    detectors = _detectors(data.get("detectors", []), sensors, declared, problems)
    if problems or device is None or storage is None or uplink is None:
        raise ConfigError(problems.items)
    return Config(source, device, storage, uplink, tuple(sensors.values()), tuple(detectors))


def _array(value: Any, path: str, problems: Problems) -> list[Any]:
    if not isinstance(value, list):
        problems.add(path, f"expected an array of tables ([[{path}]]), found {describe(value)}")
        return []
    return value


def _sensors(value: Any, problems: Problems, declared: set[str]) -> dict[str, SensorConfig]:
    sensors: dict[str, SensorConfig] = {}
    for i, table in enumerate(_array(value, "sensors", problems)):
        path = join("sensors", i)
        if not isinstance(table, dict):
            problems.add(path, f"expected a table, found {describe(table)}")
            continue
        common_keys = {"id", "type", "interval", "telemetry"}
        common = build(
            SensorCommon, {k: v for k, v in table.items() if k in common_keys}, path, problems
        )
        if common is None:
            if isinstance(table.get("id"), str):  # its detectors get no second problem
                declared.add(table["id"])
            continue
        if common.id in declared:
            problems.add(join(path, "id"), f"expected a unique id, found '{common.id}' again")
            continue
        declared.add(common.id)
        kind = SENSOR_TYPES.get(common.type)
        if kind is None:
            unknown_type(problems, join(path, "type"), common.type, SENSOR_TYPES)
            continue
        if kind.polled and common.interval is None:
            problems.add(join(path, "interval"), "missing; expected seconds between polls")
        if not kind.polled and common.interval is not None:
            problems.add(
                join(path, "interval"), f"not used by {kind.name} (it is interrupt-driven)"
            )
        params = build(kind.params, table, path, problems, skip=common_keys)
        if params is not None:
            sensors[common.id] = SensorConfig(
                common.id, common.type, common.interval, common.telemetry, params
            )
    return sensors


def _detectors(
    value: Any, sensors: Mapping[str, SensorConfig], declared: set[str], problems: Problems
) -> list[DetectorConfig]:
    detectors: list[DetectorConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(_array(value, "detectors", problems)):
        path = join("detectors", i)
        if not isinstance(table, dict):
            problems.add(path, f"expected a table, found {describe(table)}")
            continue
        common_keys = {"id", "sensor", "type"}
        common = build(
            DetectorCommon, {k: v for k, v in table.items() if k in common_keys}, path, problems
        )
        if common is None:
            continue
        if common.sensor not in declared:  # a declared but invalid sensor is reported already
            known = dict.fromkeys(sorted(declared))
            unknown_type(problems, join(path, "sensor"), common.sensor, known, what="a sensor id")
        kind = DETECTOR_TYPES.get(common.type)
        if kind is None:
            unknown_type(problems, join(path, "type"), common.type, DETECTOR_TYPES)
            continue
        params = build(kind.params, table, path, problems, skip=common_keys)
        ident = common.id or f"{common.sensor}-{common.type}"
        if ident in seen:
            problems.add(join(path, "id"), f"expected a unique id, found '{ident}' again")
            continue
        seen.add(ident)
        if params is not None and common.sensor in sensors:
            detectors.append(DetectorConfig(ident, common.sensor, common.type, params))
    return detectors


def unknown_type(
    problems: Problems, path: str, found: str, known: Mapping[str, Any], what: str = "one of"
) -> None:
    import difflib

    close = difflib.get_close_matches(found, list(known), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    choices = ", ".join(sorted(known)) or "none defined"
    problems.add(path, f"expected {what} ({choices}), found '{found}'{hint}")
