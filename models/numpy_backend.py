"""Run an ONNX graph with numpy alone: the fallback for Pis without an onnxruntime wheel.

The graph is prepared once at load: every node's attributes are read and checked and turned into
a kernel (a function of the node's input arrays), initializers and constants become arrays, and
the interpreter works out after which node each intermediate value is no longer needed, so a run
holds only the values still to be used. Any operator outside :data:`SUPPORTED_OPERATORS` is
refused at load, by name, rather than failing in the middle of a run on a device.

Semantics follow the ONNX operator specs for opset 7 and later (what onnxruntime accepts), with
the changes between opsets that the supported operators went through: Softmax's 2-D coercion
before opset 13, axes moving from attribute to input (ReduceSum and Squeeze/Unsqueeze at 13, the
other reductions at 18), Slice's attributes before opset 10. Types follow the inputs, as
onnxruntime's kernels do: float32 in, float32 out. Works with numpy >= 1.24, whose value-based
casting turns ``float32 0-d array * 0.5`` into float64: scalars are spelled in the input's
dtype (``x.dtype.type(0.5)``) for that reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from models.loader import ModelRunError, UnsupportedModel, UnsupportedOperator
from models.onnx_reader import (
    NUMPY_DTYPES,
    Attribute,
    ModelFormatError,
    ModelTooLarge,
    Node,
    OnnxModel,
    Tensor,
    Varints,
    elem_type_name,
)
from models.shapes import Rule, check, grows, rule_for

Array = npt.NDArray[Any]
# A kernel takes the arrays of its node's inputs that are present (omitted optional inputs are
# left out; NodeSpec.position says where each declared input landed) and returns the output.
Kernel = Callable[[Sequence[Array]], Array]

MIN_OPSET = 7  # the oldest default-domain opset onnxruntime runs


class NodeSpec:
    """What a kernel builder may know about its node: attributes, inputs and the opset."""

    def __init__(self, node: Node, opset: int, where: str) -> None:
        self.node = node
        self.opset = opset
        self._where = where
        present = [i for i, name in enumerate(node.inputs) if name]
        self._positions = {declared: at for at, declared in enumerate(present)}

    @property
    def label(self) -> str:
        """The node as messages name it: the file, then the node."""
        return f"{self._where}: {self.node.label}"

    def fail(self, problem: str) -> ModelFormatError:
        return ModelFormatError(f"{self.label}: {problem}")

    def inputs(self, required: int, most: int | None = None) -> None:
        """Check the node declares ``required`` inputs (non-empty) and at most ``most``."""
        most = required if most is None else most
        count = len(self.node.inputs)
        if count > most or any(i not in self._positions for i in range(required)):
            expected = str(required) if most == required else f"{required} to {most}"
            raise self.fail(f"takes {expected} inputs, got {list(self.node.inputs)}")

    def position(self, declared: int) -> int | None:
        """Index into the kernel's arguments of declared input ``declared``, None if omitted."""
        return self._positions.get(declared)

    def _attribute(self, name: str, kinds: tuple[str, ...]) -> Attribute | None:
        attribute = self.node.attributes.get(name)
        if attribute is not None and attribute.kind not in kinds:
            raise self.fail(f"attribute {name!r} is {attribute.kind}, expected {kinds[0]}")
        return attribute

    def int_attr(self, name: str, default: int) -> int:
        attribute = self._attribute(name, ("int",))
        return default if attribute is None else attribute.i

    def required_int_attr(self, name: str) -> int:
        if name not in self.node.attributes:
            raise self.fail(f"attribute {name!r} is required")
        return self.int_attr(name, 0)

    def float_attr(self, name: str, default: float) -> float:
        attribute = self._attribute(name, ("float",))
        return default if attribute is None else attribute.f

    def ints_attr(self, name: str) -> tuple[int, ...] | None:
        attribute = self._attribute(name, ("ints",))
        return None if attribute is None else attribute.ints


@dataclass(frozen=True)
class _Step:
    label: str
    kernel: Kernel
    inputs: tuple[str, ...]  # present inputs only, in order
    output: str
    release: tuple[str, ...]  # values no later step or graph output needs
    size: Rule | None  # the output's shape from the inputs', checked before the kernel runs
    fine: set[tuple[tuple[int, ...], ...]]  # input shapes already checked (a detector has one)


