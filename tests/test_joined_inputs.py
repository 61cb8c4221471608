"""A detector's ``inputs``: other sensors' readings joined to its own as one vector, for a
multivariate model; checked in config, joined alike by the runtime and by training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.config.device import load
from edge.errors import ConfigError
from edge.modeltools.series import ModelCommandError, joined, series
from edge.sim.recording import read_recording

CONFIG = """
[device]
id = "ridge-12"
[uplink]
broker = "mqtt://localhost"
[[sensors]]
id = "weather"
type = "i2c.bme280"
interval = 10.0
[[sensors]]
id = "smoke"
type = "i2c.ads1115"
channel = "all"
interval = 2.0
[[detectors]]
id = "fire-front"
sensor = "weather"
quantity = "temperature"
type = "onnx"
model = "environment"
window = 12
features = "slope,std"
{extra}
"""


def problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(extra=extra))
    with pytest.raises(ConfigError) as info:
        load(path)
    return info.value.problems


def test_joined_inputs_make_the_detector_see_a_vector(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(CONFIG.format(extra='inputs = ["weather.humidity", "smoke.ain0"]\nwidth = 3'))
    (detector,) = load(path).detectors
    assert detector.inputs == (("weather", "humidity"), ("smoke", "ain0"))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('inputs = ["wether.humidity"]\nwidth = 2', "did you mean 'weather'"),
        ('inputs = ["smoke.ain7"]\nwidth = 2', "expected one of ain0, ain1, ain2, ain3"),
        ('inputs = ["smoke"]\nwidth = 2', "found nothing"),
        ('inputs = ["weather.temperature"]\nwidth = 2', "not already in the vector"),
        ('inputs = ["smoke.ain0"]', "vectors of width 2"),
        ('inputs = ["smoke.ain0", "smoke.ain0"]\nwidth = 3', "not already in the vector"),
        ("inputs = [1]\nwidth = 2", "expected a list of strings"),
    ],
)
def test_bad_inputs_are_named(tmp_path: Path, extra: str, expected: str) -> None:
    found = problems(tmp_path, extra)
    assert any("detectors[0].inputs" in p and expected in p for p in found), found


def test_a_rule_takes_no_inputs(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    text = CONFIG.split("[[detectors]]")[0] + (
        '[[detectors]]\nsensor = "smoke"\nquantity = "ain0"\ntype = "threshold"\nabove = 1.0\n'
        'inputs = ["weather.humidity"]\n'
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert any("found type 'threshold' with no vectors" in p for p in info.value.problems)


def write_recording(path: Path, readings: list[tuple[float, str, object]]) -> Path:
    header = {"type": "scenario", "name": "n", "device": "d", "seed": 0, "duration": 60.0,
              "start": "2026-01-01T00:00:00.000Z", "sensors": {}}  # fmt: skip
    lines = [json.dumps(header)]
    lines += [
        json.dumps({"type": "reading", "t": t, "sensor": s, "value": v}) for t, s, v in readings
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_training_joins_the_latest_reading_at_or_before_each_one(tmp_path: Path) -> None:
    recording = read_recording(
        write_recording(
            tmp_path / "run.jsonl",
            [
                (0.0, "weather", {"temperature": 20.0, "humidity": 50.0}),  # no smoke yet: dropped
                (1.0, "smoke", {"ain0": 0.4}),
                (2.0, "smoke", {"ain0": 0.5}),
                (2.0, "weather", {"temperature": 21.0, "humidity": 49.0}),  # same time: 0.5
                (3.0, "smoke", None),  # a failed read is no reading
                (4.0, "weather", {"temperature": 22.0, "humidity": 48.0}),
            ],
        )
    )
    base = series(recording, "weather", "temperature")
    vectors = joined(recording, base, ["weather.humidity", "smoke.ain0"])
    assert vectors.width == 3
    assert vectors.times.tolist() == [2.0, 4.0]
    np.testing.assert_array_equal(vectors.values, [[21.0, 49.0, 0.5], [22.0, 48.0, 0.5]])
    with pytest.raises(ModelCommandError, match="no sensor 'fog'"):
        joined(recording, base, ["fog"])
