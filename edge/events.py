"""Events: what a detection or reading becomes, and the exact payload the cloud receives.

A ``Draft`` is stamped on the sampling thread (times and sync state, no I/O); the outbox
numbers it and turns it into an ``Event`` whose ``payload`` is the published contract
(docs/mqtt-contract.md). Severity is the detectors' own (:data:`models.Severity`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from models.detection import Severity

SCHEMA_VERSION = 1

SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")

# Lower sends first. Telemetry is the most expendable: it goes last and is evicted first.
PRIORITY_CRITICAL, PRIORITY_WARNING, PRIORITY_INFO, PRIORITY_TELEMETRY = 0, 1, 2, 3
PRIORITIES = (PRIORITY_CRITICAL, PRIORITY_WARNING, PRIORITY_INFO, PRIORITY_TELEMETRY)

CONTRACT_FIELDS = frozenset(
    {"v", "device", "stream", "seq", "ts", "sensor", "kind", "severity", "value", "synced"}
)


def priority_of(kind: str, severity: Severity) -> int:
    if severity == "critical":
        return PRIORITY_CRITICAL
    if severity == "warning":
        return PRIORITY_WARNING
    return PRIORITY_TELEMETRY if kind == "telemetry" else PRIORITY_INFO


def format_ts(wall: float) -> str:
    """UTC ISO 8601 with milliseconds and a Z, e.g. 2026-11-26T23:08:14.123Z."""
    stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def json_value(value: Any) -> Any:
    """Any reading or field as JSON, never failing: a bad value must not jam the outbox.

    Non-finite floats become null, tuples and arrays become lists, numpy scalars their
    Python value; anything else unknown becomes its text.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [json_value(v) for v in value]
    if isinstance(value, Mapping):  # else a NaN inside makes json.dumps(allow_nan=False) raise
        return {str(k): json_value(v) for k, v in value.items()}
    for convert in ("tolist", "item"):  # numpy arrays and scalars, without importing numpy
        method = getattr(value, convert, None)
        if callable(method):
            return json_value(method())
    return str(value)


@dataclass(frozen=True)
class Stamp:
    """When something happened: monotonic and wall time, and whether the wall was synced."""

    mono: float
    wall: float
    synced: bool


@dataclass(frozen=True)
class Draft:
    """An event before the outbox gives it a ``seq``."""

    sensor: str
    kind: str
    severity: Severity
    value: Any
    mono: float  # the clock's monotonic time when stamped: corrects ts after a clock sync
    wall: float
    synced: bool
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = CONTRACT_FIELDS.intersection(self.fields)
        if clash:
            raise ValueError(f"kind-specific fields may not replace contract fields: {clash}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, not {self.severity!r}")

    @property
    def priority(self) -> int:
        return priority_of(self.kind, self.severity)

    def payload(self, device: str, stream: str, seq: int) -> str:
        body: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "device": device,
            "stream": stream,
            "seq": seq,
            "ts": format_ts(self.wall),
            "sensor": self.sensor,
            "kind": self.kind,
            "severity": self.severity,
            "value": json_value(self.value),
            "synced": self.synced,
        }
        body.update((k, json_value(v)) for k, v in self.fields.items())
        return json.dumps(body, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Event:
    """A stored event: numbered, with the payload exactly as it goes on the wire.
    ``expires_in``: seconds of its priority's TTL left when it was read from the outbox
    (None: no TTL, or its age cannot be known), sent as MQTT 5 message expiry."""

    seq: int
    priority: int
    sensor: str
    kind: str
    payload: str
    expires_in: float | None = None

    def body(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.payload)
        return result

    def topic(self, prefix: str, device: str) -> str:
        return f"{prefix}/{device}/events/{self.kind}/{self.sensor}"
