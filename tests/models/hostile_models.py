"""Crafted model files an attacker (or a broken copy) could put where a model is read.

Each builder writes a file into a directory and returns its path. They are built with the
``onnx`` helper API where it can express them, and as raw protobuf bytes where it refuses to.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 18)]


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def add_model(initializer: onnx.TensorProto, path: Path, x_shape: list[int] | None = None) -> Path:
    """y = x + c, where c is ``initializer``: a graph that reads the initializer."""
    shape = x_shape if x_shape is not None else [1]
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", initializer.name], ["y"])],
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [initializer],
    )
    return save(helper.make_model(graph, opset_imports=OPSET, ir_version=8), path)


def too_many_dims(path: Path, rank: int = 65, x_shape: list[int] | None = None) -> Path:
    """An initializer of ``rank`` dims of size 1: numpy holds at most 64 (32 before 2.0)."""
    tensor = helper.make_tensor("c", TensorProto.FLOAT, [1] * rank, b"\0\0\0\0", raw=True)
    return add_model(tensor, path, x_shape)


def huge_empty_dims(path: Path) -> Path:
    """An initializer of dims [0, 2**62, 2**62]: no values, but no array can have that shape."""
    tensor = helper.make_tensor("c", TensorProto.FLOAT, [0, 2**62, 2**62], b"", raw=True)
    return add_model(tensor, path)


def broadcast_bomb(path: Path, n: int = 1_000_000) -> Path:
    """x [1, n] + c [n, 1]: two 4 MB operands whose sum would hold n * n values (4 TB)."""
    c = numpy_helper.from_array(np.zeros((n, 1), np.float32), "c")
    return add_model(c, path, x_shape=[1, n])


def run_time_broadcast_bomb(path: Path, n: int = 100_000) -> Path:
    """x [rows, 1] + c [1, n]: harmless as declared; fed n rows, the sum holds n * n values."""
    c = numpy_helper.from_array(np.zeros((1, n), np.float32), "c")
    return add_model(c, path, x_shape=["rows", 1])


def matmul_bomb(path: Path, n: int = 1_000_000) -> Path:
    """x [n, 0] @ c [0, n]: empty operands, an n * n product."""
    c = numpy_helper.from_array(np.zeros((0, n), np.float32), "c")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "c"], ["y"])],
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, 0])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [c],
    )
    return save(helper.make_model(graph, opset_imports=OPSET, ir_version=8), path)


# --- raw protobuf, for what the onnx package will not write ------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def packed_varints(path: Path, where: str, megabytes: int = 4) -> Path:
    """A small valid model whose ``where`` holds ``megabytes`` MB of packed one-byte varints:
    an initializer's ``int64_data`` or ``dims``, or a node attribute's ``ints``."""
    ones = b"\x01" * (megabytes << 20)
    model = onnx.load_from_string(add_model_bytes())
    data = model.SerializeToString()
    if where == "int64_data":
        tensor = field(1, varint(1)) + varint(2 << 3) + varint(TensorProto.INT64)
        tensor += field(8, b"big") + field(7, ones)
        extra = field(7, field(5, tensor))  # graph.initializer
    elif where == "dims":
        tensor = field(1, ones) + varint(2 << 3) + varint(TensorProto.FLOAT) + field(8, b"big")
        extra = field(7, field(5, tensor))
    elif where == "ints":
        attribute = field(1, b"perm") + varint(20 << 3) + varint(7) + field(8, ones)
        node = field(1, b"x") + field(2, b"t") + field(4, b"Transpose") + field(5, attribute)
        extra = field(7, field(1, node))  # graph.node
    else:
        raise ValueError(where)
    # Protobuf merges a repeated message field (graph) given twice: the extra parts join it.
    path.write_bytes(data + extra)
    return path


def add_model_bytes() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=OPSET, ir_version=8)
    data: bytes = model.SerializeToString()
    return data


def folded_bomb(path: Path, op: str, n: int = 10_000) -> Path:
    """A constant made from small constants: onnxruntime folds it while creating a session,
    so a [n, n] ConstantOfShape (+391 MB of RSS at n = 10,000, from a 200-byte file) or a
    Range of n * n values is allocated before any run."""
    if op == "ConstantOfShape":
        inputs = [numpy_helper.from_array(np.array([n, n], np.int64), "shape")]
    else:
        scalars = {"start": 0, "limit": n * n, "delta": 1}
        inputs = [numpy_helper.from_array(np.array(v, np.int64), k) for k, v in scalars.items()]
    y_type = TensorProto.INT64 if op == "Range" else TensorProto.FLOAT
    graph = helper.make_graph(
        [helper.make_node(op, [t.name for t in inputs], ["y"])],
        "hostile",
        [],
        [helper.make_tensor_value_info("y", y_type, None)],
        inputs,
    )
    return save(helper.make_model(graph, opset_imports=OPSET, ir_version=8), path)


def transposed_bomb(path: Path, n: int = 1_000_000) -> Path:
    """Transpose(x [1, n]) + c [1, n]: the bomb passes through a Transpose first."""
    c = numpy_helper.from_array(np.zeros((1, n), np.float32), "c")
    graph = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
            helper.make_node("Add", ["t", "c"], ["y"]),
        ],
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [c],
    )
    return save(helper.make_model(graph, opset_imports=OPSET, ir_version=8), path)
