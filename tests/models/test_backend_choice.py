"""``backend="auto"``: the numpy backend for small models, onnxruntime for large ones and for
operators numpy lacks; the same outputs either way.

Model files are real ONNX files: the shipped ones, and others written with the ``onnx``
package into tmp_path.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import models
from edge.modeltools.info import info
from models import backend_choice, training
from models.shipped import SHIPPED, model_path

RNG = np.random.default_rng(7)


def write_graph(
    path: Path,
    nodes: list[onnx.NodeProto],
    inputs: int,
    initializers: dict[str, np.ndarray],
    *,
    batch: int | str = 1,
) -> Path:
    """A graph from ``features`` [batch, inputs] float32 to ``score`` [batch, ?] float32."""
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, inputs])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [batch, None])],
        [numpy_helper.from_array(array, name) for name, array in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.save(model, path)
    return path


def write_projection(path: Path, inputs: int, outputs: int, *, batch: int | str = 1) -> Path:
    """One MatMul by an (inputs, outputs) weight: inputs x outputs multiply-adds a row."""
    weight = (RNG.normal(size=(inputs, outputs)) / inputs).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["features", "weight"], ["score"], name="project")]
    return write_graph(path, nodes, inputs, {"weight": weight}, batch=batch)


def write_deep(path: Path, layers: int, width: int = 8) -> Path:
    """``layers`` dense layers (Gemm, then Relu): two nodes a layer, little arithmetic."""
    initializers: dict[str, np.ndarray] = {}
    nodes, value = [], "features"
    for i in range(layers):
        initializers[f"w{i}"] = (RNG.normal(size=(width, width)) / width).astype(np.float32)
        initializers[f"b{i}"] = RNG.normal(size=width).astype(np.float32)
        out = "score" if i == layers - 1 else f"r{i}"
        nodes += [
            helper.make_node("Gemm", [value, f"w{i}", f"b{i}"], [f"g{i}"], name=f"dense{i}"),
            helper.make_node("Relu", [f"g{i}"], [out], name=f"relu{i}"),
        ]
        value = out
    return write_graph(path, nodes, width, initializers)


def write_pca(path: Path, inputs: int) -> Path:
    """A PCA reconstruction model as ``edge model train`` makes them."""
    t = np.arange(inputs)
    x = 21.0 + np.sin(t / 5.0 + RNG.uniform(0, 6.3, size=(500, 1))) + RNG.normal(size=(500, inputs))
    trained = training.train(x, components=2, fpr=1e-2)
    training.export_onnx(trained.model, path, {"name": "pca", "threshold": "1"})
    return path


def feed_for(model: models.Model, rows: int = 1) -> dict[str, np.ndarray]:
    spec = model.inputs[0]
    assert spec.shape is not None
    shape = [d if isinstance(d, int) else rows for d in spec.shape]
    return {spec.name: RNG.normal(size=shape).astype(np.float32)}


# --- where the line is --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_auto_runs_the_shipped_models_on_numpy(name: str) -> None:
    model = models.load(model_path(name))
    assert model.backend == "numpy"
    assert model.reason.startswith("auto: small, 4 nodes, ")


def test_auto_runs_a_large_model_on_onnxruntime(tmp_path: Path) -> None:
    model = models.load(write_projection(tmp_path / "large.onnx", 1024, 1024))
    assert model.backend == "onnxruntime"
    assert model.reason == "auto: large, 1 node, 1,048,576 multiply-adds a run"


def test_the_multiply_add_line_is_inclusive(tmp_path: Path) -> None:
    at = write_projection(tmp_path / "at.onnx", 1000, 1000)
    past = write_projection(tmp_path / "past.onnx", 1000, 1001)
    assert backend_choice.MAX_MULTIPLY_ADDS == 1000 * 1000
    assert models.load(at).backend == "numpy"
    assert models.load(past).backend == "onnxruntime"


def test_many_nodes_go_to_onnxruntime_however_little_they_compute(tmp_path: Path) -> None:
    layers = backend_choice.MAX_NODES // 2
    assert models.load(write_deep(tmp_path / "at.onnx", layers)).backend == "numpy"
    deep = models.load(write_deep(tmp_path / "deep.onnx", layers + 1))
    assert deep.backend == "onnxruntime"
    assert (
        deep.reason
        == f"auto: large, {2 * layers + 2} nodes, {(layers + 1) * 64} multiply-adds a run"
    )


def test_open_dimensions_count_as_one_row(tmp_path: Path) -> None:
    path = write_projection(tmp_path / "batch.onnx", 1000, 1000, batch="batch")
    model = models.load(path)
    assert model.backend == "numpy"
    assert "1,000,000 multiply-adds" in model.reason


def test_an_operator_numpy_lacks_goes_to_onnxruntime(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Neg", ["features"], ["negated"], name="negate"),
        helper.make_node("Relu", ["negated"], ["score"], name="relu"),
    ]
    path = write_graph(tmp_path / "neg.onnx", nodes, 4, {})
    model = models.load(path)
    assert model.backend == "onnxruntime"
    assert model.reason == (
        "auto: an operator the numpy backend lacks, 2 nodes, 0 multiply-adds a run, "
        "operators the numpy backend lacks: Neg"
    )
    x = np.array([[-1.0, 2.0, -3.0, 0.5]], np.float32)
    np.testing.assert_array_equal(model.run({"features": x})["score"], np.maximum(-x, 0))
    with pytest.raises(models.UnsupportedOperator, match="Neg"):
        models.load(path, backend="numpy")


def test_a_model_numpy_refuses_for_another_reason_goes_to_onnxruntime(tmp_path: Path) -> None:
    path = write_projection(tmp_path / "sparse.onnx", 4, 2)
    proto = onnx.load(path)
    weight = proto.graph.initializer.pop()  # the weight, moved to a sparse initializer
    dense = numpy_helper.to_array(weight)
    rows, cols = np.nonzero(dense)
    values = numpy_helper.from_array(dense[rows, cols].astype(np.float32), "weight")
    indices = numpy_helper.from_array(np.stack([rows, cols], axis=1).astype(np.int64), "")
    proto.graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4, 2]))
    onnx.save(proto, path)
    model = models.load(path)
    assert model.backend == "onnxruntime"
    assert model.reason.startswith("auto: the numpy backend cannot run it (")
    assert "sparse initializers" in model.reason
    x = RNG.normal(size=(1, 4)).astype(np.float32)
    np.testing.assert_allclose(model.run({"features": x})["score"], x @ dense, rtol=1e-6)


def test_model_info_says_which_backend_auto_would_pick(tmp_path: Path) -> None:
    assert info("vibration").backend == "numpy (auto: small, 4 nodes, 144 multiply-adds a run)"
    large = info(write_projection(tmp_path / "large.onnx", 1024, 1024))
    assert large.backend.startswith("onnxruntime (auto: large, ")
    assert large.as_dict()["backend"] == large.backend


# --- the same outputs on either backend ---------------------------------------------------------


def numpy_routed_models(tmp_path: Path) -> list[Path]:
    """Models auto runs on numpy: the shipped ones, trained PCA models, a small MLP, and the
    largest projection inside the line."""
    return [
        *(model_path(name) for name in SHIPPED),
        write_pca(tmp_path / "pca8.onnx", 8),
        write_pca(tmp_path / "pca64.onnx", 64),
        write_deep(tmp_path / "mlp.onnx", 4, width=32),
        write_projection(tmp_path / "projection.onnx", 1000, 1000),
    ]


def test_models_auto_runs_on_numpy_give_onnxruntimes_outputs(tmp_path: Path) -> None:
    for path in numpy_routed_models(tmp_path):
        auto = models.load(path)
        assert auto.backend == "numpy", path.name
        reference = models.load(path, backend="onnxruntime")
        for _ in range(5):
            inputs = feed_for(auto)
            got, want = auto.run(inputs), reference.run(inputs)
            assert got.keys() == want.keys()
            for name in want:
                np.testing.assert_allclose(
                    got[name], want[name], rtol=2e-5, atol=1e-5, err_msg=path.name
                )


# --- onnxruntime stays out of the process ------------------------------------------------------

NO_ONNXRUNTIME = """
import json, sys
import numpy as np
import models
from models import DETECTOR_TYPES

