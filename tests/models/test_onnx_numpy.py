"""The numpy backend against onnxruntime: random graphs, each operator, refusals, bad tensors.

Models are written with the ``onnx`` package to real files and run by both backends through
``models.load``; onnxruntime is the reference. Values stay O(1) (weights in [-0.5, 0.5], Exp and
Pow behind Tanh, Log and Sqrt behind Abs + 1) so that float32 rounding, which the two backends
do in different orders, stays far below the 1e-5 tolerance; the property is about semantics
(shapes, axes, broadcasting, opset rules), not about summation order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from onnx import TensorProto, helper, numpy_helper

import models
from models.numpy_backend import SUPPORTED_OPERATORS, NumpyGraph
from models.onnx_reader import parse_model

RTOL = ATOL = 1e-5
INT64_MAX, INT64_MIN = 2**63 - 1, -(2**63)
OPSETS = (11, 13, 17, 18, 21)


def write_model(
    path: Path,
    nodes: Sequence[onnx.NodeProto],
    inputs: dict[str, np.ndarray],
    outputs: Sequence[str],
    initializers: dict[str, np.ndarray] | None = None,
    opset: int = 18,
) -> Path:
    """Save a model whose graph inputs have exactly the given arrays' dtypes and shapes."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [
            helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape
            )
            for name, array in inputs.items()
        ],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(np.asarray(a), name) for name, a in (initializers or {}).items()],
    )
    opset_ids = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph, opset_imports=opset_ids, ir_version=helper.find_min_ir_version_for(opset_ids)
    )
    onnx.save(model, path)
    return path


def run_both(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run with both backends, assert they agree (dtype, shape, values), return numpy's."""
    reference = models.load(path, backend="onnxruntime").run(feeds)
    ours = models.load(path, backend="numpy").run(feeds)
    assert list(ours) == list(reference)
    for name, expected in reference.items():
        got = ours[name]
        assert got.dtype == expected.dtype, name
        assert got.shape == expected.shape, name
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=name)
    return ours


# --- the property: random chains of supported operators -----------------------------------------


@dataclass
class Chain:
    """A graph under construction: one float32 tensor flows through steps; shapes are tracked
    independently of either backend so both outputs' shapes are checked too."""

    opset: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: dict[str, np.ndarray] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def fresh(self, prefix: str) -> str:
        name = f"{prefix}{len(self.nodes)}_{len(self.initializers)}"
        while name in self.used:
            name += "_"
        self.used.add(name)
        return name

    def node(self, op: str, inputs: Sequence[str], **attributes: Any) -> str:
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attributes))
        return out

    def const(self, array: np.ndarray, as_node: bool = False) -> str:
        """An operand: an initializer, or a Constant node holding the same tensor."""
        name = self.fresh("c")
        if as_node:
            tensor = numpy_helper.from_array(array, name + "_value")
            self.nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        else:
            self.initializers[name] = array
        return name

    def axes_operand(self, axes: Sequence[int], since: int, draw: st.DrawFn) -> dict[str, Any]:
        """Axes as an attribute before opset ``since``, as an input from then on."""
        if self.opset < since:
            return {"attributes": {"axes": list(axes)}, "inputs": []}
        name = self.const(np.array(axes, dtype=np.int64), as_node=draw(st.booleans()))
        return {"attributes": {}, "inputs": [name]}


Shape = tuple[int, ...]
MAX_SIZE = 64


def floats(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, width=32, allow_subnormal=False)