class NumpyGraph:
    """An ONNX graph prepared for numpy; ``run`` maps checked input arrays to output arrays.

    Inputs are checked by :class:`models.loader.Model` (names, ranks, dtypes); ``run`` trusts
    them. Raises :class:`UnsupportedOperator` for operators outside SUPPORTED_OPERATORS,
    :class:`UnsupportedModel` for other features it lacks (external data, exotic dtypes),
    and :class:`ModelFormatError` for a malformed graph.
    """

    def __init__(self, model: OnnxModel, where: str = "model") -> None:
        graph = model.graph
        _refuse_unsupported(model, where)
        opset = model.opset("")
        if opset is None or opset < MIN_OPSET:
            raise UnsupportedModel(
                f"{where}: default ONNX opset {opset} is not supported (need {MIN_OPSET} or later)"
            )
        if graph.sparse_initializers:
            raise UnsupportedModel(
                f"{where}: sparse initializers ({', '.join(graph.sparse_initializers)}) are not "
                "supported by the numpy backend"
            )
        self._initializers = {
            t.name: _read_only(tensor_to_array(t, where)) for t in graph.initializers
        }
        self._outputs = tuple(v.name for v in graph.outputs)
        self._steps = _plan(model, opset, set(self._initializers), where)
        self._where = where

    def run(self, feeds: Mapping[str, Array]) -> dict[str, Array]:
        values: dict[str, Array] = dict(self._initializers)
        values.update(feeds)
        # Overflow to inf, 0/0 and log of negatives give inf/nan silently, as in onnxruntime.
        with np.errstate(all="ignore"):
            for step in self._steps:
                args = [values[name] for name in step.inputs]
                try:
                    _check_size(step, args, self._where)
                    result = step.kernel(args)
                except ModelTooLarge as exc:  # the same words as onnxruntime's refusal
                    raise ModelRunError(str(exc)) from exc
                # MemoryError too: a size no rule foresaw must not end the caller's thread.
                except (ValueError, IndexError, TypeError, ArithmeticError, MemoryError) as exc:
                    raise ModelRunError(f"{self._where}: {step.label} failed: {exc}") from exc
                values[step.output] = np.asarray(result)
                for name in step.release:
                    del values[name]
        fed = [id(array) for array in feeds.values()]
        return {name: _detached(values[name], fed) for name in self._outputs}


def _check_size(step: _Step, args: list[Array], where: str) -> None:
    """Refuse, before it is computed, an output over the limits (a broadcast of an input of
    a size the file left open, say)."""
    if step.size is None:
        return
    shapes = tuple(a.shape for a in args)
    if shapes in step.fine:
        return
    shape = step.size(shapes, [None] * len(args))
    if shape is not None:
        check(shape, f"{where}: {step.label} output {step.output!r}")
    if len(step.fine) < 16:
        step.fine.add(shapes)


def _detached(array: Array, fed: list[int]) -> Array:
    # Outputs that are views (of an initializer or an input) or the input itself are copied, so
    # the caller owns what it gets back, as with onnxruntime.
    if array.base is not None or not array.flags.writeable or id(array) in fed:
        return array.copy()
    return array


def _read_only(array: Array) -> Array:
    array.flags.writeable = False  # shared by every run: a kernel must never write into it
    return array


def _refuse_unsupported(model: OnnxModel, where: str) -> None:
    refused: list[tuple[str, str]] = []
    for node in model.graph.nodes:
        if node.domain not in ("", "ai.onnx"):
            refused.append((f"{node.domain}.{node.op_type}", node.label))
        elif node.op_type not in SUPPORTED_OPERATORS:
            refused.append((node.op_type, node.label))
    if refused:
        ops = ", ".join(sorted({op for op, _ in refused}))
        nodes = ", ".join(label for _, label in refused)
        raise UnsupportedOperator(
            f"{where}: the numpy backend does not support operator {ops} (used by {nodes}); "
            "it supports " + ", ".join(sorted(SUPPORTED_OPERATORS)),
            tuple(refused),
        )


