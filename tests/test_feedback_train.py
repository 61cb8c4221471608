"""``edge model train --labels``: a device's stored verdict windows as training labels.

The feedback file is made as a device makes it: an hour recorded by ``edge simulate`` is fed
through a watched zscore detector, each alarm goes into a real outbox and the feedback file,
and each gets the verdict an operator would give from the scenario's labels (the MQTT path
of those verdicts is tests/test_feedback.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config.feedback import FeedbackConfig
from edge.events import Draft
from edge.modeltools.series import ModelCommandError
from edge.modeltools.train import train
from edge.modeltools.verdicts import verdict_windows
from edge.outbox.store import Outbox
from edge.runtime.feedback import Feedback, Watched
from edge.sim.recording import read_recording
from models import load
from models.features import FeatureSpec
from models.rules import ZScoreDetector, ZScoreParams

SCENARIO = """
[device]
id = "fb-rec"
[uplink]
broker = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
telemetry = true
[simulation]
duration = 3600.0
[simulation.signals.probe]
base = 22.0
noise = 0.3
events = [{ rate_per_hour = 20.0, amplitude = 1.2, duration = 4.0, shape = "decay" }]
[[simulation.injections]]
kind = "anomaly"
at = 900.0
until = 1000.0
label = "coolant pump stalled"
sensor = "probe"
signal = { base = 6.0 }
[[simulation.injections]]
kind = "anomaly"
at = 2400.0
until = 2500.0
label = "fan belt slipping"
sensor = "probe"
signal = { base = 3.0 }
"""
WINDOW, HOP, STORED = 10, 5, 60


def labelled_feedback(recording: Path, state: Path) -> tuple[int, int]:
    """Feed the recording through a watched zscore detector, store its alarms as the runtime
    does, and label them; (false alarms, true alarms) labelled."""
    data = read_recording(recording)
    outbox = Outbox.open(state, "fb-rec")
    feedback = Feedback(FeedbackConfig(enabled=True, window=STORED), state,
                        stream=outbox.stream, post=lambda work: work(),
                        health=lambda sensor, fields: None, wall=lambda: 1.8e9,
                        last_seq=lambda: outbox.last_seq)  # fmt: skip
    watched = feedback.watch("probe-z", "probe", None, ZScoreDetector(ZScoreParams(window=120)))
    assert isinstance(watched, Watched)
    raised: list[tuple[int, float]] = []
    try:
        for reading in data.readings_of("probe"):
            found = watched.observe(reading.t, float(reading.value))
            if found is None or found.fields["state"] != "active":
                continue
            draft = Draft("probe", found.kind, found.severity, found.value, reading.t, 1.8e9,
                          True, {"detector": "probe-z", **found.fields})  # fmt: skip
            event = outbox.append(draft)
            feedback.committed([event])
            raised.append((event.seq, reading.t))
        false = true = 0
        for label in data.labels:  # the alarm that caught each anomaly: true
            seq = next(s for s, t in raised if label.start <= t <= label.end)
            feedback.label({"seq": seq, "verdict": "true_alarm"})
            true += 1
        for seq, t in raised:  # every alarm outside the anomalies: false
            if not any(label.start <= t <= label.end + 30 for label in data.labels):
                feedback.label({"seq": seq, "verdict": "false_alarm"})
                false += 1
    finally:
        feedback.close()
        outbox.close()
    return false, true


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int, int]:
    tmp = tmp_path_factory.mktemp("feedback-train")
    (tmp / "probe.toml").write_text(SCENARIO)
    record = tmp / "probe.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "edge.cli", "simulate", "--scenario", str(tmp / "probe.toml"),
         "--speed", "max", "--quiet", "--seed", "1", "--record", str(record)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    false, true = labelled_feedback(record, tmp / "state")
    return record, tmp / "state" / "feedback.sqlite", false, true


def test_false_alarms_are_fitted_as_normal_and_true_alarms_scored(
    recorded: tuple[Path, Path, int, int], tmp_path: Path
) -> None:
    record, labels, false, true = recorded
    assert false > 0 and true == 2
    options = {"sensor": "probe", "window": WINDOW, "hop": HOP, "features": "mean,std"}
    plain = train(record, out=tmp_path / "plain.onnx", **options)  # type: ignore[arg-type]
    taught = train(record, out=tmp_path / "taught.onnx", labels=labels, **options)  # type: ignore[arg-type]
    assert plain.feedback is None and taught.feedback is not None
    per_window = (STORED - WINDOW) // HOP + 1  # model windows in one stored window
    assert taught.feedback == {
        "verdicts": false + true,
        "false_alarm_windows": false * per_window,
        "anomalies": true,
        "anomalies_caught": taught.feedback["anomalies_caught"],
        "skipped": 0,
    }
    assert taught.windows == plain.windows + false * per_window
    assert taught.fitted == plain.fitted + false * per_window  # fitted, never held out
    assert taught.held_out == plain.held_out
    # What the written model itself scores for the true alarms' last windows.
    model = load(tmp_path / "taught.onnx", backend="onnxruntime")
    rows = verdict_windows(labels, sensor="probe", quantity=None, window=WINDOW, hop=HOP,
                           spec=FeatureSpec.parse("mean,std"), rate=1.0).anomalous  # fmt: skip
    scores = [float(next(iter(model.run({"features": row[None, :]}).values()))[0, 0])
              for row in rows]  # fmt: skip
    above = sum(score > taught.metadata.threshold for score in scores)
    assert taught.feedback["anomalies_caught"] == above == true  # both steps stand out
    assert "true alarms and misses score above the threshold" in taught.summary()
    assert taught.metadata.training["feedback"]["source"] == "feedback.sqlite"


def test_labels_that_are_no_feedback_file_are_bad_input(
    recorded: tuple[Path, Path, int, int], tmp_path: Path
) -> None:
    record = recorded[0]
    with pytest.raises(ModelCommandError, match="is no feedback file"):
        train(record, sensor="probe", window=WINDOW, features="std", out=tmp_path / "m.onnx",
              labels=record)  # fmt: skip
