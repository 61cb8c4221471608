"""``edge model train|eval|info`` as library calls, on synthetic recordings written to tmp_path.

The sensor is a vibration probe at 50 Hz: normally a 5 Hz sine in noise; in a labelled anomaly
window it shifts to 20 Hz. A model trained on the normal stretch must catch the shift without
raising any alarm on normal readings, through both backends.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from edge.modeltools.evaluate import evaluate
from edge.modeltools.info import info
from edge.modeltools.series import ModelCommandError
from edge.modeltools.train import TrainReport, train
from models import metadata

RATE = 50.0
FEATURES = "rms,std,kurtosis,band:3-8,band:15-25"


def vibration(
    path: Path,
    seconds: float,
    seed: int,
    anomalies: Sequence[tuple[float, float]] = (),
    *,
    vector: bool = False,
) -> Path:
    """A recording of sensor ``vib`` (and a ``temp`` sensor with two quantities)."""
    rng = np.random.default_rng(seed)
    t = np.round(np.arange(int(seconds * RATE)) / RATE, 6)
    freq = np.full_like(t, 5.0)
    for start, end in anomalies:
        freq[(t >= start) & (t <= end)] = 20.0
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    signal = np.sin(phase) + 0.3 * rng.normal(size=len(t))
    header = {
        "type": "scenario",
        "name": "synthetic",
        "device": "bench",
        "seed": seed,
        "start": "2025-01-01T00:00:00.000Z",
        "duration": seconds,
        "sensors": {
            "vib": {"type": "mpu6050", "unit": "g"},
            "env": {"type": "bme280", "units": {"temperature": "degC", "humidity": "%RH"}},
        },
    }
    lines = [header]
    lines += [
        {
            "type": "label",
            "kind": "anomaly",
            "label": "shift",
            "sensor": "vib",
            "start": a,
            "end": b,
        }
        for a, b in anomalies
    ]
    lines.append(
        {
            "type": "label",
            "kind": "network",
            "label": "outage",
            "sensor": None,
            "start": 1,
            "end": 2,
        }
    )
    for i, (ti, x) in enumerate(zip(t, signal, strict=True)):
        value = [float(x), float(0.5 * x), 1.0] if vector else float(x)
        lines.append({"type": "reading", "t": float(ti), "sensor": "vib", "value": value})
        if i % 50 == 0:
            env = {"temperature": 20.0 + 0.01 * i, "humidity": 40.0}
            lines.append({"type": "reading", "t": float(ti), "sensor": "env", "value": env})
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainReport:
    tmp = tmp_path_factory.mktemp("trained")
    # Normal for 40 minutes but for one labelled shift, which training must leave out.
    recording = vibration(tmp / "train.jsonl", 2400, seed=1, anomalies=[(1000, 1100)])
    return train(
        recording,
        sensor="vib",
        window=50,
        hop=25,
        features=FEATURES,
        out=tmp / "vib.onnx",
        false_alarms_per_day=1.0,
        name="vibration",
        version="7",
        components=2,
    )


def test_train_writes_a_model_with_its_metadata(trained: TrainReport) -> None:
    meta = metadata.read_metadata(trained.path)
    assert meta == trained.metadata
    assert (meta.name, meta.version, meta.sensor, meta.quantity) == ("vibration", "7", "vib", None)
    assert (meta.window, meta.hop, meta.width, meta.rate) == (50, 25, None, pytest.approx(RATE))
    assert meta.features == FEATURES
    assert meta.created.endswith("Z")
    # The labelled shift (100 s at 50 Hz, both ends inclusive) was left out of training.
    assert trained.excluded == 100 * 50 + 1
    assert meta.training["excluded_readings"] == trained.excluded
    assert meta.training["windows"] == trained.windows
    assert meta.calibration["method"] == "exponential tail"
    assert meta.calibration["fpr"] == pytest.approx(25 / (86400 * RATE))
    assert "wrote" in trained.summary() and meta.weights_sha256 in trained.summary()
    assert metadata.verify(trained.path).ok


@pytest.mark.parametrize("backend", ["numpy", "onnxruntime"])
def test_eval_catches_the_shift_without_false_alarms(
    trained: TrainReport, tmp_path: Path, backend: str
) -> None:
    recording = vibration(tmp_path / "eval.jsonl", 900, seed=2, anomalies=[(400, 430)])
    report = evaluate(trained.path, recording, backend=backend)
    assert report.score.labels == 1
    assert report.score.true_positives == 1
    assert report.score.false_positives == 0
    assert report.score.f1 == 1.0
    assert report.score.false_alarms_per_hour == 0.0
    # Caught within two windows (one second each) of the shift's start.
    assert report.score.mean_delay is not None and 0 <= report.score.mean_delay <= 2.0
    states = [alarm.fields["state"] for alarm in report.alarms]
    assert states == ["active", "clear"]  # fires once, clears once
    assert report.windows == len(report.scores) == (900 * 50 - 50) // 25 + 1
    assert "1/1 labels caught" in report.summary()


def test_eval_on_normal_data_raises_nothing(trained: TrainReport, tmp_path: Path) -> None:
    report = evaluate(trained.path, vibration(tmp_path / "n.jsonl", 1200, seed=3))
    assert report.alarms == ()
    assert report.score.precision == 1.0 and report.score.recall == 1.0
    assert float(report.scores.max()) < report.threshold


def test_backends_give_the_same_scores(trained: TrainReport, tmp_path: Path) -> None:
    recording = vibration(tmp_path / "eval.jsonl", 300, seed=4, anomalies=[(100, 110)])
    by_numpy = evaluate(trained.path, recording, backend="numpy")
    by_ort = evaluate(trained.path, recording, backend="onnxruntime")
    np.testing.assert_allclose(by_numpy.scores, by_ort.scores, rtol=1e-5, atol=1e-5)


def test_info_describes_the_model_and_checks_its_weights(
    trained: TrainReport, tmp_path: Path
) -> None:
    good = info(trained.path)
    assert good.weights.ok
    assert good.metadata["name"] == "vibration"
    assert good.inputs == ("features (float32 [1, 5])",)
    assert good.outputs == ("score (float32 [1, 1])",)
    assert "weights intact" in good.summary()
    assert json.loads(json.dumps(good.as_dict()))["weights_ok"] is True

    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(flip_weight_byte(trained.path.read_bytes(), trained.path))
    bad = info(tampered)
    assert not bad.weights.ok
    assert not metadata.verify(tampered).ok
    assert "MODIFIED" in bad.summary()
    assert bad.as_dict()["weights_ok"] is False
    assert bad.weights.expected == good.weights.actual


def flip_weight_byte(data: bytes, path: Path) -> bytes:
    """The file with one byte of the ``residual`` initializer's payload changed."""
    import onnx
    from onnx import numpy_helper

    residual = next(t for t in onnx.load(str(path)).graph.initializer if t.name == "residual")
    payload = numpy_helper.to_array(residual).tobytes()
    at = data.index(payload) + 5
    assert data.count(payload) == 1
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_vector_readings_and_quantities(tmp_path: Path) -> None:
    recording = vibration(tmp_path / "v.jsonl", 400, seed=5, vector=True)
    report = train(
        recording,
        sensor="vib",
        window=50,
        features="rms,band:3-8",
        out=tmp_path / "v.onnx",
        fpr=0.01,
        components=0.9,
    )
    assert report.metadata.width == 3
    assert info(report.path).inputs == ("features (float32 [1, 6])",)

    with pytest.raises(ModelCommandError, match=r"several quantities.*humidity, temperature"):
        train(recording, sensor="env", window=5, features="mean,std", out=tmp_path / "e")
    with pytest.raises(ModelCommandError, match="no quantity 'pressure'"):
        train(
            recording,
            sensor="env",
            quantity="pressure",
            window=5,
            features="mean,std",
            out=tmp_path / "e",
        )
    with pytest.raises(ModelCommandError, match=r"no sensor 'nope'.*env, vib"):
        train(recording, sensor="nope", window=5, features="mean", out=tmp_path / "e")


def test_too_little_data_is_a_clear_error(tmp_path: Path) -> None:
    recording = vibration(tmp_path / "short.jsonl", 2, seed=6)
    with pytest.raises(ModelCommandError, match="too few"):
        train(recording, sensor="vib", window=50, features="rms,std", out=tmp_path / "m")
