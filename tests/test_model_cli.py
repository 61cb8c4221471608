"""`edge model` on recordings from `edge simulate`: a recording round-trips into training
and evaluation, through the real commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.modeltools.info import model_file
from edge.modeltools.series import ModelCommandError
from models.shipped import DIRECTORY as SHIPPED_DIR
from models.shipped import SHIPPED

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
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


# -- a shipped model by its name, as a config names it --------------------------------------

NOT_A_MODEL = "no such file, and not one of the shipped models (vibration, environment)"


def test_model_info_finds_a_shipped_model_by_its_name(tmp_path: Path) -> None:
    done = subprocess.run([*EDGE, "model", "info", "vibration"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(SHIPPED_DIR / "vibration.onnx")
    assert "weights intact" in done.stdout
    described = edge("model", "info", "environment", "--json")
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["path"] == str(SHIPPED_DIR / "environment.onnx")


def test_model_eval_finds_a_shipped_model_by_its_name(tmp_path: Path) -> None:
    record = tmp_path / "press.jsonl"
    done = edge("simulate", "--scenario", "factory-vibration", "--speed", "max", "--quiet",
                "--duration", "60", "--record", str(record))  # fmt: skip
    assert done.returncode == 0, done.stderr
    evaluated = edge("model", "eval", "vibration", str(record), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["model"] == str(SHIPPED_DIR / "vibration.onnx")
    assert (report["sensor"], report["quantity"]) == ("motor", "accel")
    assert report["windows"] > 0


@pytest.mark.parametrize("verb", [["info"], ["eval"]])
def test_a_name_that_is_neither_a_file_nor_a_shipped_model_exits_2(
    tmp_path: Path, verb: list[str]
) -> None:
    recording = [str(tmp_path / "r.jsonl")] if verb == ["eval"] else []
    done = edge("model", *verb, "vibraton", *recording)
    assert done.returncode == 2
    assert done.stderr == f"error: vibraton: {NOT_A_MODEL}\n"


def test_model_file_resolves_as_a_config_does(tmp_path: Path) -> None:
    assert model_file("vibration") == SHIPPED_DIR / "vibration.onnx"
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(b"")
    assert model_file(mine) == mine and model_file(str(mine)) == mine
    with pytest.raises(ModelCommandError, match=f"^{tmp_path}: not a file, and not one of"):
        model_file(tmp_path)


@given(st.text(max_size=300))
def test_any_other_name_is_one_line_of_bad_input(name: str) -> None:
    if name in SHIPPED or os.path.isfile(name):  # isfile: False for names the OS refuses
        return
    with pytest.raises(ModelCommandError) as refused:
        model_file(name)
    message = str(refused.value)
    assert "\n" not in message and message.endswith("(vibration, environment)")


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback() -> None:
    """`edge model info vibration | head -1`: the pipe closes under the writer."""
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write fails with EPIPE
    try:
        done = subprocess.run(
            [*EDGE, "model", "info", "vibration"], stdout=write, stderr=subprocess.PIPE, text=True
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert done.returncode == 1


def test_a_malformed_model_file_is_bad_input_for_info_and_eval(tmp_path: Path) -> None:
    shipped = SHIPPED_DIR / "vibration.onnx"
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(shipped.read_bytes()[: shipped.stat().st_size // 2])  # a truncated copy
    for args in (["info", str(cut)], ["eval", str(cut), str(tmp_path / "r.jsonl")]):
        done = subprocess.run([*EDGE, "model", *args], capture_output=True, text=True)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and str(cut) in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
