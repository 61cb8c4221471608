"""Plots of recordings: panels, downsampling, and a real PNG of the expected size."""

from __future__ import annotations

import json
import math
import struct
import sys
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


@pytest.fixture
def recording(tmp_path: Path) -> RecordingData:
    path = tmp_path / "run.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines()), encoding="utf-8")
    return read_recording(path)


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
    legends = [[t.get_text() for t in ax.get_legend().get_texts()] for ax in axes]
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
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
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
