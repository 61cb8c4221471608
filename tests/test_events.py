"""The event payload: exactly the published contract (docs/mqtt-contract.md), as JSON the
cloud side can rely on."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.events import (
    CONTRACT_FIELDS,
    PRIORITY_CRITICAL,
    PRIORITY_INFO,
    PRIORITY_TELEMETRY,
    PRIORITY_WARNING,
    SCHEMA_VERSION,
    Draft,
    Event,
    format_ts,
    priority_of,
)

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
WALL = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


def draft(value: Any = 21.5, **overrides: Any) -> Draft:
    params: dict[str, Any] = {
        "sensor": "room",
        "kind": "threshold",
        "severity": "warning",
        "value": value,
        "mono": 12.0,
        "wall": WALL,
        "synced": True,
    }
    params.update(overrides)
    return Draft(**params)


def body_of(d: Draft, seq: int = 7) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(d.payload("pi-1", "abc123", seq))
    return result


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def test_payload_holds_exactly_the_contract_fields_plus_the_kind_specific_ones() -> None:
    d = draft(fields={"threshold": 20.0, "detector": "hot", "score": 0.9})
    body = body_of(d, seq=7)
    contract = {"v", "device", "stream", "seq", "ts", "sensor", "kind", "severity", "value"}
    contract.add("synced")  # the documented list, spelled out rather than taken from the code
    assert set(body) == contract | {"threshold", "detector", "score"}
    assert contract == CONTRACT_FIELDS
    assert body["v"] == SCHEMA_VERSION == 1
    assert body["device"] == "pi-1"
    assert body["stream"] == "abc123"
    assert body["seq"] == 7
    assert body["sensor"] == "room"
    assert body["kind"] == "threshold"
    assert body["severity"] == "warning"
    assert body["value"] == 21.5
    assert body["synced"] is True
    assert body["threshold"] == 20.0
    assert body["detector"] == "hot"
    assert body["score"] == 0.9


def test_payload_is_compact_utf8_json_object() -> None:
    payload = draft(value="größe", sensor="küche").payload("pi-1", "s", 1)
    assert isinstance(json.loads(payload), dict)
    assert payload.encode("utf-8").decode("utf-8") == payload
    assert json.loads(payload)["sensor"] == "küche"
    assert ", " not in payload and ": " not in payload


def test_unsynced_draft_says_so() -> None:
    assert body_of(draft(synced=False))["synced"] is False


def test_ts_is_utc_iso8601_with_milliseconds_and_z() -> None:
    ts = body_of(draft(wall=WALL))["ts"]
    assert TS.match(ts), ts
    assert ts == "2026-01-01T00:00:00.250Z"
    assert abs(parse_ts(ts) - WALL) < 0.001


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 .. 2100
def test_format_ts_round_trips_within_a_millisecond(wall: float) -> None:
    ts = format_ts(wall)
    assert TS.match(ts), ts
    back = parse_ts(ts)
    assert back <= wall + 1e-6  # milliseconds are cut, never rounded up past the instant
    assert wall - back < 0.001 + 1e-6


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_value_becomes_null(value: float) -> None:
    body = body_of(draft(value=value))
    assert "value" in body
    assert body["value"] is None


def test_tuple_value_becomes_an_array_with_non_finite_members_null() -> None:
    body = body_of(draft(value=(0.1, math.nan, (1, 2))))
    assert body["value"] == [0.1, None, [1, 2]]


def test_kind_specific_fields_are_made_json_too() -> None:
    body = body_of(draft(fields={"accel": (0.0, 1.0, 9.8), "score": math.nan}))
    assert body["accel"] == [0.0, 1.0, 9.8]
    assert body["score"] is None


def test_non_finite_floats_nested_in_a_mapping_become_null() -> None:
    body = body_of(draft(value={"rms": math.nan, "peak": 2.0}, fields={"x": {"y": (math.inf,)}}))
    assert body["value"] == {"rms": None, "peak": 2.0}
    assert body["x"] == {"y": [None]}


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_draft_refuses_fields_that_would_overwrite_the_contract(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        draft(fields={name: 1})


@pytest.mark.parametrize("severity", ["error", "CRITICAL", "", "debug"])
def test_draft_refuses_unknown_severities(severity: str) -> None:
    with pytest.raises(ValueError, match="severity"):
        draft(severity=severity)


@pytest.mark.parametrize(
    ("kind", "severity", "priority"),
    [
        ("threshold", "critical", PRIORITY_CRITICAL),
        ("telemetry", "critical", PRIORITY_CRITICAL),
        ("anomaly", "warning", PRIORITY_WARNING),
        ("telemetry", "warning", PRIORITY_WARNING),
        ("state", "info", PRIORITY_INFO),
        ("telemetry", "info", PRIORITY_TELEMETRY),
    ],
)
def test_priority_follows_severity_and_telemetry_goes_last(
    kind: str, severity: Any, priority: int
) -> None:
    assert (PRIORITY_CRITICAL, PRIORITY_WARNING, PRIORITY_INFO, PRIORITY_TELEMETRY) == (0, 1, 2, 3)
    assert priority_of(kind, severity) == priority
    assert draft(kind=kind, severity=severity).priority == priority


def test_event_topic_and_body() -> None:
    d = draft(kind="anomaly", sensor="pump")
    event = Event(3, d.priority, d.sensor, d.kind, d.payload("pi-1", "s", 3))
    assert event.topic("edgeline", "pi-1") == "edgeline/pi-1/events/anomaly/pump"
    assert event.body()["seq"] == 3


def test_values_json_cannot_encode_natively_still_make_a_payload() -> None:
    import numpy as np

    fields = {"score": np.float32(0.5), "window": np.arange(3), "when": object}
    draft = Draft("s", "anomaly", "warning", np.float64("nan"), 1.0, 1.0, True, fields)
    body = json.loads(draft.payload("dev", "stream", 1))
    assert body["value"] is None
    assert body["score"] == 0.5 and body["window"] == [0, 1, 2]
    assert body["when"] == str(object)
