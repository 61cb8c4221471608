"""Recordings: the JSON Lines a run writes, byte for byte, and reading them back."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.clock import VirtualClock
from edge.errors import EdgelineError
from edge.events import Draft
from edge.runtime.sensing import SensorRunner
from edge.sim.hardware import SimulatedHardware
from edge.sim.labels import Label
from edge.sim.recording import (
    Recording,
    RecordingError,
    SensorInfo,
    plain,
    read_recording,
    sensor_infos,
)
from edge.sim.scenario import parse_scenario
from sensors import SENSOR_TYPES

T0 = 1000.0
START_WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SENSORS = {
    "temperature": SensorInfo("i2c.tmp102", unit="degC"),
    "climate": SensorInfo("i2c.bme280", units={"temperature": "degC", "pressure": "hPa"}),
    "door": SensorInfo("gpio.edge", unit=""),
}
LABELS = [
    Label("anomaly", "overheat", "temperature", 10.0, 20.0),
    Label("network", "broker down", None, 5.0, 6.5),
]


def recording(path: Path, labels: list[Label] | None = None) -> Recording:
    return Recording(
        path,
        T0,
        LABELS if labels is None else labels,
        name="machine-room",
        device="sim-01",
        seed=7,
        start_wall=START_WALL,
        duration=60.0,
        sensors=SENSORS,
    )


def draft(t: float, **fields: Any) -> Draft:
    return Draft("temperature", "threshold", "warning", 30.123456789123, T0 + t, 0.0, True, fields)


def run(path: Path) -> None:
    """A small run, with the kinds of values a sensor can deliver."""
    with recording(path) as rec:
        rec.reading("temperature", 21.0000000001, "degC", T0 + 0.1)
        rec.reading("climate", {"temperature": 22.5, "pressure": 1013.25}, "", T0 + 0.2)
        rec.reading("door", True, "", T0 + 0.3)
        rec.reading("temperature", (0.1, -0.2, 1 / 3), "g", T0 + 1 / 3)
        rec.drafted(draft(12.5, state="active", threshold=30.0, limit="above"))
        rec.reading("temperature", math.nan, "degC", T0 + 13.0)


def test_lines_are_exact_and_in_call_order(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    run(path)
    assert path.read_text(encoding="utf-8").splitlines() == [
        '{"device":"sim-01","duration":60.0,"name":"machine-room","seed":7,'
        '"sensors":{"climate":{"type":"i2c.bme280","units":{"pressure":"hPa","temperature":"degC"}},'
        '"door":{"type":"gpio.edge","unit":""},"temperature":{"type":"i2c.tmp102","unit":"degC"}},'
        '"start":"2026-01-01T00:00:00.000Z","type":"scenario"}',
        '{"end":20.0,"kind":"anomaly","label":"overheat","sensor":"temperature","start":10.0,'
        '"type":"label"}',
        '{"end":6.5,"kind":"network","label":"broker down","sensor":null,"start":5.0,'
        '"type":"label"}',
        '{"sensor":"temperature","t":0.1,"type":"reading","value":21.0}',
        '{"sensor":"climate","t":0.2,"type":"reading","value":{"pressure":1013.25,"temperature":22.5}}',
        '{"sensor":"door","t":0.3,"type":"reading","value":true}',
        '{"sensor":"temperature","t":0.333333,"type":"reading","value":[0.1,-0.2,0.333333333]}',
        '{"fields":{"limit":"above","state":"active","threshold":30.0},"kind":"threshold",'
        '"sensor":"temperature","severity":"warning","t":12.5,"type":"event","value":30.1234568}',
        '{"sensor":"temperature","t":13.0,"type":"reading","value":null}',
    ]


def test_the_same_run_gives_the_same_bytes(tmp_path: Path) -> None:
    run(tmp_path / "a.jsonl")
    run(tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    run(path)
    data = read_recording(path)
    assert data.header.name == "machine-room"
    assert data.header.seed == 7
    assert data.header.start == "2026-01-01T00:00:00.000Z"
    assert data.header.sensors == SENSORS
    assert data.labels == LABELS
    assert [(r.t, r.sensor) for r in data.readings] == [
        (0.1, "temperature"),
        (0.2, "climate"),
        (0.3, "door"),
        (0.333333, "temperature"),
        (13.0, "temperature"),
    ]
    assert data.readings[1].value == {"temperature": 22.5, "pressure": 1013.25}
    (event,) = data.events
    assert (event.t, event.kind, event.severity, event.value) == (
        12.5,
        "threshold",
        "warning",
        30.1234568,
    )
    assert event.fields == {"state": "active", "threshold": 30.0, "limit": "above"}
    assert [r.value for r in data.readings_of("door")] == [True]


def test_hooks_only_queue_the_writer_thread_writes(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    rec = recording(path, labels=[])
    written_by: set[str] = set()
    file = rec._file
    original = file.write

    def spy(text: str) -> int:
        written_by.add(threading.current_thread().name)
        return original(text)

    file.write = spy  # type: ignore[method-assign]
    rec.reading("temperature", 21.0, "degC", T0 + 1.0)
    rec.drafted(draft(2.0, state="active"))
    rec.close()
    assert written_by == {"edgeline-recording"}
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_close_is_idempotent_and_flushes(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    rec = recording(path, labels=[])
    for i in range(10_000):
        rec.reading("temperature", float(i), "degC", T0 + i)
    rec.close()
    rec.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10_001
    assert json.loads(lines[-1])["value"] == 9999.0


def test_an_unwritable_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot write a recording"):
        recording(tmp_path / "no-such-dir" / "run.jsonl")


def test_a_write_failure_surfaces_at_close(tmp_path: Path) -> None:
    rec = recording(tmp_path / "run.jsonl", labels=[])

    def full(text: str) -> int:
        raise OSError(28, "No space left on device")

    rec._file.write = full  # type: ignore[method-assign]
    rec.reading("temperature", 21.0, "degC", T0 + 1.0)
    with pytest.raises(RecordingError, match="No space left on device"):
        rec.close()


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_keep_nine_significant_digits(x: float) -> None:
    kept = plain(x)
    assert float(f"{kept:.9g}") == kept  # writing it again changes nothing
    assert kept == pytest.approx(x, rel=5e-9, abs=0.0)


# -- reading bad files ----------------------------------------------------------------

HEADER = (
    '{"type":"scenario","name":"s","device":"d","seed":1,"start":"2026-01-01T00:00:00.000Z",'
    '"duration":10,"sensors":{"a":{"type":"i2c.tmp102","unit":"degC"}}}'
)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty file"),
        (['{"type":"reading","t":1,"sensor":"a","value":1}'], "first line must be the scenario"),
        (["not json"], "not JSON"),
        (["[1, 2]"], "expected a JSON object"),
        ([HEADER.replace('"seed":1', '"seed":"1"')], "'seed' must be an integer"),
        ([HEADER.replace('"duration":10', '"duration":0')], "'duration' must be > 0"),
        ([HEADER.replace(',"name":"s"', "")], "has no 'name'"),
        ([HEADER.replace('"type":"i2c.tmp102",', "")], "sensors.a must be an object"),
        ([HEADER, HEADER], "a second scenario header"),
        ([HEADER, '{"type":"reading","t":"1","sensor":"a","value":1}'], "'t' must be a number"),
        ([HEADER, '{"type":"reading","t":1,"value":1}'], "has no 'sensor'"),
        ([HEADER, '{"type":"frame","t":1}'], "unknown line type 'frame'"),
        (
            [HEADER, '{"type":"event","t":1,"sensor":"a","kind":"k","severity":"fatal"}'],
            "severity must be one of",
        ),
        (
            [
                HEADER,
                '{"type":"label","kind":"anomaly","label":"x","sensor":null,"start":5,"end":1}',
            ],
            "end 1.0 is before start 5.0",
        ),
    ],
)
def test_bad_files_are_named_errors(tmp_path: Path, lines: list[str], message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with pytest.raises(RecordingError, match=message) as raised:
        read_recording(path)
    assert str(raised.value).startswith(str(path))


def test_a_missing_or_binary_file_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read"):
        read_recording(tmp_path / "missing.jsonl")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(RecordingError, match="not UTF-8"):
        read_recording(binary)


@settings(max_examples=200)
@given(st.lists(st.text(max_size=80), max_size=5))
def test_any_text_reads_or_raises_a_recording_error(
    tmp_path_factory: Any, lines: list[str]
) -> None:
    path = tmp_path_factory.mktemp("garbage") / "any.jsonl"
    path.write_text("\n".join([HEADER, *lines]), encoding="utf-8")
    try:
        read_recording(path)
    except RecordingError as exc:
        assert isinstance(exc, EdgelineError)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=100)
@given(st.lists(st.tuples(st.floats(0, 1e5), values), max_size=8))
def test_any_values_round_trip_as_written(
    tmp_path_factory: Any, samples: list[tuple[float, Any]]
) -> None:
    path = tmp_path_factory.mktemp("values") / "run.jsonl"
    with recording(path, labels=[]) as rec:
        for t, value in samples:
            rec.reading("temperature", value, "degC", T0 + t)
    data = read_recording(path)
    assert [r.value for r in data.readings] == [plain(v) for _, v in samples]
    assert [r.t for r in data.readings] == [round(T0 + t - T0, 6) + 0.0 for t, _ in samples]


def test_sensor_infos_take_units_from_the_built_sensor(tmp_path: Path) -> None:
    """The built sensor knows best: one ADS1115 channel reads volts although the type
    declares four quantities, and a counter's rate unit comes from its config."""
    scenario = parse_scenario(
        """
        [device]
        id = "units-01"
        [storage]
        state_dir = "unused"
        [uplink]
        broker = "mqtt://127.0.0.1:9"
        [[sensors]]
        id = "one-channel"
        type = "i2c.ads1115"
        interval = 1.0
        channel = "0"
        [[sensors]]
        id = "all-channels"
        type = "i2c.ads1115"
        interval = 1.0
        address = 0x49
        channel = "all"
        [[sensors]]
        id = "wind"
        type = "gpio.counter"
        interval = 1.0
        pin = 5
        unit = "km/h"
        scale = 2.4
        [[sensors]]
        id = "button"
        type = "gpio.edge"
        pin = 17
        [simulation]
        duration = 1.0
        """,
        "units.toml",
        {},
    )
    hardware = SimulatedHardware(scenario, VirtualClock())
    runners: dict[str, SensorRunner] = {}
    for cfg in scenario.config.sensors:
        kind = SENSOR_TYPES[cfg.type]
        device = kind.build(cfg.params, hardware.hardware)
        runners[cfg.id] = SensorRunner(
            cfg, kind, device, [], emit=lambda *a: None, on_detection=lambda *a: None
        )
    try:
        assert sensor_infos(runners) == {
            "one-channel": SensorInfo("i2c.ads1115", unit="V"),
            "all-channels": SensorInfo("i2c.ads1115", units={f"ain{i}": "V" for i in range(4)}),
            "wind": SensorInfo("gpio.counter", units={"rate": "km/h", "count": ""}),
            "button": SensorInfo("gpio.edge", unit=""),
        }
    finally:
        for runner in runners.values():
            runner.device.close()


