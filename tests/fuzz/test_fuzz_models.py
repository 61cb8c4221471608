"""Fuzz: model files mutated from valid ones, and protobuf-shaped noise, fed to ``models.load``.

A model file is input from outside (a copy, a download, a command's ``model promote``): each
case writes one file, loads it and, when it loads, runs it on a small input. It must work
or raise a ModelError subclass, nothing else, within a bounded memory. Seeds: the shipped
models and a small graph built here that reaches most of the reader and the numpy kernels
(typed-field initializers, a Constant, Gather, Concat, Gemm, reductions, metadata).
"""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import models
from models.onnx_reader import NUMPY_DTYPES
from models.shipped import model_path

pytestmark = pytest.mark.fuzz

# Memory a case may allocate: the seeds are a few kB, the inputs at most RUN_VALUES values.
PEAK_BYTES = 64 << 20
RUN_VALUES = 256


def _seed_graph() -> bytes:
    k = numpy_helper.from_array(np.array([0, 1], np.int64), "k")
    nodes = [
        helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="dense", transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Constant", [], ["k"], value=k),
        helper.make_node("Gather", ["r", "k"], ["g"], axis=1),
        helper.make_node("Concat", ["g", "r"], ["c"], axis=1),
        helper.make_node("ReduceSumSquare", ["c", "axes"], ["s"], keepdims=1),
        helper.make_node("Cast", ["s"], ["score"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "seed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1])],
        [
            numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w"),
            helper.make_tensor("b", TensorProto.FLOAT, [2], [0.5, -0.5]),  # float_data
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),  # int64_data varints
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    helper.set_model_props(model, {"name": "seed", "threshold": "0.5"})
    data: bytes = model.SerializeToString()
    return data


SEEDS = [
    _seed_graph(),
    model_path("vibration").read_bytes(),
    model_path("environment").read_bytes(),
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed with a few bytes flipped, inserted, deleted, duplicated or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "repeat", "cut"]))
        if not data:
            break
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 64))]
        else:
            del data[at:]
    return bytes(data)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Field numbers ONNX uses in the messages the reader decodes, and one it skips.
NUMBERS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 20, 99])
VARINTS = st.one_of(st.integers(0, 300), st.sampled_from([2**31, 2**62, 2**63, 2**64 - 1]))


def _field(number: int, wire: int, payload: int | bytes) -> bytes:
    key = _varint(number << 3 | wire)
    if wire == 0:
        assert isinstance(payload, int)
        return key + _varint(payload)
    assert isinstance(payload, bytes)
    if wire == 2:
        return key + _varint(len(payload)) + payload
    return key + payload.ljust(8 if wire == 1 else 4, b"\0")[: 8 if wire == 1 else 4]


LEAVES = st.one_of(
    st.builds(_field, NUMBERS, st.just(0), VARINTS),
    st.builds(_field, NUMBERS, st.sampled_from([1, 5]), st.binary(max_size=8)),
    st.builds(_field, NUMBERS, st.just(2), st.binary(max_size=12)),
    st.builds(_field, NUMBERS, st.just(2), st.text(max_size=8).map(str.encode)),
)
MESSAGES = st.recursive(
    st.lists(LEAVES, max_size=6).map(b"".join),
    lambda inner: st.lists(
        st.one_of(LEAVES, st.builds(_field, NUMBERS, st.just(2), inner)), max_size=6
    ).map(b"".join),
    max_leaves=24,
)
# A ModelProto with an IR version and a graph (7) of protobuf-shaped noise, so the noise
# reaches the graph's decoders rather than being refused as "no graph".
PROTOBUF_SHAPED = st.builds(
    lambda graph, rest: _field(1, 0, 8) + _field(7, 2, graph) + rest, MESSAGES, MESSAGES
)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-models-") as directory:
        yield Path(directory) / "model.onnx"


def load_and_run(path: Path, data: bytes, backend: str) -> None:
    """Write ``data``, load it, run it on zeros when it loads: works or raises a ModelError."""
    path.write_bytes(data)
    try:
        model = models.load(path, backend=backend)
        feeds = _zeros(model)
        if feeds is not None:
            model.run(feeds)
    except models.ModelError as exc:
        assert path.name in str(exc), f"the file is not named: {exc}"


def _zeros(model: models.Model) -> dict[str, Any] | None:
    feeds: dict[str, Any] = {}
    for spec in model.inputs:
        if spec.dtype not in NUMPY_DTYPES.values():
            return None
        shape = [d if isinstance(d, int) else 1 for d in spec.shape or ()]
        if any(d < 0 for d in shape) or np.prod(shape) > RUN_VALUES:
            return None
        feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


def within_memory(path: Path, data: bytes, backend: str) -> None:
    tracemalloc.start()
    try:
        load_and_run(path, data, backend)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"{peak / 2**20:.1f} MiB"


SLOW_DATA = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@SLOW_DATA
@given(data=mutated())
def test_fuzz_models_mutated_files_load_or_raise_model_errors(scratch: Path, data: bytes) -> None:
    within_memory(scratch, data, "numpy")


@SLOW_DATA
@given(data=PROTOBUF_SHAPED)
def test_fuzz_models_protobuf_shaped_noise_loads_or_raises_model_errors(
    scratch: Path, data: bytes
) -> None:
    within_memory(scratch, data, "numpy")


@SLOW_DATA
@given(data=mutated())
def test_fuzz_models_mutated_files_with_onnxruntime(scratch: Path, data: bytes) -> None:
    pytest.importorskip("onnxruntime")
    load_and_run(scratch, data, "onnxruntime")


def test_the_seeds_load_and_run_on_both_backends(scratch: Path) -> None:
    # The mutations start from files that work, or the campaign would test only refusals.
    for seed in SEEDS:
        for backend in ("numpy", "onnxruntime"):
            scratch.write_bytes(seed)
            model = models.load(scratch, backend=backend)
            feeds = _zeros(model)
            assert feeds is not None
            model.run(feeds)