def _plan(model: OnnxModel, opset: int, initialized: set[str], where: str) -> tuple[_Step, ...]:
    """Build the steps in file order, checking the order is topological, and note when each
    value can be released."""
    graph = model.graph
    available = initialized | {v.name for v in graph.inputs}
    built: list[tuple[Node, Kernel]] = []
    for node in graph.nodes:
        for name in node.inputs:
            if name and name not in available:
                raise ModelFormatError(
                    f"{where}: {node.label} uses {name!r}, which no graph input, initializer "
                    "or earlier node provides (nodes must be in topological order)"
                )
        outputs = [name for name in node.outputs if name]
        if len(outputs) != 1 or node.outputs[0] != outputs[0]:
            raise ModelFormatError(f"{where}: {node.label} must have one output, got {outputs}")
        spec = NodeSpec(node, opset, where)
        built.append((node, _BUILDERS[node.op_type](spec)))
        available.add(outputs[0])
    for output in graph.outputs:
        if output.name not in available:
            raise ModelFormatError(f"{where}: no node computes graph output {output.name!r}")

    last_use: dict[str, int] = {}
    for index, (node, _) in enumerate(built):
        for name in node.inputs:
            last_use[name] = index
    kept = {v.name for v in graph.outputs}
    releases: list[list[str]] = [[] for _ in built]
    for name, index in last_use.items():
        if name and name not in kept:
            releases[index].append(name)
    # A value no node reads and no output needs is released right after it is computed.
    for index, (node, _) in enumerate(built):
        if node.outputs[0] not in last_use and node.outputs[0] not in kept:
            releases[index].append(node.outputs[0])
    return tuple(
        _Step(
            label=node.label,
            kernel=kernel,
            inputs=tuple(name for name in node.inputs if name),
            output=node.outputs[0],
            release=tuple(dict.fromkeys(release)),
            size=rule_for(node) if grows(node) else None,
            fine=set(),
        )
        for (node, kernel), release in zip(built, releases, strict=True)
    )


def tensor_to_array(tensor: Tensor, where: str = "model") -> Array:
    """The numpy array a TensorProto holds (raw_data or the typed repeated fields)."""
    label = f"{where}: tensor {tensor.name!r}"
    if tensor.external or tensor.segmented:
        raise UnsupportedModel(f"{label} keeps its data outside the model file (external data)")
    dtype_name = NUMPY_DTYPES.get(tensor.data_type)
    if dtype_name is None:
        raise UnsupportedModel(
            f"{label} is {elem_type_name(tensor.data_type)}, which the numpy backend lacks"
        )
    dtype = np.dtype(dtype_name)
    if any(size < 0 for size in tensor.dims):
        raise ModelFormatError(f"{label} has negative dims {list(tensor.dims)}")
    check(tuple(tensor.dims), label)
    count = math.prod(tensor.dims)
    array: Array
    if tensor.raw_data is not None:
        if len(tensor.raw_data) != count * dtype.itemsize:
            raise ModelFormatError(
                f"{label} has {len(tensor.raw_data)} bytes of data for dims "
                f"{list(tensor.dims)} of {dtype_name}"
            )
        array = np.frombuffer(tensor.raw_data, dtype=dtype.newbyteorder("<"))
    elif dtype_name == "float32":
        array = np.array(tensor.float_data, dtype=dtype)
    elif dtype_name == "float64":
        array = np.array(tensor.double_data, dtype=dtype)
    elif dtype_name == "int64":
        array = _varints(tensor.int64_data, count, label).view(np.int64)
    elif dtype_name in ("uint32", "uint64"):
        array = _varints(tensor.uint64_data, count, label)
    elif dtype_name == "float16":  # stored as the bit patterns, one per int32
        array = _varints(tensor.int32_data, count, label).astype(np.uint16).view(np.float16)
    else:
        array = _varints(tensor.int32_data, count, label).view(np.int64)
    if array.size != count:
        raise ModelFormatError(f"{label} has {array.size} values for dims {list(tensor.dims)}")
    return array.astype(dtype, copy=False).reshape(tensor.dims)


def _varints(values: Varints, count: int, label: str) -> Array:
    """Decode packed varints into uint64 with numpy, once their number matches ``count``."""
    if values.count != count:
        raise ModelFormatError(f"{label} has {values.count} values, its dims say {count}")
    data = np.frombuffer(values.packed, dtype=np.uint8)
    ends = np.flatnonzero(data < 0x80)
    starts = np.concatenate(([0], ends[:-1] + 1)) if count else ends
    lengths = ends - starts + 1
    if count and int(lengths.max()) > 10:
        raise ModelFormatError(f"{label} holds a number longer than 10 bytes")
    # Each byte's 7 bits, shifted by 7 x its place in its number, or-ed together per number.
    place = np.arange(len(data)) - np.repeat(starts, lengths)
    bits = (data & 0x7F).astype(np.uint64) << (7 * place).astype(np.uint64)
    if not count:
        return np.zeros(0, np.uint64)
    decoded: Array = np.bitwise_or.reduceat(bits, starts)
    return decoded