def test_sensors_may_be_described_after_readings_arrive(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    rec = Recording(path, T0, LABELS[:1], name="n", device="d", seed=0, start_wall=0.0,
                    duration=5.0)  # fmt: skip
    rec.reading("temperature", 21.5, "degC", T0 + 1.0)
    assert rec._items.qsize() == 1  # queued, nothing written before the header
    rec.describe({"temperature": SENSORS["temperature"]})
    rec.describe({})  # the header is written once
    rec.close()
    types = [json.loads(line)["type"] for line in path.read_text(encoding="utf-8").splitlines()]
    assert types == ["scenario", "label", "reading"]
    assert read_recording(path).header.sensors == {"temperature": SENSORS["temperature"]}


def test_a_recording_never_described_still_holds_its_readings(tmp_path: Path) -> None:
    path = tmp_path / "run.jsonl"
    rec = Recording(path, T0, [], name="n", device="d", seed=0, start_wall=0.0, duration=5.0)
    rec.reading("temperature", 21.5, "degC", T0 + 1.0)
    rec.close()
    data = read_recording(path)
    assert data.header.sensors == {}
    assert [r.value for r in data.readings] == [21.5]


def simulate_default(tmp_path: Path, name: str) -> Path:
    """The built-in scenario on the virtual clock, recorded as ``edge simulate`` would."""
    from edge.clock import VirtualClock
    from edge.runtime.runtime import Runtime
    from edge.sim.hardware import SimulatedHardware
    from edge.sim.scenario import load_scenario

    overrides = {
        "storage": {"state_dir": str(tmp_path / name)},
        "uplink": {"broker": "mqtt://127.0.0.1:1"},  # nobody there: events stay stored
    }
    scenario = load_scenario("default", overrides=overrides)
    clock = VirtualClock(start_wall=scenario.settings.start_epoch)
    t0 = clock.monotonic()
    hardware = SimulatedHardware(scenario, clock)
    path = tmp_path / f"{name}.jsonl"
    rec = Recording(
        path,
        t0,
        [Label("anomaly", "too warm", "temperature", 170.0, 300.0)],
        name=scenario.name,
        device=scenario.config.device.id,
        seed=scenario.settings.seed,
        start_wall=clock.wall(),
        duration=300.0,
    )
    runtime = Runtime(
        scenario.config, hardware=hardware.hardware, clock=clock, drive_clock=True, watcher=rec
    )
    rec.describe(sensor_infos(runtime.sensors))
    hardware.schedule(runtime.scheduler)
    try:
        runtime.start(until=t0 + 300.0)
        assert runtime.sampling_done(timeout=60)
    finally:
        runtime.close(timeout=2.0)
        rec.close()
    return path


def test_a_simulated_run_records_the_same_bytes_twice(tmp_path: Path) -> None:
    first = simulate_default(tmp_path, "first")
    second = simulate_default(tmp_path, "second")
    assert first.read_bytes() == second.read_bytes()
    data = read_recording(first)
    assert data.header.sensors["temperature"] == SensorInfo("i2c.tmp102", unit="degC")
    assert len(list(data.readings_of("temperature"))) == 151  # every 2 s, at 0 and 300 too
    presses = [(r.t, r.value) for r in data.readings_of("button")]
    assert presses == [(60.0, True), (60.4, False), (240.0, True), (240.4, False)]
    alarms = [e for e in data.events if e.kind == "threshold" and e.fields["state"] == "active"]
    assert len(alarms) == 1
    assert 170.0 < alarms[0].t < 300.0
