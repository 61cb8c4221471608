"""`edge model` on recordings from `edge simulate`: a recording round-trips into training
and evaluation, through the real commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EDGE = [sys.executable, "-m", "edge.cli"]

SCENARIO = """
[device]
id = "pump-01"
[uplink]
broker = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "flow"
type = "i2c.registers"
address = 0x30
register = 0
scale = 0.01
interval = 1.0
[simulation]
duration = 3600.0
[simulation.signals.flow]
base = 200.0
noise = 0.5
harmonics = [{frequency = 0.05, amplitude = 3.0}]
[[simulation.injections]]
kind = "anomaly"
sensor = "flow"
at = 2400.0
until = 2700.0
label = "cavitation"
signal = {harmonics = [{frequency = 0.2, amplitude = 8.0}]}
"""


def edge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGE, *args], capture_output=True, text=True, timeout=120)


def test_a_recording_trains_a_model_that_evaluates_on_another_run(tmp_path: Path) -> None:
    scenario = tmp_path / "pump.toml"
    scenario.write_text(SCENARIO)
    runs = []
    for seed in ("1", "2"):
        record = tmp_path / f"run-{seed}.jsonl"
        done = edge("simulate", "--scenario", str(scenario), "--speed", "max", "--quiet",
                    "--seed", seed, "--record", str(record))  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs.append(record)
    model = tmp_path / "flow.onnx"
    trained = edge("model", "train", str(runs[0]), "--sensor", "flow", "--window", "20",
                   "--hop", "5", "--features", "std,peak_to_peak", "--out", str(model),
                   "--false-alarms-per-day", "1")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert "left out as labelled anomalies" in trained.stdout
    info = edge("model", "info", str(model), "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["metadata"]["sensor"] == "flow"
    for backend in ("onnxruntime", "numpy"):
        evaluated = edge("model", "eval", str(model), str(runs[1]), "--json", "--backend", backend)
        assert evaluated.returncode == 0, evaluated.stderr
        report = json.loads(evaluated.stdout)
        assert report["labels"] == 1 and report["caught"] == 1, report
        assert report["false_alarms"] == 0, report


def test_bad_model_arguments_exit_2_without_a_traceback(tmp_path: Path) -> None:
    done = edge("model", "train", str(tmp_path / "none.jsonl"), "--sensor", "x", "--window",
                "10", "--features", "rms", "--out", str(tmp_path / "m.onnx"),
                "--components", "abc")  # fmt: skip
    assert done.returncode == 2 and "--components" in done.stderr
    assert "Traceback" not in done.stderr
    missing = edge("model", "info", str(tmp_path / "missing.onnx"))
    assert missing.returncode in (1, 2) and "Traceback" not in missing.stderr
