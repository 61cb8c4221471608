"""PCA reconstruction fitting, threshold calibration, ONNX export and the weights' sha256."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import numpy_helper

import models
from models import metadata, training
from models.errors import ParamsError


def normal_features(n: int, seed: int = 0) -> np.ndarray:
    """Six features with structure: two latent causes, one constant feature, noise."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 2))
    mix = np.array([[1.0, 0.5, -2.0, 0.0, 3.0, 0.5], [0.0, 1.0, 1.0, 0.0, -1.0, 0.5]])
    x = latent @ mix + 0.05 * rng.normal(size=(n, 6)) + [10, 0, -5, 7, 100, 0]
    x[:, 3] = 7.0
    return x


def test_pca_scores_normal_low_and_off_subspace_high() -> None:
    x = normal_features(2000)
    model = training.fit_pca(x, components=2)
    assert model.components.shape == (6, 2)
    assert model.explained > 0.99
    assert model.scale[3] == 1.0  # constant in training: unit scale, not a division by 0
    normal = model.score(normal_features(200, seed=1))
    off = normal_features(200, seed=2)
    off[:, 1] += 3.0  # breaks the relation between features
    assert np.median(model.score(off)) > 100 * np.median(normal)


def test_variance_fraction_keeps_the_fewest_components_that_explain_it() -> None:
    x = normal_features(2000)
    assert training.fit_pca(x, 0.9).components.shape[1] == 2
    assert training.fit_pca(x, 0.2).components.shape[1] == 1


@pytest.mark.parametrize("components", [6, 7, -1, 0.0, 1.0, True])
def test_components_that_leave_no_residual_are_refused(components: int | float) -> None:
    with pytest.raises(ParamsError):
        training.fit_pca(normal_features(50), components)


def test_non_finite_features_are_refused() -> None:
    x = normal_features(50)
    x[3, 2] = np.nan
    with pytest.raises(ParamsError, match="NaN"):
        training.fit_pca(x, 2)


@given(
    scores=st.lists(
        st.floats(0, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=3000
    ),
    fpr=st.floats(1e-6, 0.5),
)
def test_calibration_keeps_held_out_false_positives_within_fpr(
    scores: list[float], fpr: float
) -> None:
    calibration = training.calibrate(scores, fpr)
    above = sum(s > calibration.threshold for s in scores)
    assert above == calibration.false_positives
    assert above <= math.floor(fpr * len(scores))
    assert calibration.threshold in scores or calibration.method == "exponential tail"


def test_calibration_is_the_quantile_when_resolvable_and_extrapolates_otherwise() -> None:
    rng = np.random.default_rng(3)
    scores = rng.exponential(2.0, size=100_000)
    resolved = training.calibrate(scores, 1e-3)
    assert resolved.method == "quantile" and resolved.resolved
    assert resolved.threshold == pytest.approx(2.0 * math.log(1e3), rel=0.1)
    # From 2,000 held-out scores, a 1e-6 rate is out of reach empirically: the exponential
    # tail extrapolates to near the true quantile (2 ln 1e6 = 27.6), far past the largest.
    tail = training.calibrate(scores[:2000], 1e-6)
    assert tail.method == "exponential tail" and not tail.resolved
    assert tail.threshold == pytest.approx(2.0 * math.log(1e6), rel=0.15)
    assert tail.threshold > scores[:2000].max()


def test_daily_false_alarms_round_trip() -> None:
    fpr = training.fpr_for_daily_false_alarms(2.0, hop=25, rate=50.0)
    assert fpr == pytest.approx(2.0 * 25 / (86400 * 50))
    assert training.daily_false_alarms(fpr, hop=25, rate=50.0) == pytest.approx(2.0)


@pytest.fixture
def exported(tmp_path: Path) -> tuple[training.TrainedModel, Path]:
    trained = training.train(normal_features(3000), components=2, fpr=1e-2, gap=1)
    assert trained.fitted == 3000 - 750 - 1
    path = tmp_path / "pca.onnx"
    digest = training.export_onnx(trained.model, path, {"name": "pca", "threshold": "1.5"})
    assert digest == metadata.weights_digest({**trained.model.weights(), "axes": np.array([1])})
    return trained, path


def test_export_runs_identically_on_both_backends(
    exported: tuple[training.TrainedModel, Path],
) -> None:
    trained, path = exported
    x = normal_features(64, seed=9).astype(np.float32)
    x[::4, 2] += 3.0  # some anomalous rows, so large scores are compared too
    by_numpy = models.load(path, "numpy")
    by_ort = models.load(path, "onnxruntime")
    for row in x:
        feed = {"features": row.reshape(1, -1)}
        a, b = by_numpy.run(feed)["score"], by_ort.run(feed)["score"]
        assert a.shape == b.shape == (1, 1) and a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a[0], trained.model.score(row.reshape(1, -1)), rtol=1e-5)
    assert by_numpy.metadata["name"] == "pca"
    assert by_numpy.metadata["weights_sha256"] == metadata.verify(path).actual
    assert onnx.load(str(path)).opset_import[0].version == training.OPSET


