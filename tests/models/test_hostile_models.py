"""Crafted model files: every one is refused with a ModelError subclass naming the file, the
same subclass from every backend, before anything large is allocated."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import models
from models.onnx_reader import MAX_FIELDS, MAX_ITEMS, parse_model
from models.shapes import MAX_ELEMENTS, check
from tests.models import hostile_models as crafted

BACKENDS = ("numpy", "onnxruntime", "auto")

REFUSED_AT_LOAD: dict[str, tuple[Callable[[Path], Path], type[models.ModelError], str]] = {
    "65 dims": (crafted.too_many_dims, models.ModelTooLarge, "more than 32 dims"),
    "dims [0, 2**62, 2**62]": (crafted.huge_empty_dims, models.ModelTooLarge, "values"),
    "broadcast bomb": (crafted.broadcast_bomb, models.ModelTooLarge, "Add output 'y'"),
    "empty matmul bomb": (crafted.matmul_bomb, models.ModelTooLarge, "MatMul output 'y'"),
    "transposed broadcast bomb": (crafted.transposed_bomb, models.ModelTooLarge, "Add output"),
    "folded ConstantOfShape": (
        lambda p: crafted.folded_bomb(p, "ConstantOfShape"),
        models.ModelTooLarge,
        "ConstantOfShape output 'y' would hold 100,000,000 values",
    ),
    "folded Range": (
        lambda p: crafted.folded_bomb(p, "Range"),
        models.ModelTooLarge,
        "Range output 'y' would hold 100,000,000 values",
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", REFUSED_AT_LOAD)
def test_a_crafted_model_is_refused_at_load_with_the_same_error_by_every_backend(
    tmp_path: Path, case: str, backend: str
) -> None:
    build, error, reason = REFUSED_AT_LOAD[case]
    path = build(tmp_path / "crafted.onnx")
    with pytest.raises(models.ModelError) as refused:
        models.load(path, backend=backend)
    assert type(refused.value) is error
    assert str(path) in str(refused.value)
    assert reason in str(refused.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_broadcast_bomb_fed_at_run_time_is_refused_before_it_is_computed(
    tmp_path: Path, backend: str
) -> None:
    # x [rows, 1] + c [1, 100000]: fine as declared, 10**10 values once fed 100,000 rows.
    path = crafted.run_time_broadcast_bomb(tmp_path / "bomb.onnx", n=100_000)
    model = models.load(path, backend=backend)
    assert model.run({"x": np.zeros((2, 1), np.float32)})["y"].shape == (2, 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(
            models.ModelRunError, match=r"Add output 'y' would hold 10,000,000,000 values"
        ):
            model.run({"x": np.zeros((100_000, 1), np.float32)})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20


@pytest.mark.parametrize("where", ["int64_data", "dims", "ints"])
def test_packed_varints_are_refused_before_they_are_decoded(tmp_path: Path, where: str) -> None:
    """4 MB of one-byte varints: once 4 million Python ints (+122 MB, 1.8 s)."""
    path = crafted.packed_varints(tmp_path / "varints.onnx", where, megabytes=4)
    tracemalloc.start()
    try:
        with pytest.raises(models.ModelFormatError, match=str(path)):
            models.load(path, backend="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, f"{peak / 2**20:.1f} MiB"


def test_a_second_graph_field_is_merged_as_protobuf_merges_it(tmp_path: Path) -> None:
    # onnxruntime merges the parts of a repeated message field; a reader keeping only the
    # last part would check another graph than the one that runs.
    path = crafted.packed_varints(tmp_path / "varints.onnx", "int64_data", megabytes=0)
    graph = parse_model(path.read_bytes()).graph
    assert [n.op_type for n in graph.nodes] == ["Identity"]
    assert [t.name for t in graph.initializers] == ["big"]
    for backend in BACKENDS:
        with pytest.raises(models.ModelFormatError, match="'big' holds 0 values"):
            models.load(path, backend=backend)


def test_a_file_over_max_bytes_is_refused_unread(tmp_path: Path) -> None:
    path = crafted.broadcast_bomb(tmp_path / "big.onnx", n=1_000)
    size = path.stat().st_size
    with pytest.raises(models.ModelTooLarge, match=rf"{path}.*{size:,} bytes.*{size - 1:,}"):
        models.load(path, backend="numpy", max_bytes=size - 1)
    with pytest.raises(models.ModelTooLarge):
        models.load(path, backend="numpy", max_bytes=size - 1)
    models.load(path, backend="numpy", max_bytes=size)  # the limit itself is allowed
    assert models.loader.DEFAULT_MAX_BYTES == 64 << 20


def test_a_file_of_countless_empty_nodes_is_refused_by_the_item_budget(tmp_path: Path) -> None:
    """2 bytes a node would cost ~1 KB of objects each: the budget stops it early."""
    base = crafted.add_model_bytes()
    nodes = crafted.field(1, b"") * (MAX_ITEMS + 10)
    path = tmp_path / "nodes.onnx"
    path.write_bytes(base + crafted.field(7, nodes))
    tracemalloc.start()
    try:
        with pytest.raises(models.ModelTooLarge, match=f"{MAX_ITEMS:,}"):
            models.load(path, backend="numpy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100 << 20


def test_a_file_of_countless_unknown_fields_is_refused_by_the_field_budget(
    tmp_path: Path,
) -> None:
    base = crafted.add_model_bytes()
    unknown = (crafted.varint(99 << 3) + b"\x00") * (MAX_FIELDS + 10)  # field 99 = 0
    path = tmp_path / "fields.onnx"
    path.write_bytes(base + unknown)
    with pytest.raises(models.ModelTooLarge, match=f"{MAX_FIELDS:,}"):
        models.load(path, backend="onnxruntime")


def test_the_element_limit_is_inclusive_and_counts_the_non_zero_dims() -> None:
    check((MAX_ELEMENTS,), "x")
    check((0, MAX_ELEMENTS), "x")
    with pytest.raises(models.ModelTooLarge, match="x would hold"):
        check((2, MAX_ELEMENTS // 2 + 1), "x")
    with pytest.raises(models.ModelTooLarge, match="x would hold"):
        check((0, MAX_ELEMENTS, 2), "x")  # numpy refuses it although it holds nothing


def test_an_onnx_detector_refuses_a_model_file_over_max_model_bytes(tmp_path: Path) -> None:
    from models.onnx_detector import OnnxDetector, OnnxParams
    from tests.models.test_onnx_reload import write_mean_model

    path = write_mean_model(tmp_path / "m.onnx", gain=1.0, threshold=0.5, name="m", version="1")
    with path.open("ab") as file:  # padded to the smallest cap (an unknown field 99, 0s)
        file.write(crafted.field(99, b"\0" * (2000 - path.stat().st_size)))
    size = path.stat().st_size
    params = OnnxParams(model=str(path), window=4, backend="numpy", max_model_bytes=size)
    detector = OnnxDetector(params)
    path.write_bytes(path.read_bytes() + b"\0" * 1024)  # grown past the cap
    result = detector.reload()
    assert not result.accepted and f"{size:,}" in result.reason
    with pytest.raises(models.ModelTooLarge, match=str(path)):
        OnnxDetector(params)


def test_edge_run_with_a_crafted_model_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.cli import main

    model = crafted.too_many_dims(tmp_path / "crafted.onnx", x_shape=[1, 4])
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[device]\nid = "d1"\n[storage]\nstate_dir = "{tmp_path / "state"}"\n'
        '[uplink]\nbroker = "mqtt://127.0.0.1:1"\n'
        '[[sensors]]\nid = "probe"\ntype = "i2c.tmp102"\ninterval = 1.0\n'
        f'[[detectors]]\nid = "m"\nsensor = "probe"\ntype = "onnx"\nmodel = "{model}"\n'
        'backend = "numpy"\nwindow = 4\n'
    )
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert f"{config}: detectors[0] ('m'): {model}:" in line and "32 dims" in line


def test_a_gemm_bias_larger_than_its_product_is_refused_before_it_is_broadcast(
    tmp_path: Path,
) -> None:
    # x [rows, 1] @ w [1, 1] + c [1, 100000]: the bias broadcasts the product to 10**10.
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 1), np.float32), "w")
    c = numpy_helper.from_array(np.zeros((1, 100_000), np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"])],
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w, c],
    )
    path = crafted.save(helper.make_model(graph, opset_imports=crafted.OPSET), tmp_path / "g.onnx")
    model = models.load(path, backend="numpy")
    with pytest.raises(
        models.ModelRunError, match=r"Gemm output 'y' would hold 10,000,000,000 values"
    ):
        model.run({"x": np.zeros((100_000, 1), np.float32)})
