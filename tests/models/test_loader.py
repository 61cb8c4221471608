"""``models.load``: backend choice, metadata, input checks and errors, the same for both backends.

Model files are written with the ``onnx`` package into tmp_path. One test runs the numpy backend
in a fresh interpreter where onnxruntime, onnx and protobuf cannot be imported, as on a 32-bit Pi.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import models

BACKENDS = ("numpy", "onnxruntime")
WEIGHTS = np.array([[1.0, -1.0, 0.5], [0.25, 2.0, -0.5]], np.float32)  # (2, 3)
BIAS = np.array([0.5, -0.25], np.float32)
METADATA = {
    "name": "vibration",
    "version": "3",
    "threshold": "0.42",
    "features": json.dumps({"window": 128, "axes": ["x", "y", "z"]}),
    "note": "unicode is fine: µg, °C",
}


def expected_score(x: np.ndarray) -> np.ndarray:
    hidden = np.maximum(x @ WEIGHTS.T + BIAS, 0)
    return (hidden**2).sum(axis=1, keepdims=True)


def write_scorer(path: Path, metadata: dict[str, str] | None = None) -> Path:
    """A small anomaly-scorer-shaped model: x [batch, 3] -> score [batch, 1], hidden [batch, 2]."""
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["pre"], name="dense", transB=1),
        helper.make_node("Relu", ["pre"], ["hidden"], name="relu"),
        helper.make_node("ReduceSumSquare", ["hidden", "axes"], ["score"], name="energy"),
    ]
    graph = helper.make_graph(
        nodes,
        "scorer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1]),
            helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", 2]),
        ],
        [
            numpy_helper.from_array(WEIGHTS, "w"),
            numpy_helper.from_array(BIAS, "b"),
            numpy_helper.from_array(np.array([1], np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    helper.set_model_props(model, metadata or {})
    onnx.save(model, path)
    return path


@pytest.fixture
def scorer(tmp_path: Path) -> Path:
    return write_scorer(tmp_path / "scorer.onnx", METADATA)


X = np.array([[0.1, 0.2, 0.3], [1.0, -1.0, 2.0]], np.float32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loaded_model_describes_itself(scorer: Path, backend: str) -> None:
    model = models.load(scorer, backend=backend)
    assert model.backend == backend
    assert model.path == scorer
    assert model.sha256 == hashlib.sha256(scorer.read_bytes()).hexdigest()
    assert model.metadata == METADATA
    assert model.inputs == (models.TensorSpec("x", "float32", ("batch", 3)),)
    assert model.outputs == (
        models.TensorSpec("score", "float32", ("batch", 1)),
        models.TensorSpec("hidden", "float32", ("batch", 2)),
    )
    assert backend in repr(model)


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_computes_every_output_by_name(scorer: Path, backend: str) -> None:
    outputs = models.load(scorer, backend=backend).run({"x": X})
    assert list(outputs) == ["score", "hidden"]
    assert outputs["score"].dtype == np.float32
    np.testing.assert_allclose(outputs["score"], expected_score(X), rtol=1e-6)
    np.testing.assert_allclose(outputs["hidden"], np.maximum(X @ WEIGHTS.T + BIAS, 0), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bound_run_reads_its_arrays_in_place(scorer: Path, backend: str) -> None:
    model = models.load(scorer, backend=backend)
    window = np.zeros_like(X, dtype=np.float32)
    run = model.bind({"x": window})
    window[...] = X  # written in place after binding, as a detector does
    np.testing.assert_allclose(run()["score"], expected_score(X), rtol=1e-6)
    np.testing.assert_allclose(run()["score"], model.run({"x": X})["score"], rtol=0)
    with pytest.raises(models.ModelInputError, match="exact dtype"):
        model.bind({"x": X.astype(np.float64)})  # a converted copy could not be written in place


def test_auto_runs_a_small_model_on_numpy_even_with_onnxruntime_installed(scorer: Path) -> None:
    for model in (models.load(scorer), models.load(scorer, backend="auto")):
        assert model.backend == "numpy"
        assert model.reason == "auto: small, 3 nodes, 6 multiply-adds a run"
    assert models.load(scorer, backend="onnxruntime").reason == "onnxruntime asked for"


def test_metadata_written_with_onnx_reads_back_with_both_backends(tmp_path: Path) -> None:
    metadata = {f"key{i}": "v" * i for i in range(40)} | {"": "empty key", "empty value": ""}
    path = write_scorer(tmp_path / "meta.onnx", metadata)
    for backend in BACKENDS:
        assert models.load(path, backend=backend).metadata == metadata
    assert models.load(write_scorer(tmp_path / "none.onnx")).metadata == {}


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_cast_within_their_kind(scorer: Path, backend: str) -> None:
    model = models.load(scorer, backend=backend)
    as_float64 = model.run({"x": X.astype(np.float64)})["score"]
    as_list = model.run({"x": X.tolist()})["score"]
    as_int = model.run({"x": np.array([[1, 2, 3]])})["score"]
    assert as_float64.dtype == as_list.dtype == np.float32
    np.testing.assert_allclose(as_float64, expected_score(X), rtol=1e-6)
    np.testing.assert_allclose(as_list, expected_score(X), rtol=1e-6)
    np.testing.assert_allclose(as_int, expected_score(np.array([[1.0, 2.0, 3.0]])), rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, r"needs input 'x'; its inputs are: x \(float32 \[batch, 3\]\)"),
        ({"x": X, "extra": X}, r"no input named 'extra'"),
        ({"X": X}, r"no input named 'X'"),
        ({"x": X[0]}, r"'x' of scorer.onnx has shape \[3\], expected x \(float32 \[batch, 3\]\)"),
        ({"x": X[:, :2]}, r"shape \[2, 2\], expected"),
        ({"x": X[None]}, r"shape \[1, 2, 3\]"),
        ({"x": np.array([["a", "b", "c"]])}, r"'x' of scorer.onnx is float32, got <U1"),
        ({"x": X.astype(np.complex64)}, r"is float32, got complex64"),
    ],
)
def test_wrong_inputs_get_the_same_clear_error_from_both_backends(
    scorer: Path, backend: str, inputs: dict[str, np.ndarray], message: str
) -> None:
    model = models.load(scorer, backend=backend)
    with pytest.raises(models.ModelInputError, match=message) as raised:
        model.run(inputs)
    assert isinstance(raised.value, ValueError)
    assert isinstance(raised.value, models.ModelError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_input_backed_by_an_initializer_is_optional(tmp_path: Path, backend: str) -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "offset"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("offset", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        [numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "offset")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.save(model, tmp_path / "m.onnx")
    loaded = models.load(tmp_path / "m.onnx", backend=backend)
    assert [spec.name for spec in loaded.inputs] == ["x"]
    x = np.zeros(2, np.float32)
    np.testing.assert_array_equal(loaded.run({"x": x})["y"], [1.0, 2.0])
    np.testing.assert_array_equal(loaded.run({"x": x, "offset": x + 5})["y"], [5.0, 5.0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_belong_to_the_caller(tmp_path: Path, backend: str) -> None:
    # Identity of the input and of an initializer: writing into the results must not change
    # the caller's input or the next run's result.
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["same"]), helper.make_node("Identity", ["c"], ["k"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_empty_tensor_value_info("same"), helper.make_empty_tensor_value_info("k")],
        [numpy_helper.from_array(np.array([3.0, 4.0], np.float32), "c")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.save(model, tmp_path / "m.onnx")
    loaded = models.load(tmp_path / "m.onnx", backend=backend)
    x = np.array([1.0, 2.0], np.float32)
    first = loaded.run({"x": x})
    first["same"][:] = 0
    first["k"][:] = 0
    np.testing.assert_array_equal(x, [1.0, 2.0])
    np.testing.assert_array_equal(loaded.run({"x": x})["k"], [3.0, 4.0])


# --- files that are not models ------------------------------------------------------------------


def test_a_valid_graph_onnxruntime_cannot_optimize_still_runs_on_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime 1.32's optimizer folds Transpose(x) into Gemm(transA) and then loses the
    Gemm's output when it is also a graph output (found by the random-graph test); the
    loader runs such a graph unoptimized, with the numpy backend's answers."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"]),
        helper.make_node("Gemm", ["t", "b"], ["gemm"], transA=1, transB=0, alpha=1.0, beta=1.0),
        helper.make_node("Transpose", ["gemm"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [
            helper.make_tensor_value_info("gemm", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("out", TensorProto.FLOAT, None),
        ],
        [numpy_helper.from_array(np.array([[0.5]], np.float32), "b")],
    )
    path = tmp_path / "gemm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)
    x = {"x": np.array([[3.0]], np.float32)}
    with caplog.at_level("WARNING", logger="models.loader"):
        fast = models.load(path, backend="onnxruntime").run(x)
    reference = models.load(path, backend="numpy").run(x)
    assert fast["gemm"].tolist() == fast["out"].tolist() == reference["out"].tolist() == [[1.5]]
    if caplog.records:  # only when this onnxruntime has the bug
        assert "running it unoptimized" in caplog.records[0].getMessage()


@pytest.mark.parametrize("backend", (*BACKENDS, "auto"))
def test_a_missing_file_is_a_model_not_found_error(tmp_path: Path, backend: str) -> None:
    with pytest.raises(models.ModelNotFoundError, match="no model file at") as raised:
        models.load(tmp_path / "absent.onnx", backend=backend)
    assert isinstance(raised.value, FileNotFoundError)


def test_a_directory_is_a_model_file_error(tmp_path: Path) -> None:
    with pytest.raises(models.ModelFileError, match="cannot read model file"):
        models.load(tmp_path)


@pytest.mark.parametrize("backend", (*BACKENDS, "auto"))
@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello, this is a text file\n",
        json.dumps({"model": "vibration"}).encode(),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        bytes(range(256)),
        b"\x08\x07",  # a valid protobuf (ir_version = 7) but no graph
    ],
    ids=["empty", "text", "json", "png", "bytes", "no-graph"],
)
def test_files_that_are_not_onnx_are_model_format_errors(
    tmp_path: Path, backend: str, content: bytes
) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(models.ModelFormatError, match=r"model\.onnx") as raised:
        models.load(path, backend=backend)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_files_are_refused_or_still_whole(
    scorer: Path, tmp_path: Path, backend: str
) -> None:
    """Cut anywhere, a file raises a ModelError, or (cut in the trailing metadata, after the
    graph) loads with the graph intact; cut inside the graph, it always raises."""
    data = scorer.read_bytes()
    graph_end = len(data) - sum(
        len(entry.SerializeToString()) + 2 for entry in onnx.load(scorer).metadata_props
    )
    cut_path = tmp_path / "cut.onnx"
    for cut in range(0, len(data), 7 if backend == "onnxruntime" else 1):
        cut_path.write_bytes(data[:cut])
        try:
            model = models.load(cut_path, backend=backend)
        except models.ModelError:
            continue
        assert cut >= graph_end, f"a file cut at byte {cut} of {len(data)} loaded"
        np.testing.assert_allclose(model.run({"x": X})["score"], expected_score(X), rtol=1e-6)


def test_an_unknown_backend_is_a_params_error(scorer: Path) -> None:
    with pytest.raises(models.ParamsError, match="backend must be one of auto, onnxruntime, numpy"):
        models.load(scorer, backend="tflite")


# --- the numpy backend where onnxruntime and onnx do not exist ----------------------------------

BLOCKED_RUN = """
import sys