# --- kernels: one builder per operator, reading attributes at load ------------------------------


def _elementwise(function: Callable[[Array], Array]) -> Callable[[NodeSpec], Kernel]:
    def build(spec: NodeSpec) -> Kernel:
        spec.inputs(1)
        return lambda a: function(a[0])

    return build


def _binary(function: Callable[[Array, Array], Array]) -> Callable[[NodeSpec], Kernel]:
    def build(spec: NodeSpec) -> Kernel:
        spec.inputs(2)
        return lambda a: function(a[0], a[1])

    return build


def _divide(x: Array, y: Array) -> Array:
    if np.issubdtype(x.dtype, np.integer):
        # ONNX integer division truncates toward zero (C semantics); numpy's // floors.
        quotient = np.abs(x) // np.abs(y)
        return np.where((x < 0) != (y < 0), -quotient, quotient)
    return np.divide(x, y)


def _power(x: Array, y: Array) -> Array:
    # The result has the base's type even when the exponent is, say, int64.
    return np.power(x, y).astype(x.dtype, copy=False)


def _sigmoid(x: Array) -> Array:
    one = x.dtype.type(1)
    result: Array = one / (one + np.exp(-x))
    return result


def _relu(x: Array) -> Array:
    result: Array = np.maximum(x, x.dtype.type(0))
    return result


def _leaky_relu(spec: NodeSpec) -> Kernel:
    spec.inputs(1)
    alpha = spec.float_attr("alpha", 0.01)
    return lambda a: np.where(a[0] >= 0, a[0], a[0] * a[0].dtype.type(alpha))


def _gemm(spec: NodeSpec) -> Kernel:
    spec.inputs(2, 3)
    alpha, beta = spec.float_attr("alpha", 1.0), spec.float_attr("beta", 1.0)
    trans_a, trans_b = spec.int_attr("transA", 0), spec.int_attr("transB", 0)

    def gemm(a: Sequence[Array]) -> Array:
        left = a[0].T if trans_a else a[0]
        right = a[1].T if trans_b else a[1]
        result = left @ right
        scalar = result.dtype.type
        if alpha != 1.0:
            result = result * scalar(alpha)
        if len(a) > 2 and beta != 0.0:
            result = result + (a[2] if beta == 1.0 else a[2] * scalar(beta))
        return result.astype(a[0].dtype, copy=False)

    return gemm


def _softmax(spec: NodeSpec) -> Kernel:
    spec.inputs(1)
    if spec.opset >= 13:
        axis = spec.int_attr("axis", -1)
        return lambda a: _softmax_along(a[0], axis)
    # Before opset 13 the input is coerced to 2-D [outer, inner] at ``axis`` and the softmax
    # runs over all of ``inner`` at once.
    old_axis = spec.int_attr("axis", 1)

    def coerced(a: Sequence[Array]) -> Array:
        x = a[0]
        axis = old_axis + x.ndim if old_axis < 0 else old_axis
        inner = math.prod(x.shape[axis:])
        flat = x.reshape(math.prod(x.shape[:axis]), inner)
        return _softmax_along(flat, 1).reshape(x.shape)

    return coerced


def _softmax_along(x: Array, axis: int) -> Array:
    exp: Array = np.exp(x - np.max(x, axis=axis, keepdims=True))
    total: Array = np.sum(exp, axis=axis, keepdims=True)
    return exp / total


def _reduction(
    reduce: Callable[[Array, tuple[int, ...] | None, bool], Array], axes_input_since: int
) -> Callable[[NodeSpec], Kernel]:
    """ReduceX: axes from the attribute before ``axes_input_since``, from input 2 after."""

    def build(spec: NodeSpec) -> Kernel:
        keepdims = bool(spec.int_attr("keepdims", 1))
        if spec.opset < axes_input_since:
            spec.inputs(1)
            axes = spec.ints_attr("axes") or None  # absent or empty: reduce over every axis
            return lambda a: reduce(a[0], axes, keepdims)
        spec.inputs(1, 2)
        noop = bool(spec.int_attr("noop_with_empty_axes", 0))
        at = spec.position(1)

        def reduce_by_input(a: Sequence[Array]) -> Array:
            axes = _int_list(a[at]) if at is not None else []
            if not axes and noop:
                return reduce(a[0], (), keepdims)  # reduce over no axis: elementwise part only
            return reduce(a[0], tuple(axes) or None, keepdims)

        return reduce_by_input

    return build