ran = {}
for path in sys.argv[1:]:
    model = models.load(path, backend="auto")
    spec = model.inputs[0]
    x = np.ones([d if isinstance(d, int) else 1 for d in spec.shape], np.float32)
    ran[path] = [model.backend, float(next(iter(model.run({spec.name: x}).values())).ravel()[0])]
kind = DETECTOR_TYPES["onnx"]
detector = kind.build(kind.params(model="vibration", window=80, hop=20, width=3,
                                  features="rms,std,peak,kurtosis"))
for i in range(200):  # 80-reading windows every 20: seven scored
    detector.observe(i * 0.25, (0.01 * (i % 7), -0.02 * (i % 5), 1.0 + 0.01 * (i % 3)))
print(json.dumps({"ran": ran, "detector": detector.model.backend,
                  "onnxruntime": "onnxruntime" in sys.modules}))
"""


def test_auto_never_imports_onnxruntime_for_small_models(tmp_path: Path) -> None:
    paths = [str(model_path(name)) for name in SHIPPED]
    paths.append(str(write_pca(tmp_path / "pca.onnx", 16)))
    done = subprocess.run(
        [sys.executable, "-c", NO_ONNXRUNTIME, *paths],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path.cwd(),
    )
    result = json.loads(done.stdout)
    assert result["onnxruntime"] is False
    assert result["detector"] == "numpy"
    assert [backend for backend, _ in result["ran"].values()] == ["numpy"] * len(paths)


BLOCKED = """
import sys
sys.modules["onnxruntime"] = None  # as on 32-bit Raspberry Pi OS
import models
model = models.load(sys.argv[1], backend="auto")
print(model.backend)
print(model.reason)
"""


def test_without_onnxruntime_a_large_model_runs_on_numpy(tmp_path: Path) -> None:
    path = write_projection(tmp_path / "large.onnx", 1024, 1024)
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == [
        "numpy",
        "auto: onnxruntime is not installed, 1 node, 1,048,576 multiply-adds a run",
    ]