def test_tampering_with_a_weight_fails_verify(
    exported: tuple[training.TrainedModel, Path], tmp_path: Path
) -> None:
    _, path = exported
    assert metadata.verify(path).ok
    proto = onnx.load(str(path))
    scale = next(t for t in proto.graph.initializer if t.name == "scale")
    raw = bytearray(scale.raw_data)
    raw[0] ^= 0x01
    scale.raw_data = bytes(raw)
    tampered = tmp_path / "tampered.onnx"
    onnx.save(proto, str(tampered))
    check = metadata.verify(tampered)
    assert not check.ok
    assert check.expected == metadata.verify(path).actual
    assert "MODIFIED" in str(check)


def test_weights_digest_ignores_encoding_and_metadata(
    exported: tuple[training.TrainedModel, Path], tmp_path: Path
) -> None:
    """Typed fields instead of raw_data, or a retuned threshold: same weights, same digest."""
    _, path = exported
    proto = onnx.load(str(path))
    for tensor in proto.graph.initializer:
        if tensor.data_type == onnx.TensorProto.FLOAT:
            values = numpy_helper.to_array(tensor).ravel().tolist()
            tensor.ClearField("raw_data")
            tensor.float_data.extend(values)
    for prop in proto.metadata_props:
        if prop.key == "threshold":
            prop.value = "2.5"
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(proto, str(rewritten))
    assert rewritten.read_bytes() != path.read_bytes()
    assert metadata.verify(rewritten).ok


def test_verify_and_numpy_inference_need_neither_onnx_nor_onnxruntime(
    exported: tuple[training.TrainedModel, Path],
) -> None:
    _, path = exported
    script = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("onnx", "onnxruntime", "google"):
            raise ImportError(f"blocked: {{name}}")
sys.meta_path.insert(0, Block())
import numpy as np
import models
from models import metadata
assert metadata.verify({str(path)!r}).ok
model = models.load({str(path)!r})
assert model.backend == "numpy"
print(float(model.run({{"features": np.zeros((1, 6), np.float32)}})["score"][0, 0]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) >= 0


def test_metadata_round_trips_and_names_a_bad_key() -> None:
    meta = metadata.ModelMetadata(
        name="m",
        version="1",
        created="2025-01-01T00:00:00Z",
        input="features [1, 2]",
        features="rms,std",
        window=8,
        hop=4,
        width=None,
        rate=50.0,
        sensor="vib",
        quantity=None,
        threshold=0.25,
        calibration={"fpr": 0.01},
        training={"windows": 3},
        weights_sha256="ab" * 32,
    )
    props = meta.as_props()
    assert all(isinstance(v, str) for v in props.values())
    assert metadata.ModelMetadata.from_props(props) == meta
    with pytest.raises(metadata.MetadataError, match="'window' must be a finite number"):
        metadata.ModelMetadata.from_props({**props, "window": "eight"})
    with pytest.raises(metadata.MetadataError, match="no 'threshold'"):
        metadata.ModelMetadata.from_props({k: v for k, v in props.items() if k != "threshold"})