def _reduce_mean(x: Array, axes: tuple[int, ...] | None, keepdims: bool) -> Array:
    if axes == ():
        return x
    mean: Array = np.mean(x, axis=axes, keepdims=keepdims, dtype=x.dtype)
    return mean


def _reduce_sum(x: Array, axes: tuple[int, ...] | None, keepdims: bool) -> Array:
    return x if axes == () else np.sum(x, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _reduce_sum_square(x: Array, axes: tuple[int, ...] | None, keepdims: bool) -> Array:
    square = np.square(x)
    return square if axes == () else np.sum(square, axis=axes, keepdims=keepdims, dtype=x.dtype)


def _int_list(array: Array) -> list[int]:
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _reshape(spec: NodeSpec) -> Kernel:
    spec.inputs(2)
    allow_zero = bool(spec.int_attr("allowzero", 0))

    def reshape(a: Sequence[Array]) -> Array:
        x, shape = a[0], _int_list(a[1])
        if not allow_zero:  # 0 means "keep this input dimension"
            shape = [x.shape[i] if size == 0 else size for i, size in enumerate(shape)]
        return x.reshape(shape)

    return reshape


def _flatten(spec: NodeSpec) -> Kernel:
    spec.inputs(1)
    axis = spec.int_attr("axis", 1)

    def flatten(a: Sequence[Array]) -> Array:
        x = a[0]
        at = axis + x.ndim if axis < 0 else axis
        if not 0 <= at <= x.ndim:
            raise ValueError(f"axis {axis} is out of range for rank {x.ndim}")
        return x.reshape(math.prod(x.shape[:at]), math.prod(x.shape[at:]))

    return flatten


def _transpose(spec: NodeSpec) -> Kernel:
    spec.inputs(1)
    perm = spec.ints_attr("perm")
    return lambda a: np.transpose(a[0], perm)


AxesOf = Callable[[Sequence[Array]], tuple[int, ...] | None]


def _axes_operand(spec: NodeSpec, input_since: int, required: bool) -> AxesOf:
    """Squeeze/Unsqueeze axes: the attribute before ``input_since``, input 2 from then on.
    Returns a function of the kernel's arguments giving the axes (None when absent)."""
    if spec.opset < input_since:
        spec.inputs(1)
        axes = spec.ints_attr("axes")
        if required and axes is None:
            raise spec.fail("attribute 'axes' is required")
        return lambda a: axes
    spec.inputs(2 if required else 1, 2)
    at = spec.position(1)
    return lambda a: None if at is None else tuple(_int_list(a[at]))


def _squeeze(spec: NodeSpec) -> Kernel:
    axes_of = _axes_operand(spec, 13, required=False)

    def squeeze(a: Sequence[Array]) -> Array:
        axes = axes_of(a)
        return np.squeeze(a[0]) if axes is None else np.squeeze(a[0], axis=axes)

    return squeeze


def _unsqueeze(spec: NodeSpec) -> Kernel:
    axes_of = _axes_operand(spec, 13, required=True)

    def unsqueeze(a: Sequence[Array]) -> Array:
        # expand_dims normalises negative axes against the output rank, as ONNX specifies.
        return np.expand_dims(a[0], axes_of(a) or ())

    return unsqueeze


def _concat(spec: NodeSpec) -> Kernel:
    if not spec.node.inputs:
        raise spec.fail("takes at least one input")
    axis = spec.required_int_attr("axis")
    return lambda a: np.concatenate(a, axis=axis)


def _slice(spec: NodeSpec) -> Kernel:
    if spec.opset < 10:
        spec.inputs(1)
        starts, ends = spec.ints_attr("starts"), spec.ints_attr("ends")
        if starts is None or ends is None:
            raise spec.fail("attributes 'starts' and 'ends' are required")
        axes = spec.ints_attr("axes")
        return lambda a: _slice_array(a[0], starts, ends, axes, None)
    spec.inputs(3, 5)
    axes_at, steps_at = spec.position(3), spec.position(4)

    def slice_by_input(a: Sequence[Array]) -> Array:
        axes = None if axes_at is None else _int_list(a[axes_at])
        steps = None if steps_at is None else _int_list(a[steps_at])
        return _slice_array(a[0], _int_list(a[1]), _int_list(a[2]), axes, steps)

    return slice_by_input


def _slice_array(
    x: Array,
    starts: Sequence[int],
    ends: Sequence[int],
    axes: Sequence[int] | None,
    steps: Sequence[int] | None,
) -> Array:
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError("starts, ends, axes and steps must have the same length")
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step == 0:
            raise ValueError("a slice step cannot be 0")
        at = axis + x.ndim if axis < 0 else axis
        index[at] = _clamped_slice(start, end, step, x.shape[at])
    return x[tuple(index)]


def _clamped_slice(start: int, end: int, step: int, size: int) -> slice:
    # ONNX clamps after adding the size to negative bounds; a negative-step end of -1 then
    # means "through index 0", which a Python slice spells as None.
    start = start + size if start < 0 else start
    end = end + size if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), size), min(max(end, 0), size), step)
    start = min(max(start, 0), size - 1)
    end = min(max(end, -1), size - 1)
    return slice(start, None if end < 0 else end, step)


