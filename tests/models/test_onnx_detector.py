"""The ``onnx`` detector: windows or features in, a model's score out, an alarm on the score.

Every model is a real .onnx file written into a tmp directory with the ``onnx`` package and run
by onnxruntime or the numpy backend. The main one is a linear "reconstruction error" scorer:
``score = sum((x - x @ W) ** 2)``, with ``W`` a projection, so the expected score of any window
can be worked out by hand.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import models
from models import DETECTOR_TYPES, Detection, Detector, ModelError, ParamsError
from models.onnx_detector import ModelMismatch, OnnxDetector, OnnxParams

BACKENDS = ("onnxruntime", "numpy")
# Features (mean, std) projected onto the std axis: the error is mean ** 2, so a window whose
# mean drifts beyond 0.5 scores above 0.25.
KEEP_STD = np.array([[0.0, 0.0], [0.0, 1.0]], np.float32)
METADATA = {"name": "drift", "version": "7", "threshold": "0.25"}


def write_model(
    path: Path,
    weights: np.ndarray,
    metadata: dict[str, str] | None = None,
    *,
    shape: list[Any] | None = None,
) -> Path:
    """x [1, k] (or ``shape``) -> score [1, 1] = ReduceSumSquare(x - x @ weights)."""
    k = weights.shape[0]
    shape = [1, k] if shape is None else shape
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["reconstruction"]),
        helper.make_node("Sub", ["flat", "reconstruction"], ["error"]),
        helper.make_node("ReduceSumSquare", ["error", "axes"], ["score"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "reconstruction",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        [
            numpy_helper.from_array(weights.astype(np.float32), "w"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
            numpy_helper.from_array(np.array([1, k], np.int64), "flat_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    helper.set_model_props(model, METADATA if metadata is None else metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def write_selector(path: Path, index: int, shape: list[Any], n: int) -> Path:
    """x (``shape``, ``n`` values) -> score [1, 1] = the flattened input's element ``index``,
    plus a second output ``both`` [1, 2] = (element, -element)."""
    pick = np.zeros((n, 1), np.float32)
    pick[index, 0] = 1.0
    nodes = [
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "pick"], ["score"]),
        helper.make_node("Mul", ["score", "minus"], ["negated"]),
        helper.make_node("Concat", ["score", "negated"], ["both"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "selector",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("both", TensorProto.FLOAT, [1, 2]),
        ],
        [
            numpy_helper.from_array(pick, "pick"),
            numpy_helper.from_array(np.array([-1.0], np.float32), "minus"),
            numpy_helper.from_array(np.array([1, n], np.int64), "flat_shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    helper.set_model_props(model, {"threshold": "0.5"})
    onnx.save(model, path)
    return path


@pytest.fixture
def drift(tmp_path: Path) -> Path:
    return write_model(tmp_path / "drift.onnx", KEEP_STD)


def square_wave(n: int, level: float = 0.0) -> list[float]:
    """Alternating +1 / -1 around ``level``: mean ``level``, std 1 over any even count."""
    return [level + (1.0 if i % 2 else -1.0) for i in range(n)]


def feed(detector: OnnxDetector, values: list[Any], start: int = 0) -> list[tuple[int, Detection]]:
    """Observe ``values`` at t = start, start + 1, ...; return (t, detection) pairs."""
    found = []
    for i, value in enumerate(values, start=start):
        detection = detector.observe(float(i), value)
        if detection is not None:
            found.append((i, detection))
    return found


# --- firing and clearing ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_fires_once_when_windows_drift_and_clears_after(drift: Path, backend: str) -> None:
    detector = OnnxDetector(
        OnnxParams(model=str(drift), window=8, features="mean,std", backend=backend)
    )
    assert detector.model.backend == backend
    series = square_wave(16) + square_wave(24, level=2.0) + square_wave(16)
    found = feed(detector, series)
    assert [t for t, _ in found] == [23, 47]
    active, clear = found[0][1], found[1][1]
    assert active.kind == clear.kind == "anomaly"
    assert (active.severity, clear.severity) == ("warning", "info")
    assert active.value == pytest.approx(4.0)  # mean 2 -> error 2 ** 2
    assert active.fields == {
        "score": pytest.approx(4.0),
        "threshold": 0.25,
        "model": "drift",
        "model_version": "7",
        "state": "active",
        "duration": 0.0,
    }
    assert clear.fields["state"] == "clear"
    assert clear.fields["score"] == pytest.approx(0.0, abs=1e-6)
    assert clear.fields["duration"] == pytest.approx(24.0)  # fired at t=23, cleared at t=47
    assert detector.state == "normal"
    assert detector.score == pytest.approx(0.0, abs=1e-6)


def test_the_score_is_known_before_any_detection_and_none_before_a_full_window(
    drift: Path,
) -> None:
    detector = OnnxDetector(OnnxParams(model=str(drift), window=4, features="mean,std"))
    assert detector.score is None
    feed(detector, [0.1, 0.2, 0.3])
    assert detector.score is None
    feed(detector, [0.4], start=3)
    assert detector.score == pytest.approx(0.25**2)


def test_hysteresis_and_min_duration_follow_the_alarm(drift: Path) -> None:
    params = OnnxParams(
        model=str(drift), window=2, features="mean,std", hysteresis=0.2, min_duration=3.0
    )
    detector = OnnxDetector(params)
    # Windows of two equal readings v score v ** 2; they end at t = 1, 3, 5, ...
    levels = [0.0, 1.0, 1.0, 1.0, 0.3, 0.0]  # scores 0, 1, 1, 1, 0.09, 0
    found = feed(detector, [v for v in levels for _ in range(2)])
    # Out from t=3, active once out for 3 s (t=7); 0.09 is under the threshold but not by
    # the hysteresis, so only the last window clears it.
    assert [(t, d.fields["state"]) for t, d in found] == [(7, "active"), (11, "clear")]
    assert found[0][1].fields["duration"] == pytest.approx(4.0)
    assert found[1][1].fields["duration"] == pytest.approx(4.0)


def test_critical_severity_and_a_model_without_name_or_version(tmp_path: Path) -> None:
    path = write_model(tmp_path / "bare-model.onnx", KEEP_STD, {"threshold": "0.25"})
    params = OnnxParams(model=str(path), window=2, features="mean,std", severity="critical")
    found = feed(OnnxDetector(params), [4.0, 4.0])
    assert len(found) == 1
    detection = found[0][1]
    assert detection.severity == "critical"
    assert detection.fields["model"] == "bare-model"
    assert detection.fields["model_version"] is None


def test_raw_windows_feed_the_model_directly(tmp_path: Path) -> None:
    # Projection onto the constant vector: the error is the window's sum of squared deviations.
    n = 6
    path = write_model(tmp_path / "raw.onnx", np.full((n, n), 1.0 / n), METADATA)
    detector = OnnxDetector(OnnxParams(model=str(path), window=n, hop=3))
    found = feed(detector, [5.0] * 9 + [5.0, 6.0, 5.0] + [5.0] * 6)
    assert [(t, d.fields["state"]) for t, d in found] == [(11, "active"), (17, "clear")]
    # One 6 among five 5s: sum of squared deviations from the mean (5 1/6) is 5/6.
    assert found[0][1].fields["score"] == pytest.approx(5 / 6, rel=1e-6)


def test_non_finite_readings_are_ignored(drift: Path) -> None:
    detector = OnnxDetector(OnnxParams(model=str(drift), window=2, features="mean,std"))
    assert detector.observe(0.0, 3.0) is None
    assert detector.observe(1.0, float("nan")) is None
    assert detector.observe(2.0, float("inf")) is None
    assert detector.score is None  # the NaN and inf never entered the window
    fired = detector.observe(3.0, 3.0)
    assert fired is not None
    assert fired.fields["score"] == pytest.approx(9.0)


def test_a_time_that_steps_back_starts_a_new_window_instead_of_being_refused(
    drift: Path,
) -> None:
    detector = OnnxDetector(OnnxParams(model=str(drift), window=2, features="mean,std"))
    assert detector.observe(10.0, 3.0) is None
    assert detector.observe(5.0, 3.0) is None  # a window is in time order: this one starts anew
    assert detector.score is None
    fired = detector.observe(5.0, 3.0)  # the same time again is in order
    assert fired is not None and fired.fields["score"] == pytest.approx(9.0)


# --- threshold ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("threshold", "fires"), [(None, True), (3.0, True), (5.0, False)])
def test_the_threshold_comes_from_metadata_unless_overridden(
    drift: Path, threshold: float | None, fires: bool
) -> None:
    params = OnnxParams(model=str(drift), window=2, features="mean,std", threshold=threshold)
    detector = OnnxDetector(params)
    assert detector.threshold == (0.25 if threshold is None else threshold)
    found = feed(detector, [2.0, 2.0])  # score 4
    assert bool(found) is fires
    if fires:
        assert found[0][1].fields["threshold"] == detector.threshold


def test_a_model_without_a_threshold_is_refused_unless_the_config_sets_one(
    tmp_path: Path,
) -> None:
    path = write_model(tmp_path / "uncalibrated.onnx", KEEP_STD, {"name": "u"})
    with pytest.raises(
        ModelMismatch, match=r"uncalibrated\.onnx has no 'threshold'.*set threshold"
    ):
        OnnxDetector(OnnxParams(model=str(path), window=2, features="mean,std"))
    built = OnnxDetector(OnnxParams(model=str(path), window=2, features="mean,std", threshold=1.0))
    assert built.threshold == 1.0


@pytest.mark.parametrize("text", ["high", "nan", "inf", ""])
def test_a_threshold_in_metadata_that_is_not_a_finite_number_is_refused(
    tmp_path: Path, text: str
) -> None:
    path = write_model(tmp_path / "odd.onnx", KEEP_STD, {"threshold": text})
    with pytest.raises(ModelMismatch, match="not a finite number"):
        OnnxDetector(OnnxParams(model=str(path), window=2, features="mean,std"))


# --- shapes and names, refused at build ----------------------------------------------------------


def test_an_input_shape_the_features_do_not_fill_is_refused_naming_both(tmp_path: Path) -> None:
    path = write_model(tmp_path / "three.onnx", np.eye(3, dtype=np.float32))
    with pytest.raises(ModelMismatch) as info:
        OnnxDetector(OnnxParams(model=str(path), window=8, features="mean,std"))
    message = str(info.value)
    assert "'x' of three.onnx has shape [1, 3]" in message
    assert "features 'mean,std': 2 features = 2 values (shape [1, 2])" in message
    assert isinstance(info.value, ModelError)
    assert isinstance(info.value, ValueError)


def test_a_raw_window_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    path = write_model(tmp_path / "eight.onnx", np.eye(8, dtype=np.float32))
    with pytest.raises(ModelMismatch, match=r"raw window: 4 readings x width 3 = 12 values"):
        OnnxDetector(OnnxParams(model=str(path), window=4, width=3))
    assert OnnxDetector(OnnxParams(model=str(path), window=8)).observe(0.0, 1.0) is None


@pytest.mark.parametrize(
    ("shape", "ok"),
    [
        (["batch", 4], True),
        ([None, 4], True),
        ([1, 2, 2], True),
        ([1, "n"], True),
        ([1, 2, "n"], True),
        ([2, 4], False),  # a batch of two cannot be filled from one window
        ([4], False),  # no batch dimension
        ([1, "n", "m"], False),  # two free dimensions: no single reading of them
        ([1, 3, "n"], False),  # 4 values do not divide into rows of 3
    ],
)
def test_input_shapes_with_a_batch_dimension_and_one_free_dimension_fit(
    tmp_path: Path, shape: list[Any], ok: bool
) -> None:
    path = write_model(tmp_path / "shaped.onnx", np.zeros((4, 4), np.float32), shape=shape)
    params = OnnxParams(model=str(path), window=4)
    if not ok:
        with pytest.raises(ModelMismatch, match="the model needs a batch dimension of 1"):
            OnnxDetector(params)
        return
    detector = OnnxDetector(params)
    found = feed(detector, [0.0, 0.0, 1.0, 0.0])
    assert found[0][1].fields["score"] == pytest.approx(1.0)


def test_unknown_input_or_output_names_are_refused_listing_the_real_ones(tmp_path: Path) -> None:
    path = write_selector(tmp_path / "sel.onnx", 0, [1, 2], 2)
    with pytest.raises(ModelMismatch, match=r"no input named 'signal'; its inputs are: x \("):
        OnnxDetector(OnnxParams(model=str(path), window=2, input="signal"))
    with pytest.raises(ModelMismatch, match=r"no output named 'loss'; its outputs are: score"):
        OnnxDetector(OnnxParams(model=str(path), window=2, output="loss"))
    assert OnnxDetector(OnnxParams(model=str(path), window=2, input="x", output="score"))


def test_a_multi_element_output_is_reduced_with_max(tmp_path: Path) -> None:
    path = write_selector(tmp_path / "sel.onnx", 1, [1, 2], 2)
    # "both" is (x[1], -x[1]): its max is |x[1]| whichever the sign.
    detector = OnnxDetector(OnnxParams(model=str(path), window=2, output="both"))
    found = feed(detector, [0.0, -3.0])
    assert found[0][1].fields["score"] == pytest.approx(3.0)
    first = OnnxDetector(OnnxParams(model=str(path), window=2))  # first output: x[1] itself
    assert feed(first, [0.0, -3.0]) == []
    assert first.score == pytest.approx(-3.0)


def test_a_model_with_two_inputs_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["score"])],
        "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    helper.set_model_props(model, {"threshold": "1"})
    onnx.save(model, tmp_path / "two.onnx")
    with pytest.raises(ModelMismatch, match=r"needs 2 inputs .*feeds exactly one"):
        OnnxDetector(OnnxParams(model=str(tmp_path / "two.onnx"), window=2))


def test_a_missing_model_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(models.ModelNotFoundError, match="no model file"):
        OnnxDetector(OnnxParams(model=str(tmp_path / "gone.onnx"), window=2))


# --- backends ----------------------------------------------------------------------------------


def noisy_series(seed: int, n: int = 600) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, n)
    x[200:260] += 1.5  # a drift the model scores high
    x[400:410] += 4.0
    return x


@pytest.mark.parametrize("features", ["mean,std", None])
def test_both_backends_give_the_same_detections(tmp_path: Path, features: str | None) -> None:
    if features is None:
        window = 16
        path = write_model(tmp_path / "raw.onnx", np.full((window, window), 1 / window), METADATA)
        threshold: float | None = 40.0
    else:
        window, path, threshold = 16, write_model(tmp_path / "drift.onnx", KEEP_STD), None
    x = noisy_series(3)
    runs = []
    for backend in BACKENDS:
        params = OnnxParams(
            model=str(path),
            window=window,
            hop=4,
            features=features,
            backend=backend,
            threshold=threshold,
        )
        runs.append(feed(OnnxDetector(params), list(x)))
    ort_run, numpy_run = runs
    assert len(ort_run) >= 2
    assert [(t, d.fields["state"]) for t, d in ort_run] == [
        (t, d.fields["state"]) for t, d in numpy_run
    ]
    for (_, a), (_, b) in zip(ort_run, numpy_run, strict=True):
        assert a.fields["score"] == pytest.approx(b.fields["score"], rel=1e-5, abs=1e-5)


def test_auto_runs_a_small_model_on_numpy(drift: Path) -> None:
    detector = OnnxDetector(OnnxParams(model=str(drift), window=2, features="mean,std"))
    assert detector.model.backend == "numpy"


def test_the_numpy_backend_never_imports_onnxruntime(drift: Path) -> None:
    code = (
        "import sys; from models import DETECTOR_TYPES; "
        "entry = DETECTOR_TYPES['onnx']; "
        f"d = entry.build(entry.params(model={str(drift)!r}, window=2, features='mean,std', "
        "backend='numpy')); "
        "d.observe(0.0, 2.0); print(d.observe(1.0, 2.0).fields['score']); "
        "print('onnxruntime' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    assert out.stdout.split() == ["4.0", "False"]


# --- vectors -----------------------------------------------------------------------------------


def test_raw_vector_windows_are_fed_reading_by_reading(tmp_path: Path) -> None:
    # Element 5 of the flattened [1, 4, 3] input is reading 1's third axis (z).
    path = write_selector(tmp_path / "z1.onnx", 5, [1, 4, 3], 12)
    detector = OnnxDetector(OnnxParams(model=str(path), window=4, width=3))
    readings = [(0.0, 0.0, 0.0), (0.1, 0.2, 9.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)]
    found = feed(detector, readings)
    assert len(found) == 1
    assert found[0][1].fields["score"] == pytest.approx(9.0)


def test_vector_features_fire_on_one_axis(tmp_path: Path) -> None:
    # Features rms[x], rms[y], rms[z]: the model keeps x and y, so the error is rms[z] ** 2.
    keep_xy = np.diag([1.0, 1.0, 0.0]).astype(np.float32)
    path = write_model(tmp_path / "z.onnx", keep_xy, {"threshold": "1.0"})
    detector = OnnxDetector(OnnxParams(model=str(path), window=4, width=3, features="rms"))
    quiet = [(3.0, -3.0, 0.5)] * 4
    shaking = [(3.0, -3.0, 2.0)] * 4
    found = feed(detector, quiet + shaking + quiet)
    assert [(t, d.fields["state"]) for t, d in found] == [(7, "active"), (11, "clear")]
    assert found[0][1].fields["score"] == pytest.approx(4.0)


def test_readings_of_the_wrong_width_are_refused(tmp_path: Path, drift: Path) -> None:
    keep_xy = np.diag([1.0, 1.0, 0.0]).astype(np.float32)
    vectors = OnnxDetector(
        OnnxParams(
            model=str(write_model(tmp_path / "z.onnx", keep_xy)), window=4, width=3, features="rms"
        )
    )
    with pytest.raises(ValueError, match=r"expected 3 numbers per reading \(width 3\)"):
        vectors.observe(0.0, 1.0)
    with pytest.raises(ValueError, match="expected 3 numbers"):
        vectors.observe(0.0, (1.0, 2.0))
    scalars = OnnxDetector(OnnxParams(model=str(drift), window=2, features="mean,std"))
    with pytest.raises(ValueError, match=r"one number per reading \(width 1\)"):
        scalars.observe(0.0, (1.0,))


# --- blocks ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def block_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("blocks")
    return {
        1: write_model(root / "scalar.onnx", KEEP_STD),
        3: write_model(
            root / "vector.onnx", np.diag([1.0, 1.0, 0.0, 1.0, 1.0, 0.0]), {"threshold": "0.5"}
        ),
    }


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    width=st.sampled_from([1, 3]),
    window=st.integers(2, 8),
    hop_fraction=st.floats(0.0, 1.0),
    cuts=st.lists(st.integers(0, 120), max_size=8),
    seed=st.integers(0, 2**16),
    gaps=st.lists(st.integers(0, 119), max_size=3),
)
def test_observe_block_equals_observing_one_by_one(
    block_models: dict[int, Path],
    width: int,
    window: int,
    hop_fraction: float,
    cuts: list[int],
    seed: int,
    gaps: list[int],
) -> None:
    hop = max(1, round(window * hop_fraction))
    features = "mean,std" if width == 1 else "mean,peak"
    params = OnnxParams(
        model=str(block_models[width]),
        window=window,
        hop=hop,
        features=features,
        width=width,
        backend="numpy",
    )
    rng = np.random.default_rng(seed)
    n = 120
    times = np.cumsum(rng.uniform(0.01, 1.0, n))
    shape = (n,) if width == 1 else (n, width)
    samples = rng.normal(0, 1, shape) + np.repeat(rng.choice([0.0, 3.0], n // 10), 10).reshape(
        (n,) + (1,) * (len(shape) - 1)
    )
    for gap in gaps:  # non-finite readings are skipped either way
        samples[gap] = np.nan

    one_by_one = OnnxDetector(params)
    expected = []
    for t, sample in zip(times, samples, strict=True):
        value = float(sample) if width == 1 else tuple(float(v) for v in sample)
        detection = one_by_one.observe(float(t), value)
        if detection is not None:
            expected.append(detection)

    in_blocks = OnnxDetector(params)
    got = []
    bounds = [0, *sorted(cuts), n]
    for start, stop in itertools.pairwise(bounds):
        got.extend(in_blocks.observe_block(times[start:stop], samples[start:stop]))
    assert got == expected
    assert in_blocks.score == one_by_one.score or (
        in_blocks.score is not None
        and one_by_one.score is not None
        and np.isnan(in_blocks.score)
        and np.isnan(one_by_one.score)
    )


def test_observe_block_accepts_an_empty_block_and_a_column_of_scalars(drift: Path) -> None:
    detector = OnnxDetector(OnnxParams(model=str(drift), window=2, features="mean,std"))
    assert detector.observe_block([], []) == []
    found = detector.observe_block([0.0, 1.0], [[2.0], [2.0]])
    assert [d.fields["state"] for d in found] == ["active"]


# --- params, registry, runtime cost --------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hop": 9}, r"hop \(9\) must not exceed window \(8\)"),
        ({"hop": 0}, "hop must be at least 1"),
        ({"window": 0}, "window must be at least 1"),
        ({"features": "rms,krutosis"}, "did you mean 'kurtosis'"),
        ({"features": "band:80-100", "rate": 100.0}, "Nyquist"),
        ({"rate": 0.0}, "rate must be positive"),
        ({"width": 0}, "width must be at least 1"),
        ({"hysteresis": -1.0}, "hysteresis must be at least 0"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"model": " "}, "model must name an .onnx file"),
    ],
)
def test_bad_params_are_refused_by_name(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"model": "m.onnx", "window": 8}
    with pytest.raises(ParamsError, match=message):
        OnnxParams(**{**base, **kwargs})


def test_params_need_only_the_model_and_the_window() -> None:
    params = OnnxParams(model="m.onnx", window=64)
    assert (params.backend, params.hop, params.features, params.width) == ("auto", None, None, 1)
    assert params.feature_spec() is None
    assert str(
        OnnxParams(model="m.onnx", window=64, features="rms, band:80-100").feature_spec()
    ) == ("rms,band:80-100")


def test_the_registry_builds_an_onnx_detector(drift: Path) -> None:
    entry = DETECTOR_TYPES["onnx"]
    assert entry.params is OnnxParams
    detector = entry.build(OnnxParams(model=str(drift), window=2, features="mean,std"))
    assert isinstance(detector, OnnxDetector)
    assert isinstance(detector, Detector)


def test_every_window_is_written_into_one_preallocated_input(
    drift: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = OnnxDetector(OnnxParams(model=str(drift), window=4, hop=1, features="mean,std"))
    bound: list[Any] = []
    runs = [0]
    real_bind = detector.model.bind

    def spy(inputs: dict[str, np.ndarray]) -> Any:
        bound.append(inputs["x"])
        run = real_bind(inputs)

        def counted() -> dict[str, np.ndarray]:
            runs[0] += 1
            return run()

        return counted

    monkeypatch.setattr(detector.model, "bind", spy)
    feed(detector, [float(i) for i in range(10)])
    assert runs[0] == 7  # every window ran through the one bound input
    assert len(bound) == 1 and bound[0].shape == (1, 2)