# As on 32-bit Raspberry Pi OS: no onnxruntime, no onnx, no protobuf wheel to import.
for name in ("onnxruntime", "onnx", "google", "google.protobuf"):
    sys.modules[name] = None

import json
import numpy as np
import models

x = np.array(json.loads(sys.argv[2]), dtype=np.float32)
model = models.load(sys.argv[1], backend="auto")
outputs = model.run({"x": x})
try:
    models.load(sys.argv[1], backend="onnxruntime")
    refusal = None
except models.BackendUnavailable as exc:
    refusal = str(exc)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("onnx", "onnxruntime", "google")
               and sys.modules[m] is not None)
print(json.dumps({
    "backend": model.backend,
    "metadata": model.metadata,
    "score": outputs["score"].tolist(),
    "dtype": str(outputs["score"].dtype),
    "refusal": refusal,
    "imported": heavy,
}))
"""


def test_numpy_backend_runs_where_onnxruntime_and_onnx_cannot_be_imported(scorer: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKED_RUN,
            str(scorer),
            json.dumps(X.tolist()),
        ],
        capture_output=True,
        text=True,
        cwd=Path(models.__file__).parent.parent,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["backend"] == "numpy"
    assert report["metadata"] == METADATA
    assert report["dtype"] == "float32"
    np.testing.assert_allclose(report["score"], expected_score(X), rtol=1e-6)
    assert "onnxruntime is not installed" in report["refusal"]
    assert report["imported"] == []
