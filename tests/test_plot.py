"""Plots of recordings: panels, downsampling, and a real PNG of the expected size."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import struct
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.sim.plot import (
    DPI,
    MAX_POINTS,
    PlotError,
    downsample,
    draw,
    figure_size,
    panels,
    plot,
    time_scale,
    traces,
)
from edge.sim.recording import RecordingData, read_recording

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

HEADER = {
    "type": "scenario",
    "name": "machine-room",
    "device": "sim-01",
    "seed": 3,
    "start": "2026-01-01T00:00:00.000Z",
    "duration": 300.0,
    "sensors": {
        "temperature": {"type": "i2c.tmp102", "unit": "degC"},
        "climate": {"type": "i2c.bme280", "units": {"temperature": "degC", "pressure": "hPa"}},
        "door": {"type": "gpio.edge", "unit": ""},
        "motor": {"type": "i2c.mpu6050", "units": {"accel": "g"}},
    },
}


def lines() -> list[dict[str, Any]]:
    """Five minutes of a machine room, written by hand as a recording would be."""
    records: list[dict[str, Any]] = [
        HEADER,
        {"type": "label", "kind": "anomaly", "label": "overheat", "sensor": "temperature",
         "start": 150.0, "end": 230.0},
        {"type": "label", "kind": "fault", "label": "humidity chip stuck",
         "sensor": "climate.pressure", "start": 60.0, "end": 90.0},
        {"type": "label", "kind": "network", "label": "broker down", "sensor": None,
         "start": 250.0, "end": 280.0},
    ]  # fmt: skip
    door = False
    for i in range(0, 300, 2):
        t = float(i)
        temperature = 22.0 + 10.0 * math.exp(-(((t - 190.0) / 40.0) ** 2))
        records.append({"type": "reading", "t": t, "sensor": "temperature", "value": temperature})
        climate = {"temperature": 21.0 + t / 300, "pressure": 1013.0 + math.sin(t / 30)}
        records.append({"type": "reading", "t": t + 0.5, "sensor": "climate", "value": climate})
        accel = [0.01 * math.sin(t), 0.01 * math.cos(t), 1.0]
        records.append(
            {"type": "reading", "t": t + 1, "sensor": "motor", "value": {"accel": accel}}
        )
        if i % 100 == 40:
            door = not door
            records.append({"type": "reading", "t": t + 0.2, "sensor": "door", "value": door})
    records += [
        {"type": "event", "t": 178.0, "sensor": "temperature", "kind": "threshold",
         "severity": "warning", "value": 30.4, "fields": {"state": "active", "threshold": 30.0}},
        {"type": "event", "t": 206.0, "sensor": "temperature", "kind": "threshold",
         "severity": "info", "value": 29.4, "fields": {"state": "clear", "threshold": 30.0}},
        {"type": "event", "t": 70.0, "sensor": "climate", "kind": "health",
         "severity": "warning", "value": 1013.0,
         "fields": {"state": "stuck", "quantity": "pressure"}},
        {"type": "event", "t": 120.0, "sensor": "motor", "kind": "anomaly",
         "severity": "critical", "value": 0.97, "fields": {"state": "active", "score": 0.97}},
    ]  # fmt: skip
    return sorted(records, key=lambda r: (r["type"] != "scenario", r.get("t", -1.0)))


def write(path: Path, records: Iterable[dict[str, Any]]) -> RecordingData:
    """Records written as a recording (header first, then in time order) and read back."""
    ordered = sorted(records, key=lambda r: (r["type"] != "scenario", r.get("t", -1.0)))
    path.write_text("".join(json.dumps(r) + "\n" for r in ordered), encoding="utf-8")
    return read_recording(path)


@pytest.fixture
def recording(tmp_path: Path) -> RecordingData:
    return write(tmp_path / "run.jsonl", lines())


def legend_of(ax: Any) -> Any:
    legend = ax.get_legend()
    assert legend is not None, ax.get_title()
    return legend


def legend_texts(ax: Any) -> list[str]:
    return [t.get_text() for t in legend_of(ax).get_texts()]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data.rstrip(b"\x00")[-8:-4] == b"IEND"
    return width, height


def test_panels_one_per_sensor_and_unit(recording: RecordingData) -> None:
    layout = panels(recording)
    assert [(p.sensor, p.unit) for p in layout] == [
        ("temperature", "degC"),
        ("climate", "hPa"),  # a BME280's pressure and temperature get their own panels
        ("climate", "degC"),
        ("door", ""),
        ("motor", "g"),
    ]
    assert [line.name for line in layout[4].lines] == ["accel.x", "accel.y", "accel.z"]
    assert layout[3].boolean and not layout[0].boolean
    assert layout[1].title == "climate · pressure"


def test_plot_writes_a_png_of_the_expected_size(recording: RecordingData, tmp_path: Path) -> None:
    out = tmp_path / "run.png"
    plot(recording, out)
    width, height = figure_size(5)
    assert png_size(out) == (round(width * DPI), round(height * DPI))
    assert out.stat().st_size > 20_000  # drawn, not blank


def test_the_figure_has_what_a_reader_needs(recording: RecordingData) -> None:
    figure = draw(recording)
    axes = figure.axes
    assert len(axes) == 5
    assert figure.get_suptitle() == (
        "machine-room: device sim-01, seed 3, start 2026-01-01T00:00:00.000Z"
    )
    assert [ax.get_ylabel() for ax in axes] == ["degC", "hPa", "degC", "state", "g"]
    assert axes[-1].get_xlabel() == "time since start (s)"
    assert axes[0].get_xlim() == (0.0, 300.0)
    legends = [legend_texts(ax) for ax in axes]
    assert legends[0] == ["temperature", "truth: anomaly", "truth: network", "threshold warning",
                          "cleared"]  # fmt: skip
    assert "health fault" in legends[1] and "truth: fault" in legends[1]
    assert "truth: fault" not in legends[2]  # the fault is on pressure, not temperature
    assert "anomaly critical" in legends[4]
    texts = [t.get_text().strip() for t in axes[0].texts]
    assert texts == ["overheat", "broker down"]


def test_long_series_become_envelopes_within_the_budget(tmp_path: Path) -> None:
    n = 36_000  # an hour at 10 Hz
    header = {**HEADER, "duration": 3600.0}
    path = tmp_path / "long.jsonl"
    with path.open("w", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for i in range(n):
            t = i / 10
            f.write(json.dumps({"type": "reading", "t": t, "sensor": "temperature",
                                "value": 22 + math.sin(i)}) + "\n")  # fmt: skip
            if i % 2 == 0:
                accel = {"accel": [math.sin(i), 0.0, 1.0]}
                f.write(json.dumps({"type": "reading", "t": t, "sensor": "motor",
                                    "value": accel}) + "\n")  # fmt: skip
    data = read_recording(path)
    for panel in panels(data):
        drawn = traces(panel, 3600.0)
        assert all(trace.envelope is not None for trace in drawn)
        assert sum(trace.points for trace in drawn) <= MAX_POINTS
    figure = draw(data)
    legend = legend_texts(figure.axes[0])
    assert legend == ["temperature (mean, min-max)"]
    assert figure.axes[-1].get_xlabel() == "time since start (min)"
    assert figure.axes[0].get_xlim() == (0.0, 60.0)
    out = tmp_path / "long.png"
    plot(data, out)
    assert png_size(out) == (1400, round(figure_size(2)[1] * DPI))


def test_downsample_keeps_extremes_and_means() -> None:
    t = np.arange(10_000, dtype=np.float64)
    v = np.zeros_like(t)
    v[1234] = 50.0  # a spike a plain decimation would lose
    v[7777] = -20.0
    v[5000] = math.nan
    reduced = downsample(t, v, 300)
    assert reduced is not None
    times, lows, highs, means = reduced
    assert len(times) == 100
    assert highs.max() == 50.0 and lows.min() == -20.0
    assert np.all(np.isfinite(means))  # the NaN is a gap, not a poisoned bin
    assert np.all(np.diff(times) > 0)
    assert downsample(t[:300], v[:300], 300) is None


def test_time_scale() -> None:
    assert time_scale(600) == (1.0, "s")
    assert time_scale(601) == (60.0, "min")
    assert time_scale(3 * 3600) == (60.0, "min")
    assert time_scale(24 * 3600) == (3600.0, "h")


def test_without_matplotlib_the_error_names_the_extra(
    recording: RecordingData, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotError, match=r"pip install 'edgeline\[sim\]'"):
        draw(recording)


def test_an_unwritable_destination_is_a_plot_error(
    recording: RecordingData, tmp_path: Path
) -> None:
    with pytest.raises(PlotError, match="cannot write the plot"):
        plot(recording, tmp_path / "missing-dir" / "run.png")


# -- honesty: what a panel shows is the signal, its truth and where detections fired ---------


def event(
    t: float, sensor: str, kind: str, state: str, value: Any, **fields: Any
) -> dict[str, Any]:
    severity = "info" if state == "clear" else "critical"
    return {"type": "event", "t": t, "sensor": sensor, "kind": kind, "severity": severity,
            "value": value, "fields": {"state": state, **fields}}  # fmt: skip


def markers(ax: Any, marker: str) -> list[Any]:
    return [line for line in ax.get_lines() if line.get_marker() == marker]


def positions(drawn: list[Any]) -> dict[float, float]:
    return {float(m.get_xdata()[0]): float(m.get_ydata()[0]) for m in drawn}


def test_detection_markers_never_rescale_the_signal_axis(tmp_path: Path) -> None:
    # Values as detectors report them: a model's score (194 on a 22-32 degC signal, as the
    # wildfire scenario records), a clear's score, and a vector's score on a 1 g signal.
    data = write(tmp_path / "run.jsonl", [
        *lines(),
        event(100.0, "temperature", "anomaly", "active", 194.15, score=194.15),
        event(260.0, "temperature", "anomaly", "clear", -12.5, score=-12.5),
        event(130.0, "climate", "threshold", "active", 250.0, quantity="temperature"),
        event(200.0, "motor", "anomaly", "active", 95.8, quantity="accel", score=95.8),
    ])  # fmt: skip
    signal_only = draw(dataclasses.replace(data, events=[]))
    with_events = draw(data)
    for bare, marked in zip(signal_only.axes, with_events.axes, strict=True):
        assert marked.get_ylim() == pytest.approx(bare.get_ylim()), marked.get_title()
    temperature, climate_degc, motor = with_events.axes[0], with_events.axes[2], with_events.axes[4]
    # On a scalar signal the marker sits on the reading the detector saw at that time.
    readings = {r.t: r.value for r in data.readings if r.sensor == "temperature"}
    assert positions(markers(temperature, "v")) == {100.0: readings[100.0], 178.0: readings[178.0]}
    assert positions(markers(temperature, "o")) == {206.0: readings[206.0], 260.0: readings[260.0]}
    # A quantity of a sensor with several: on that quantity's line (climate at t = 130.5).
    (on_climate,) = markers(climate_degc, "v")
    assert on_climate.get_ydata()[0] == pytest.approx(21.0 + 128.0 / 300)
    # A vector's alarm has no one line to sit on: the marker heads its dashed line instead,
    # inside the axes' box.
    for marker in markers(motor, "v"):
        x, y = marker.get_transform().transform((marker.get_xdata()[0], marker.get_ydata()[0]))
        box = motor.get_window_extent()
        assert box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1 + 1


MOTOR_HEADER = {
    **HEADER,
    "sensors": {"motor": {"type": "i2c.mpu6050", "units": {"accel": "g", "gyro": "deg/s"}}},
}


def motor_run(tmp_path: Path, label_sensor: str | None) -> RecordingData:
    records: list[dict[str, Any]] = [
        MOTOR_HEADER,
        {"type": "label", "kind": "anomaly", "label": "bearing defect", "sensor": label_sensor,
         "start": 100.0, "end": 200.0},
    ]  # fmt: skip
    for i in range(60):
        t = 5.0 * i
        value = {"accel": [0.01 * math.sin(t), 0.0, 1.0], "gyro": [0.1, -0.1, 0.0]}
        records.append({"type": "reading", "t": t, "sensor": "motor", "value": value})
    return write(tmp_path / "motor.jsonl", records)


def shaded(ax: Any) -> list[str]:
    """The label windows drawn on an axes, by their text."""
    return [t.get_text().strip() for t in ax.texts]


@pytest.mark.parametrize(
    ("label_sensor", "on_accel", "on_gyro"),
    [
        ("motor.accel_x", True, False),  # as the factory-vibration scenario labels a defect
        ("motor.accel_y", True, False),
        ("motor.accel", True, False),
        ("motor.gyro_z", False, True),
        ("motor", True, True),
        (None, True, True),
        ("motor.accel_w", False, False),  # no such axis
        ("pump.accel_x", False, False),
    ],
)
def test_a_label_on_a_vector_component_is_shaded_on_that_vectors_panel(
    tmp_path: Path, label_sensor: str | None, on_accel: bool, on_gyro: bool
) -> None:
    accel, gyro = draw(motor_run(tmp_path, label_sensor)).axes
    assert (accel.get_ylabel(), gyro.get_ylabel()) == ("g", "deg/s")
    assert (shaded(accel) == ["bearing defect"]) is on_accel
    assert (shaded(gyro) == ["bearing defect"]) is on_gyro
    assert (len(accel.patches) == 1) is on_accel
    assert (len(gyro.patches) == 1) is on_gyro


def test_one_window_labelled_on_two_components_is_drawn_once(tmp_path: Path) -> None:
    data = motor_run(tmp_path, "motor.accel_x")
    twice = dataclasses.replace(
        data, labels=[*data.labels, dataclasses.replace(data.labels[0], sensor="motor.accel_y")]
    )
    accel, _ = draw(twice).axes
    assert shaded(accel) == ["bearing defect"]
    assert len(accel.patches) == 1


def test_legends_fit_inside_the_figure(tmp_path: Path) -> None:
    # An INA219 over an hour, as in the factory-vibration scenario: the enveloped
    # "shunt_voltage (mean, min-max)" made the widest legend, and it ran off the PNG.
    header = {
        **HEADER,
        "duration": 3600.0,
        "sensors": {
            "supply": {
                "type": "i2c.ina219",
                "units": {"current": "A", "shunt_voltage": "V", "voltage": "V"},
            }
        },
    }
    records: list[dict[str, Any]] = [header]
    for i in range(3600):
        value = {"current": 2.0 + 0.01 * math.sin(i), "shunt_voltage": 0.2, "voltage": 24.0}
        records.append({"type": "reading", "t": float(i), "sensor": "supply", "value": value})
    records.append(event(3000.0, "supply", "threshold", "active", 2.1, quantity="current"))
    figure = draw(write(tmp_path / "supply.jsonl", records))
    figure.savefig(io.BytesIO(), dpi=DPI, format="png")  # lays out and renders
    page = figure.bbox
    legends = [legend_of(ax) for ax in figure.axes]
    texts = [t.get_text() for legend in legends for t in legend.get_texts()]
    assert "shunt_voltage (mean, min-max)" in texts
    for ax, legend in zip(figure.axes, legends, strict=True):
        box = legend.get_window_extent()
        assert page.x0 <= box.x0 and box.x1 <= page.x1, (texts, box, page)
        assert page.y0 <= box.y0 and box.y1 <= page.y1, (texts, box, page)
        assert not box.overlaps(ax.get_window_extent())  # beside the data, not over it


def test_a_boolean_input_is_a_step_line_not_an_envelope(tmp_path: Path) -> None:
    # A polled door input at 10 Hz for an hour (the perimeter scenario's door): 36,000
    # readings, four changes of state.
    header = {**HEADER, "duration": 3600.0, "sensors": {
        "door": {"type": "gpio.input", "unit": ""},
        "relay": {"type": "gpio.output", "unit": ""}}}  # fmt: skip
    records: list[dict[str, Any]] = [header]
    opened = [(2410.0, 2450.0), (2500.0, 2520.5)]
    for i in range(36_000):
        t = i / 10
        is_open = any(start <= t < end for start, end in opened)
        records.append({"type": "reading", "t": t, "sensor": "door", "value": is_open})
        # a chattering relay: more changes than a panel's budget of points
        records.append({"type": "reading", "t": t, "sensor": "relay", "value": i % 6 < 3})
    data = write(tmp_path / "inputs.jsonl", records)
    door_panel, relay_panel = panels(data)
    (door,) = traces(door_panel, 3600.0)
    assert door.step and door.envelope is None and door.label == "door"
    # exactly the corners of the step line: the start, each change, the end of the run
    assert door.t.tolist() == [0.0, 2410.0, 2450.0, 2500.0, 2520.5, 3600.0]
    assert door.values.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    (relay,) = traces(relay_panel, 3600.0)
    assert relay.step and relay.envelope is None
    assert relay.points <= MAX_POINTS
    assert set(relay.values.tolist()) == {1.0}  # on at some time in every bin
    figure = draw(data)
    legends = [legend_texts(ax) for ax in figure.axes]
    assert legends == [["door"], ["relay (on at any time per bin)"]]
    for ax in figure.axes:
        assert len(ax.collections) == 0  # no min-max band
        assert ax.get_ylim() == (-0.15, 1.3)
