"""An ONNX model on an MPU-6050's FIFO windows, inside the runtime: a bearing defect tone
that no threshold sees is caught, and only while it is there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.clock import VirtualClock
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from models.features import FeatureSpec, features
from models.training import export_onnx, train
from sensors.sim.signals import signal_from_spec

RATE, WINDOW = 500.0, 250
FEATURES = "rms,band:80-100"
NORMAL = {"base": 0.0, "noise": 0.01, "harmonics": [{"frequency": 24.6, "amplitude": 0.05}]}

SCENARIO = """
[device]
id = "press-07"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "mqtt://127.0.0.1:1"

[[sensors]]
id = "motor"
type = "i2c.mpu6050"
mode = "fifo"
sample_rate = 500.0
interval = 0.25

[[detectors]]
sensor = "motor"
quantity = "accel"
type = "onnx"
model = "{model}"
backend = "numpy"
window = 250
width = 3
rate = 500.0
features = "rms,band:80-100"
min_duration = 1.0

[simulation]
duration = 120.0
[simulation.signals."motor.accel_x"]
base = 0.0
noise = 0.01
harmonics = [{{frequency = 24.6, amplitude = 0.05}}]
[simulation.signals."motor.accel_y"]
base = 0.0
noise = 0.01
harmonics = [{{frequency = 24.6, amplitude = 0.05}}]
[simulation.signals."motor.accel_z"]
base = 1.0
noise = 0.01

[[simulation.injections]]
kind = "anomaly"
sensor = "motor"
quantity = "accel_x"
at = 60.0
until = 90.0
label = "bearing fault"
signal = {{harmonics = [{{frequency = 89.2, amplitude = 0.2}}]}}
"""


def normal_model(path: Path) -> None:
    """A PCA model of normal running, trained on windows of the same signal model."""
    spec = FeatureSpec.parse(FEATURES)
    axes = [
        signal_from_spec(NORMAL, seed=11, horizon=600.0),
        signal_from_spec(NORMAL, seed=12, horizon=600.0),
        signal_from_spec({"base": 1.0, "noise": 0.01}, seed=13, horizon=600.0),
    ]
    rows = []
    for k in range(800):
        t = (k * WINDOW + np.arange(WINDOW)) / RATE
        window = np.stack([[axis(float(s)) for s in t] for axis in axes], axis=1)
        rows.append(features(window, spec, RATE))
    fitted = train(np.array(rows), components=2, fpr=1e-3)
    export_onnx(
        fitted.model,
        path,
        {"name": "bearing", "version": "1", "threshold": str(fitted.calibration.threshold * 3)},
    )


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "bearing.onnx"
    normal_model(path)
    return path


def test_the_defect_tone_is_caught_from_fifo_windows_and_only_while_present(
    tmp_path: Path, model: Path
) -> None:
    text = SCENARIO.format(state=tmp_path / "state", model=model)
    scenario = parse_scenario(text, "vibration.toml", overrides={})
    clock = VirtualClock()
    t0 = clock.monotonic()
    hardware = SimulatedHardware(scenario, clock)
    runtime = Runtime(scenario.config, hardware=hardware.hardware, clock=clock, drive_clock=True)
    try:
        runtime.start(until=t0 + 120.0)
        assert runtime.sampling_done(timeout=60)
        assert runtime.recorder.flush(timeout=10)
        bodies: list[dict[str, Any]] = [e.body() for e in runtime.outbox.claim(-1)]
    finally:
        runtime.close(timeout=1)
    alarms = sorted((b["seq"], b["state"], b["score"]) for b in bodies if b["kind"] == "anomaly")
    assert [state for _, state, _ in alarms] == ["active", "clear"], alarms
    health = [b for b in bodies if b["kind"] == "health"]
    assert health == []  # the FIFO never overflowed: each poll takes its window
    # When: the alarm rises within a few windows of the fault's start, clears after its end.
    times = {b["state"]: b["ts"] for b in bodies if b["kind"] == "anomaly"}
    assert times["active"] > "2026-01-01T00:01:00" and times["active"] < "2026-01-01T00:01:05"
    assert times["clear"] > "2026-01-01T00:01:30" and times["clear"] < "2026-01-01T00:01:35"