def values(draw: st.DrawFn, shape: Shape, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    return draw(hnp.arrays(np.float32, shape, elements=floats(low, high)))


def broadcast_shape(draw: st.DrawFn, shape: Shape) -> Shape:
    """A shape that broadcasts to ``shape``: some dims set to 1, some leading dims dropped."""
    kept = [1 if draw(st.booleans()) else size for size in shape]
    return tuple(kept[draw(st.integers(0, len(kept))) :])


def step(draw: st.DrawFn, chain: Chain, x: str, shape: Shape) -> tuple[str, Shape]:
    rank = len(shape)
    size = int(np.prod(shape))
    kinds = ["unary", "exp", "log", "sqrt", "pow", "binary", "div", "cast", "reshape"]
    if rank >= 1:
        kinds += ["matmul", "softmax", "reduce", "flatten", "transpose", "concat", "slice"]
        kinds += ["gather"]
    if rank == 2:
        kinds.append("gemm")
    if 1 in shape:
        kinds.append("squeeze")
    if rank < 4 and size * 2 <= MAX_SIZE:
        kinds.append("unsqueeze")
    kind = draw(st.sampled_from(kinds))

    if kind == "unary":
        op = draw(st.sampled_from(["Relu", "LeakyRelu", "Sigmoid", "Tanh", "Abs", "Identity"]))
        attributes = {"alpha": draw(floats(0.0625, 0.5))} if op == "LeakyRelu" else {}
        return chain.node(op, [x], **attributes), shape
    if kind == "exp":
        return chain.node("Exp", [chain.node("Tanh", [x])]), shape
    if kind in ("log", "sqrt"):
        one = chain.const(np.array(1.0, np.float32), as_node=draw(st.booleans()))
        shifted = chain.node("Add", [chain.node("Abs", [x]), one])
        return chain.node("Log" if kind == "log" else "Sqrt", [shifted]), shape
    if kind == "pow":
        exponent = draw(st.sampled_from([2.0, 3.0, 0.5]))
        base = chain.node("Tanh", [x])
        if exponent == 0.5:
            base = chain.node("Abs", [base])
        power = chain.const(np.array(exponent, np.float32), as_node=draw(st.booleans()))
        return chain.node("Pow", [base, power]), shape
    if kind in ("binary", "div"):
        other_shape = broadcast_shape(draw, shape)
        if kind == "div":
            op = "Div"
            magnitude = values(draw, other_shape, 0.5, 2.0)
            signs = draw(hnp.arrays(np.float32, other_shape, elements=st.sampled_from([-1, 1])))
            other = chain.const(magnitude * signs, as_node=draw(st.booleans()))
        else:
            op = draw(st.sampled_from(["Add", "Sub", "Mul"]))
            other = chain.const(values(draw, other_shape), as_node=draw(st.booleans()))
        operands = [x, other] if draw(st.booleans()) else [other, x]
        if op == "Div":
            operands = [x, other]
        return chain.node(op, operands), np.broadcast_shapes(shape, other_shape)
    if kind == "cast":
        wide = chain.node("Cast", [x], to=TensorProto.DOUBLE)
        return chain.node("Cast", [wide], to=TensorProto.FLOAT), shape
    if kind == "reshape":
        return reshape_step(draw, chain, x, shape)
    if kind == "matmul":
        n = draw(st.integers(1, 4))
        if size // shape[-1] * n > MAX_SIZE:
            n = 1
        weights = chain.const(values(draw, (shape[-1], n), -0.5, 0.5))
        out_shape = (*shape[:-1], n)
        return chain.node("MatMul", [x, weights]), out_shape
    if kind == "gemm":
        return gemm_step(draw, chain, x, shape)
    if kind == "softmax":
        axis = draw(st.integers(-rank, rank - 1))
        return chain.node("Softmax", [x], axis=axis), shape
    if kind == "reduce":
        return reduce_step(draw, chain, x, shape)
    if kind == "flatten":
        axis = draw(st.integers(-rank, rank))
        at = axis + rank if axis < 0 else axis
        return chain.node("Flatten", [x], axis=axis), (
            int(np.prod(shape[:at])),
            int(np.prod(shape[at:])),
        )
    if kind == "transpose":
        perm = draw(st.permutations(range(rank)))
        if draw(st.booleans()):
            return chain.node("Transpose", [x]), shape[::-1]
        return chain.node("Transpose", [x], perm=list(perm)), tuple(shape[p] for p in perm)
    if kind == "concat":
        axis = draw(st.integers(-rank, rank - 1))
        at = axis % rank
        extra = draw(st.integers(1, 3))
        if size // shape[at] * (shape[at] + extra) > MAX_SIZE:
            extra = 0
        if extra == 0:
            out = list(shape)
            out[at] *= 2
            if int(np.prod(out)) > MAX_SIZE:
                return chain.node("Identity", [x]), shape
            return chain.node("Concat", [x, x], axis=axis), tuple(out)
        other_shape = list(shape)
        other_shape[at] = extra
        other = chain.const(values(draw, tuple(other_shape)), as_node=draw(st.booleans()))
        out = list(shape)
        out[at] += extra
        return chain.node("Concat", [other, x], axis=axis), tuple(out)
    if kind == "slice":
        return slice_step(draw, chain, x, shape)
    if kind == "gather":
        axis = draw(st.integers(-rank, rank - 1))
        at = axis % rank
        index_shape = draw(st.sampled_from([(), (1,), (2,), (3,), (2, 2)]))
        if size // shape[at] * max(1, int(np.prod(index_shape))) > MAX_SIZE:
            index_shape = ()
        index_values = hnp.arrays(
            np.int64, index_shape, elements=st.integers(-shape[at], shape[at] - 1)
        )
        indices = chain.const(draw(index_values), as_node=draw(st.booleans()))
        out_shape = (*shape[:at], *index_shape, *shape[at + 1 :])
        return chain.node("Gather", [x, indices], axis=axis), out_shape
    if kind == "squeeze":
        ones = [i for i, s in enumerate(shape) if s == 1]
        if draw(st.booleans()) and len(ones) == shape.count(1):
            squeeze_all = chain.opset < 13 or draw(st.booleans())
            if squeeze_all:
                return chain.node("Squeeze", [x]), tuple(s for s in shape if s != 1)
        chosen = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        axes = [a - rank if draw(st.booleans()) else a for a in chosen]
        operand = chain.axes_operand(axes, 13, draw)
        out = chain.node("Squeeze", [x, *operand["inputs"]], **operand["attributes"])
        return out, tuple(s for i, s in enumerate(shape) if i not in chosen)
    # unsqueeze
    out_rank = rank + draw(st.integers(1, min(2, 4 - rank)))
    chosen = draw(
        st.lists(
            st.integers(0, out_rank - 1),
            min_size=out_rank - rank,
            max_size=out_rank - rank,
            unique=True,
        )
    )
    axes = [a - out_rank if draw(st.booleans()) else a for a in chosen]
    operand = chain.axes_operand(axes, 13, draw)
    dims = iter(shape)
    out_shape = tuple(1 if i in chosen else next(dims) for i in range(out_rank))
    return chain.node("Unsqueeze", [x, *operand["inputs"]], **operand["attributes"]), out_shape


def reshape_step(draw: st.DrawFn, chain: Chain, x: str, shape: Shape) -> tuple[str, Shape]:
    # Merge some neighbouring dims and insert some 1s, then spell the target with 0 ("keep
    # this input dim") and -1 ("whatever is left") where allowed.
    target: list[int] = []
    for size in shape:
        if target and draw(st.booleans()):
            target[-1] *= size
        else:
            target.append(size)
        if len(target) < 4 and draw(st.integers(0, 4)) == 0:
            target.append(1)
    allow_zero = chain.opset >= 14 and draw(st.booleans())
    spelled = list(target)
    if not allow_zero:
        for i, size in enumerate(target):
            if i < len(shape) and size == shape[i] and draw(st.booleans()):
                spelled[i] = 0
    if spelled and draw(st.booleans()):
        spelled[draw(st.integers(0, len(spelled) - 1))] = -1
    target_name = chain.const(np.array(spelled, np.int64), as_node=draw(st.booleans()))
    attributes = {"allowzero": 1} if allow_zero else {}
    return chain.node("Reshape", [x, target_name], **attributes), tuple(target)


def gemm_step(draw: st.DrawFn, chain: Chain, x: str, shape: Shape) -> tuple[str, Shape]:
    m, k = shape
    n = draw(st.integers(1, 4))
    trans_a, trans_b = draw(st.booleans()), draw(st.booleans())
    a = chain.node("Transpose", [x]) if trans_a else x
    b = chain.const(values(draw, (n, k) if trans_b else (k, n), -0.5, 0.5))
    inputs = [a, b]
    c_shape = draw(st.sampled_from([None, (), (n,), (1, n), (m, n), (m, 1)]))
    if c_shape is not None:
        inputs.append(chain.const(values(draw, c_shape)))
    attributes = {
        "alpha": draw(st.sampled_from([1.0, 0.5, -1.0, 2.0])),
        "beta": draw(st.sampled_from([1.0, 0.5, 0.0, -2.0])),
        "transA": int(trans_a),
        "transB": int(trans_b),
    }
    return chain.node("Gemm", inputs, **attributes), (m, n)


def reduce_step(draw: st.DrawFn, chain: Chain, x: str, shape: Shape) -> tuple[str, Shape]:
    rank = len(shape)
    op = draw(st.sampled_from(["ReduceMean", "ReduceSum", "ReduceSumSquare"]))
    since = 13 if op == "ReduceSum" else 18
    keepdims = draw(st.booleans())
    chosen = draw(st.lists(st.integers(0, rank - 1), unique=True, max_size=rank))
    axes = [a - rank if draw(st.booleans()) else a for a in chosen]
    attributes: dict[str, Any] = {"keepdims": int(keepdims)}
    inputs = [x]
    if chain.opset >= since and draw(st.booleans()):
        if not axes and draw(st.booleans()):
            # noop_with_empty_axes: no reduction at all (ReduceSumSquare still squares).
            attributes["noop_with_empty_axes"] = 1
            return chain.node(op, inputs, **attributes), shape
        if axes:
            inputs.append(chain.const(np.array(axes, np.int64), as_node=draw(st.booleans())))
    elif axes:
        operand = chain.axes_operand(axes, since, draw)
        inputs += operand["inputs"]
        attributes.update(operand["attributes"])
    reduced = set(chosen) if chosen else set(range(rank))
    if keepdims:
        return chain.node(op, inputs, **attributes), tuple(
            1 if i in reduced else s for i, s in enumerate(shape)
        )
    return chain.node(op, inputs, **attributes), tuple(
        s for i, s in enumerate(shape) if i not in reduced
    )


def slice_step(draw: st.DrawFn, chain: Chain, x: str, shape: Shape) -> tuple[str, Shape]:
    rank = len(shape)
    chosen = draw(st.lists(st.integers(0, rank - 1), unique=True, min_size=1, max_size=rank))
    starts, ends, steps = [], [], []
    out = list(shape)
    for axis in chosen:
        size = shape[axis]
        begin = draw(st.integers(0, size - 1))
        stride = draw(st.sampled_from([1, 1, 2, 3, -1, -2]))
        if stride > 0:
            stop = draw(st.integers(begin + 1, size + 2))
            # A negative spelling counts from the end, so it exists only below the size.
            if stop >= size:
                stop_spelled = draw(st.sampled_from([stop, INT64_MAX]))
            else:
                stop_spelled = draw(st.sampled_from([stop, stop - size]))
            length = len(range(begin, min(stop, size), stride))
        else:
            stop = draw(st.integers(-1, begin - 1))  # -1: through index 0
            if stop == -1:
                stop_spelled = draw(st.sampled_from([-size - 1, -size - 7, INT64_MIN]))
            else:
                stop_spelled = draw(st.sampled_from([stop, stop - size]))
            length = len(range(begin, stop, stride))
        starts.append(draw(st.sampled_from([begin, begin - size])))
        ends.append(stop_spelled)
        steps.append(stride)
        out[axis] = length
    axes = [a - rank if draw(st.booleans()) else a for a in chosen]
    inputs = [
        x,
        chain.const(np.array(starts, np.int64)),
        chain.const(np.array(ends, np.int64)),
    ]
    if draw(st.booleans()) or steps != [1] * len(steps) or axes != list(range(len(axes))):
        inputs.append(chain.const(np.array(axes, np.int64), as_node=draw(st.booleans())))
    if steps != [1] * len(steps):
        inputs.append(chain.const(np.array(steps, np.int64)))
    return chain.node("Slice", inputs), tuple(out)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_graphs_agree_with_onnxruntime(tmp_path: Path, data: st.DataObject) -> None:
    opset = data.draw(st.sampled_from(OPSETS), label="opset")
    input_shape = tuple(data.draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    chain = Chain(opset)
    chain.used.add("x")
    x, shape = "x", input_shape
    outputs: dict[str, Shape] = {}
    for index in range(data.draw(st.integers(1, 6), label="length")):
        x, shape = step(data.draw, chain, x, shape)
        if index == 0 and data.draw(st.booleans()):
            outputs[x] = shape  # an intermediate value as a second graph output
    outputs[x] = shape
    feed = data.draw(hnp.arrays(np.float32, input_shape, elements=floats(-2.0, 2.0)), label="x")
    path = write_model(
        tmp_path / "random.onnx", chain.nodes, {"x": feed}, list(outputs), chain.initializers, opset
    )
    got = run_both(path, {"x": feed})
    for name, expected_shape in outputs.items():
        assert got[name].shape == expected_shape
        assert got[name].dtype == np.float32


# --- each operator, its attributes and its opset variants ---------------------------------------


@dataclass(frozen=True)
class OpCase:
    """One node: graph inputs ``feeds``, initializers ``consts``; ``expected`` when it is easy
    to state by hand (the backends are compared in every case)."""

    id: str
    op: str
    inputs: tuple[str, ...]
    feeds: dict[str, np.ndarray]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    opset: int = 18
    expected: Any = None


def f32(*values: Any) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def i64(*values: Any) -> np.ndarray:
    return np.array(values, dtype=np.int64)


RNG = np.random.default_rng(5)
X23 = RNG.uniform(-2, 2, (2, 3)).astype(np.float32)
X234 = RNG.uniform(-2, 2, (2, 3, 4)).astype(np.float32)
POSITIVE = RNG.uniform(0.1, 3, (2, 3)).astype(np.float32)
X = {"x": X23}

CASES = [
    OpCase("matmul-1d", "MatMul", ("x", "w"), {"x": f32(1, 2)}, {"w": f32([1, 2], [3, 4])},
           expected=f32(7, 10)),
    OpCase("matmul-batched", "MatMul", ("x", "w"), {"x": X234},
           {"w": RNG.uniform(-1, 1, (4, 2)).astype(np.float32)}),
    OpCase("gemm-all-attributes", "Gemm", ("a", "b", "c"), {"a": f32([1, 2], [3, 4], [5, 6])},
           {"b": f32([1, 0, 1], [0, 1, 1]), "c": f32(1, 2)},
           {"alpha": 2.0, "beta": 0.5, "transA": 1, "transB": 1},
           expected=2 * f32([1, 2], [3, 4], [5, 6]).T @ f32([1, 0, 1], [0, 1, 1]).T
           + 0.5 * f32(1, 2)),
    OpCase("gemm-no-c-opset11", "Gemm", ("x", "b"), X, {"b": X23.T.copy()}, opset=11,
           expected=X23 @ X23.T),
    OpCase("add-broadcast", "Add", ("x", "y"), X, {"y": f32(1, 2, 3)}, expected=X23 + f32(1, 2, 3)),
    OpCase("sub-scalar", "Sub", ("y", "x"), X, {"y": np.float32(1.5)}, expected=1.5 - X23),
    OpCase("mul-both-broadcast", "Mul", ("x", "y"), {"x": X234[:, :1, :]},
           {"y": RNG.uniform(-1, 1, (3, 1)).astype(np.float32)}),
    OpCase("div-float", "Div", ("x", "y"), X, {"y": f32(0.5, -2, 4)}),
    OpCase("div-int-truncates", "Div", ("x", "y"), {"x": i64(-7, 7, -7, 7)},
           {"y": i64(2, -2, -2, 2)}, expected=i64(-3, -3, 3, 3)),
    OpCase("pow-float", "Pow", ("x", "y"), {"x": POSITIVE}, {"y": f32(0.5, 2, -1)}),
    OpCase("pow-int-exponent", "Pow", ("x", "y"), X, {"y": i64(2)}, expected=X23**2),
    OpCase("relu", "Relu", ("x",), X, expected=np.maximum(X23, 0)),
    OpCase("leaky-relu-default", "LeakyRelu", ("x",), X,
           expected=np.where(X23 > 0, X23, np.float32(0.01) * X23)),
    OpCase("leaky-relu-alpha", "LeakyRelu", ("x",), X, attributes={"alpha": 0.25},
           expected=np.where(X23 > 0, X23, 0.25 * X23)),
    OpCase("sigmoid", "Sigmoid", ("x",), {"x": f32(-100, -1, 0, 1, 100)}),
    OpCase("tanh", "Tanh", ("x",), X, expected=np.tanh(X23)),
    OpCase("abs", "Abs", ("x",), X, expected=np.abs(X23)),
    OpCase("exp", "Exp", ("x",), X, expected=np.exp(X23)),
    OpCase("log", "Log", ("x",), {"x": POSITIVE}, expected=np.log(POSITIVE)),
    OpCase("sqrt", "Sqrt", ("x",), {"x": POSITIVE}, expected=np.sqrt(POSITIVE)),
    OpCase("softmax-13-default-axis", "Softmax", ("x",), {"x": X234}, opset=13),
    OpCase("softmax-13-axis1", "Softmax", ("x",), {"x": X234}, attributes={"axis": 1}, opset=13),
    # Before opset 13 the input is seen as 2-D [2, 12]: one softmax over the last two axes.
    OpCase("softmax-11-coerced", "Softmax", ("x",), {"x": X234}, attributes={"axis": 1}, opset=11,
           expected=(np.exp(X234) / np.exp(X234).sum(axis=(1, 2), keepdims=True))),
    OpCase("softmax-11-negative-axis", "Softmax", ("x",), {"x": X234}, attributes={"axis": -1},
           opset=11),
    OpCase("reduce-mean-attr", "ReduceMean", ("x",), {"x": X234},
           attributes={"axes": [1], "keepdims": 0}, opset=13, expected=X234.mean(axis=1)),
    OpCase("reduce-mean-input", "ReduceMean", ("x", "axes"), {"x": X234}, {"axes": i64(-1, 0)},
           expected=X234.mean(axis=(0, 2), keepdims=True)),
    OpCase("reduce-mean-all", "ReduceMean", ("x",), {"x": X234}, attributes={"keepdims": 0},
           expected=np.float32(X234.mean())),
    OpCase("reduce-mean-noop", "ReduceMean", ("x",), {"x": X234},
           attributes={"noop_with_empty_axes": 1}, expected=X234),
    OpCase("reduce-sum-attr-11", "ReduceSum", ("x",), {"x": X234}, attributes={"axes": [0, 2]},
           opset=11, expected=X234.sum(axis=(0, 2), keepdims=True)),
    OpCase("reduce-sum-input-13", "ReduceSum", ("x", "axes"), {"x": X234}, {"axes": i64(1)},
           attributes={"keepdims": 0}, opset=13, expected=X234.sum(axis=1)),
    OpCase("reduce-sum-empty-axes-input", "ReduceSum", ("x", "axes"), {"x": X234},
           {"axes": np.zeros(0, np.int64)}, opset=13, expected=X234.sum(keepdims=True)),
    OpCase("reduce-sum-square-attr", "ReduceSumSquare", ("x",), {"x": X234},
           attributes={"axes": [2]}, opset=17, expected=(X234**2).sum(axis=2, keepdims=True)),
    OpCase("reduce-sum-square-input", "ReduceSumSquare", ("x", "axes"), {"x": X234},
           {"axes": i64(0)}, attributes={"keepdims": 0}, opset=18),
    OpCase("reduce-sum-square-noop", "ReduceSumSquare", ("x",), {"x": X234},
           attributes={"noop_with_empty_axes": 1}, opset=18, expected=X234**2),
    OpCase("reshape-zero-and-minus-one", "Reshape", ("x", "s"), {"x": X234}, {"s": i64(0, -1)},
           expected=X234.reshape(2, 12)),
    OpCase("reshape-allowzero", "Reshape", ("x", "s"), {"x": np.zeros((0, 3), np.float32)},
           {"s": i64(3, 0)}, attributes={"allowzero": 1}, expected=np.zeros((3, 0), np.float32)),
    OpCase("flatten-default", "Flatten", ("x",), {"x": X234}, expected=X234.reshape(2, 12)),
    OpCase("flatten-axis0", "Flatten", ("x",), {"x": X234}, attributes={"axis": 0},
           expected=X234.reshape(1, 24)),
    OpCase("flatten-negative-axis", "Flatten", ("x",), {"x": X234}, attributes={"axis": -1},
           expected=X234.reshape(6, 4)),
    OpCase("transpose-default", "Transpose", ("x",), {"x": X234}, expected=X234.T),
    OpCase("transpose-perm", "Transpose", ("x",), {"x": X234}, attributes={"perm": [1, 2, 0]},
           expected=X234.transpose(1, 2, 0)),
    OpCase("squeeze-attr-11", "Squeeze", ("x",), {"x": X234[:1, :, :1]},
           attributes={"axes": [0, -1]}, opset=11, expected=X234[0, :, 0]),
    OpCase("squeeze-input-13", "Squeeze", ("x", "axes"), {"x": X234[:1, :, :1]}, {"axes": i64(2)},
           opset=13, expected=X234[:1, :, 0]),
    OpCase("squeeze-all", "Squeeze", ("x",), {"x": X234[:1, :, :1]}, expected=X234[0, :, 0]),
    OpCase("unsqueeze-attr-11", "Unsqueeze", ("x",), X, attributes={"axes": [0, -1]}, opset=11,
           expected=X23[None, :, :, None]),
    OpCase("unsqueeze-input-13", "Unsqueeze", ("x", "axes"), X, {"axes": i64(1, -1)}, opset=13,
           expected=X23[:, None, :, None]),
    OpCase("concat", "Concat", ("x", "y", "x"), X, {"y": f32([9], [8])}, {"axis": -1},
           expected=np.concatenate([X23, f32([9], [8]), X23], axis=1)),
    OpCase("slice-attr-9", "Slice", ("x",), {"x": X234},
           attributes={"starts": [1, -3], "ends": [2, 1000], "axes": [0, 2]}, opset=9,
           expected=X234[1:2, :, 1:]),
    OpCase("slice-negative-step", "Slice", ("x", "s", "e", "a", "st"), {"x": X234},
           {"s": i64(-1, 2), "e": i64(INT64_MIN, 0), "a": i64(2, 1), "st": i64(-2, -1)},
           expected=X234[:, 2:0:-1, ::-2]),
    OpCase("slice-omitted-axes", "Slice", ("x", "s", "e", "", "st"), {"x": X234},
           {"s": i64(0, 5), "e": i64(INT64_MAX, 1), "st": i64(1, -1)}, expected=X234[:, 2:1:-1]),
    OpCase("slice-no-steps", "Slice", ("x", "s", "e"), {"x": X234}, {"s": i64(1), "e": i64(-1)},
           opset=10, expected=X234[1:-1]),
    OpCase("gather-axis1-negative", "Gather", ("x", "i"), {"x": X234}, {"i": i64([-1, 0], [1, 1])},
           {"axis": 1}, expected=X234[:, [[2, 0], [1, 1]], :]),
    OpCase("gather-scalar", "Gather", ("x", "i"), {"x": X234}, {"i": np.int64(1)},
           expected=X234[1]),
    OpCase("identity", "Identity", ("x",), X, expected=X23),
    OpCase("constant-tensor", "Constant", (), {},
           attributes={"value": numpy_helper.from_array(f32([1, 2]), "v")}, expected=f32([1, 2])),
    OpCase("constant-value-float", "Constant", (), {}, attributes={"value_float": 2.5},
           expected=np.float32(2.5)),
    OpCase("constant-value-floats", "Constant", (), {}, attributes={"value_floats": [1.0, -1.0]},
           expected=f32(1, -1)),
    OpCase("constant-value-int", "Constant", (), {}, attributes={"value_int": -3},
           expected=np.int64(-3)),
    OpCase("constant-value-ints", "Constant", (), {}, attributes={"value_ints": [4, 5]},
           expected=i64(4, 5)),
    OpCase("cast-to-int32-truncates", "Cast", ("x",), {"x": f32(1.7, -1.7, 0.2)},
           attributes={"to": TensorProto.INT32}, expected=np.array([1, -1, 0], np.int32)),
    OpCase("cast-to-bool", "Cast", ("x",), {"x": f32(0, 2, -0.5)},
           attributes={"to": TensorProto.BOOL}, expected=np.array([False, True, True])),
    OpCase("cast-to-float16", "Cast", ("x",), X, attributes={"to": TensorProto.FLOAT16}),
    OpCase("cast-int64-to-float", "Cast", ("x",), {"x": i64(3, -4)},
           attributes={"to": TensorProto.FLOAT}, expected=f32(3, -4)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_operator(tmp_path: Path, case: OpCase) -> None:
    node = helper.make_node(case.op, list(case.inputs), ["out"], name="op", **case.attributes)
    path = write_model(tmp_path / "op.onnx", [node], case.feeds, ["out"], case.consts, case.opset)
    got = run_both(path, case.feeds)["out"]
    if case.expected is not None:
        expected = np.asarray(case.expected)
        assert got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_every_supported_operator_has_a_case() -> None:
    assert {case.op for case in CASES} == SUPPORTED_OPERATORS


# --- refusals and malformed graphs --------------------------------------------------------------


def conv_model(tmp_path: Path) -> Path:
    image = np.zeros((1, 1, 4, 4), np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv1"),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["y"], name="pool", kernel_shape=[2, 2]),
    ]
    weights = {"w": np.ones((1, 1, 3, 3), np.float32)}
    return write_model(tmp_path / "conv.onnx", nodes, {"x": image}, ["y"], weights, 13)


def test_unsupported_operators_are_refused_at_load_by_name(tmp_path: Path) -> None:
    path = conv_model(tmp_path)
    with pytest.raises(models.UnsupportedOperator) as refused:
        models.load(path, backend="numpy")
    message = str(refused.value)
    assert "Conv" in message and "conv1" in message
    assert "MaxPool" in message and "pool" in message
    assert refused.value.operators == (
        ("Conv", "Conv (node 'conv1')"),
        ("MaxPool", "MaxPool (node 'pool')"),
    )
    assert isinstance(refused.value, models.ModelError)
    assert isinstance(refused.value, ValueError)
    # The same file is fine for onnxruntime: the refusal is the fallback's, not the file's.
    models.load(path, backend="onnxruntime")


def test_an_operator_from_another_domain_is_refused(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="custom", domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)],
        ir_version=8,
    )
    onnx.save(model, tmp_path / "custom.onnx")
    with pytest.raises(models.UnsupportedOperator, match=r"com\.example\.Relu.*'custom'"):
        models.load(tmp_path / "custom.onnx", backend="numpy")


def test_nodes_out_of_topological_order_are_refused(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Relu", ["h"], ["y"], name="second"),
        helper.make_node("Abs", ["x"], ["h"], name="first"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.save(model, tmp_path / "unsorted.onnx")
    with pytest.raises(models.ModelFormatError, match=r"'second'.*'h'.*topological"):
        models.load(tmp_path / "unsorted.onnx", backend="numpy")


def test_a_bad_attribute_type_is_refused_at_load(tmp_path: Path) -> None:
    node = helper.make_node("Gemm", ["x", "w"], ["y"], name="g", transA=1.0)  # a float, not int
    path = write_model(tmp_path / "m.onnx", [node], X, ["y"], {"w": X23.T.copy()})
    with pytest.raises(models.ModelFormatError, match=r"'g'.*transA.*float"):
        models.load(path, backend="numpy")


def test_old_opsets_are_refused(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    path = write_model(tmp_path / "m.onnx", [node], X, ["y"], opset=6)
    with pytest.raises(models.UnsupportedModel, match="opset 6"):
        models.load(path, backend="numpy")


def test_a_failing_node_raises_model_run_error_in_both_backends(tmp_path: Path) -> None:
    # The index comes in at run time, so neither backend can see the problem at load.
    node = helper.make_node("Gather", ["x", "i"], ["y"], name="lookup")
    feeds = {"x": X23, "i": i64(5)}
    path = write_model(tmp_path / "m.onnx", [node], feeds, ["y"])
    for backend in ("numpy", "onnxruntime"):
        model = models.load(path, backend=backend)
        with pytest.raises(models.ModelRunError):
            model.run(feeds)
    with pytest.raises(models.ModelRunError, match="lookup"):
        models.load(path, backend="numpy").run(feeds)


# --- tensors in every storage the format allows --------------------------------------------------


@pytest.mark.parametrize(
    ("data_type", "values", "dtype"),
    [
        (TensorProto.FLOAT, [1.5, -2.0], np.float32),  # float_data
        (TensorProto.DOUBLE, [1.5, -2.0], np.float64),  # double_data
        (TensorProto.INT64, [-(2**40), 7], np.int64),  # int64_data
        (TensorProto.INT32, [-5, 7], np.int32),  # int32_data
        (TensorProto.INT8, [-5, 7], np.int8),  # int32_data
        (TensorProto.UINT8, [250, 7], np.uint8),  # int32_data
        (TensorProto.BOOL, [True, False], np.bool_),  # int32_data
        (TensorProto.FLOAT16, [1.5, -2.0], np.float16),  # bit patterns in int32_data
        (TensorProto.UINT64, [2**63 + 1, 7], np.uint64),  # uint64_data
    ],
)
def test_initializers_in_typed_fields(
    tmp_path: Path, data_type: int, values: list[Any], dtype: type
) -> None:
    tensor = helper.make_tensor("c", data_type, [2], values)
    assert not tensor.raw_data
    graph = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["y"])],
        "g",
        [],
        [helper.make_empty_tensor_value_info("y")],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.save(model, tmp_path / "typed.onnx")
    got = models.load(tmp_path / "typed.onnx", backend="numpy").run({})["y"]
    np.testing.assert_array_equal(got, np.array(values, dtype=dtype))
    assert got.dtype == dtype


def test_external_data_and_exotic_types_are_refused(tmp_path: Path) -> None:
    node = helper.make_node("Add", ["x", "w"], ["y"])
    path = write_model(tmp_path / "ext.onnx", [node], X, ["y"], {"w": X23})
    model = onnx.load(path)
    onnx.save(model, path, save_as_external_data=True, size_threshold=0, location="ext.data")
    with pytest.raises(models.UnsupportedModel, match="external"):
        models.load(path, backend="numpy")

    bf16 = helper.make_tensor("w", TensorProto.BFLOAT16, [1], [1.0])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "g",
        [],
        [helper.make_empty_tensor_value_info("y")],
        [bf16],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8),
        tmp_path / "bf16.onnx",
    )
    with pytest.raises(models.UnsupportedModel, match="bfloat16"):
        models.load(tmp_path / "bf16.onnx", backend="numpy")


def test_intermediate_values_are_released_after_their_last_use(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Abs", ["x"], ["a"]),
        helper.make_node("Exp", ["a"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["c"]),
        helper.make_node("Relu", ["c"], ["y"]),
        helper.make_node("Tanh", ["c"], ["unused"]),
    ]
    path = write_model(tmp_path / "m.onnx", nodes, X, ["y"])
    graph = NumpyGraph(parse_model(path.read_bytes()))
    releases = [step.release for step in graph._steps]
    assert releases == [("x",), (), ("a", "b"), (), ("c", "unused")]


# --- the decoder never fails with anything but ModelFormatError ----------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_model_format_error(data: bytes) -> None:
    with contextlib.suppress(models.ModelFormatError):
        parse_model(data)


SMALL_MODEL = helper.make_model(
    helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="gemm", transB=1),
            helper.make_node("Reshape", ["h", "s"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [
            numpy_helper.from_array(X23, "w"),
            helper.make_tensor("b", TensorProto.FLOAT, [2], [0.5, -0.5]),
            numpy_helper.from_array(i64(-1), "s"),
        ],
    ),
    opset_imports=[helper.make_opsetid("", 18)],
    ir_version=8,
).SerializeToString()


@settings(max_examples=300)
@given(st.data())
def test_corrupted_models_fail_only_with_model_errors(data: st.DataObject) -> None:
    corrupted = bytearray(SMALL_MODEL)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(corrupted) - 1))
        corrupted[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(corrupted)))
    with contextlib.suppress(models.ModelError):
        graph = NumpyGraph(parse_model(bytes(corrupted[:cut])))
        graph.run({"x": X23[:1]})