def _gather(spec: NodeSpec) -> Kernel:
    spec.inputs(2)
    axis = spec.int_attr("axis", 0)
    return lambda a: np.take(a[0], a[1], axis=axis)


def _identity(spec: NodeSpec) -> Kernel:
    spec.inputs(1)
    return lambda a: a[0]


def _constant(spec: NodeSpec) -> Kernel:
    spec.inputs(0)
    given = list(spec.node.attributes.values())
    if len(given) != 1:
        raise spec.fail(f"needs exactly one value attribute, got {[a.name for a in given]}")
    attribute = given[0]
    value: Array
    if attribute.name == "value" and attribute.kind == "tensor" and attribute.t is not None:
        value = tensor_to_array(attribute.t, spec.label)
    elif attribute.name == "value_float" and attribute.kind == "float":
        value = np.array(attribute.f, dtype=np.float32)
    elif attribute.name == "value_floats" and attribute.kind == "floats":
        value = np.array(attribute.floats, dtype=np.float32)
    elif attribute.name == "value_int" and attribute.kind == "int":
        value = np.array(attribute.i, dtype=np.int64)
    elif attribute.name == "value_ints" and attribute.kind == "ints":
        value = np.array(attribute.ints, dtype=np.int64)
    else:
        raise UnsupportedModel(
            f"{spec.label}: Constant {attribute.name!r} ({attribute.kind}) is not supported "
            "by the numpy backend"
        )
    constant = _read_only(value)
    return lambda a: constant


def _cast(spec: NodeSpec) -> Kernel:
    spec.inputs(1)
    to = spec.required_int_attr("to")
    name = NUMPY_DTYPES.get(to)
    if name is None:
        raise UnsupportedModel(
            f"{spec.label}: cast to {elem_type_name(to)} is not supported by the numpy backend"
        )
    dtype = np.dtype(name)
    return lambda a: a[0].astype(dtype)


_BUILDERS: dict[str, Callable[[NodeSpec], Kernel]] = {
    "MatMul": _binary(np.matmul),
    "Gemm": _gemm,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(_divide),
    "Pow": _binary(_power),
    "Relu": _elementwise(_relu),
    "LeakyRelu": _leaky_relu,
    "Sigmoid": _elementwise(_sigmoid),
    "Tanh": _elementwise(np.tanh),
    "Softmax": _softmax,
    "Sqrt": _elementwise(np.sqrt),
    "Abs": _elementwise(np.abs),
    "Exp": _elementwise(np.exp),
    "Log": _elementwise(np.log),
    "ReduceMean": _reduction(_reduce_mean, axes_input_since=18),
    "ReduceSum": _reduction(_reduce_sum, axes_input_since=13),
    "ReduceSumSquare": _reduction(_reduce_sum_square, axes_input_since=18),
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Concat": _concat,
    "Slice": _slice,
    "Gather": _gather,
    "Identity": _identity,
    "Constant": _constant,
    "Cast": _cast,
}

SUPPORTED_OPERATORS: frozenset[str] = frozenset(_BUILDERS)
