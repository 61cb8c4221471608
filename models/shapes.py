"""Tensor sizes checked before anything is allocated: the limits every backend applies.

A crafted model can ask for an array no device holds: an initializer of dims
``[0, 2**62, 2**62]``, an ``Add`` whose operands broadcast to 10**12 values, a ``MatMul`` of
two empty operands with a huge product. :func:`check_graph` works out, at load and for every
backend, the shape of each value it can (initializers, constants, graph inputs and outputs
of fixed size, and the outputs of the operators :func:`rule_for` knows) and refuses the
model with :class:`ModelTooLarge` when one would hold more than :data:`MAX_ELEMENTS` values.
The numpy backend applies the same rules at run time to the shapes it actually gets, so a
symbolic dimension cannot carry a bomb past the load.

Pure Python, no numpy: onnxruntime's models are checked before a session is created (its
constant folding would otherwise compute a bomb while loading).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from models.onnx_reader import (
    MAX_RANK,
    NUMPY_DTYPES,
    ModelFormatError,
    ModelTooLarge,
    Node,
    OnnxModel,
    Tensor,
)

# Values in any one tensor, initializer or intermediate: 128 MB of float32, far beyond what a
# model for a device computes, and far below what would take one down.
MAX_ELEMENTS = 1 << 25

Shape = tuple[int | None, ...]  # None: a dimension not known before the run
Values = tuple[int, ...] | None  # an int64 input's values, when known at load (a shape operand)
Rule = Callable[[Sequence[Shape], Sequence[Values]], Shape | None]

_INT64 = 7  # TensorProto.DataType
_MAX_VALUES = MAX_RANK  # a shape operand has one value per dim


def elements(shape: Shape) -> int:
    """Values an array of ``shape`` holds at least, counting the known non-zero dims only:
    numpy refuses a shape whose non-zero dims overflow, even when another dim is 0."""
    return math.prod(d for d in shape if d)


def check(shape: Shape, what: str) -> None:
    """Raise :class:`ModelTooLarge` naming ``what`` when ``shape`` is over a limit."""
    if len(shape) > MAX_RANK:
        raise ModelTooLarge(f"{what} has {len(shape)} dims, more than {MAX_RANK}")
    if any(d is not None and d < 0 for d in shape):
        raise ModelTooLarge(f"{what} has negative dims {_describe(shape)}")
    count = elements(shape)
    if count > MAX_ELEMENTS:
        raise ModelTooLarge(
            f"{what} would hold {count:,} values (shape {_describe(shape)}), more than the "
            f"limit of {MAX_ELEMENTS:,}"
        )


def check_graph(model: OnnxModel, where: str) -> SizePlan:
    """Refuse, before any backend allocates, a model with a tensor over the limits; return
    the plan that checks the graph again for the shapes its inputs are fed."""
    graph = model.graph
    declared: dict[str, Shape] = {}
    values: dict[str, Values] = {}
    for info in (*graph.inputs, *graph.outputs):
        if info.shape is not None:
            shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in info.shape)
            check(shape, f"{where}: {info.name!r}")
            declared.setdefault(info.name, shape)
    for tensor in graph.initializers:
        declared[tensor.name] = _tensor_shape(tensor, f"{where}: initializer {tensor.name!r}")
        values[tensor.name] = _int_values(tensor)
    steps: list[_Step] = []
    for node in graph.nodes:
        what = f"{where}: {node.label}"
        for attribute in node.attributes.values():
            for held in (attribute.t, *attribute.tensors):
                if held is not None:
                    _tensor_shape(held, f"{what} attribute {attribute.name!r}")
        if node.outputs and node.outputs[0] and node.domain in ("", "ai.onnx"):
            steps.append(_step(node, what))
    plan = SizePlan(declared, values, tuple(steps))
    plan.check({})
    return plan


@dataclass(frozen=True)
class _Step:
    label: str  # how a refusal names it: the file, the node and its output
    inputs: tuple[str, ...]  # the present ones
    output: str
    rule: Rule | None  # None: the output's shape is ``made`` (a Constant's), or unknown
    made: Shape | None = None
    made_values: Values = None


def _step(node: Node, what: str) -> _Step:
    inputs = tuple(name for name in node.inputs if name)
    output = node.outputs[0]
    label = f"{what} output {output!r}"
    if node.op_type == "Constant":
        value = node.attributes.get("value")
        tensor = None if value is None else value.t
        if tensor is None:
            return _Step(label, inputs, output, None)
        return _Step(label, inputs, output, None, tensor.dims, _int_values(tensor))
    return _Step(label, inputs, output, rule_for(node))


class SizePlan:
    """The shapes a graph's values take, worked out from the shapes its inputs get: checked
    at load with the declared ones, and again with those fed to a backend that cannot check
    each node itself (onnxruntime allocates inside a run)."""

    def __init__(
        self, declared: dict[str, Shape], values: dict[str, Values], steps: tuple[_Step, ...]
    ) -> None:
        self._declared = declared
        self._values = values
        self._steps = steps

    def check(self, fed: Mapping[str, Shape]) -> None:
        """Raise :class:`ModelTooLarge` when a value would be over the limits."""
        self.shapes(fed)

    def shapes(self, fed: Mapping[str, Shape]) -> dict[str, Shape]:
        """The shape of every value worked out from ``fed`` (and the declared shapes), each
        checked against the limits (:class:`ModelTooLarge`); a value whose shape is not
        known before the run is left out."""
        shapes = {**self._declared, **fed}
        values = dict(self._values)
        for step in self._steps:
            shape: Shape | None = step.made
            if step.rule is not None and step.inputs and all(n in shapes for n in step.inputs):
                arguments = [shapes[name] for name in step.inputs]
                shape = step.rule(arguments, [values.get(name) for name in step.inputs])
            if shape is None:
                continue
            check(shape, step.label)
            shapes[step.output] = shape
            if step.made_values is not None:
                values[step.output] = step.made_values
        return shapes


# Operators whose output can hold more values than their largest input: the only ones a run
# must check (the others keep, move or drop values).
GROWING = frozenset({"MatMul", "Gemm", "Concat", "Gather", "Expand", "Tile", "Range"})


def grows(node: Node) -> bool:
    return node.op_type in GROWING or node.op_type in _BROADCAST


def rule_for(node: Node) -> Rule | None:
    """The rule giving ``node``'s output shape from its inputs', None when it has none here."""
    op = node.op_type
    if op in _SAME_SHAPE:
        return lambda s, v: s[0]
    if op in _BROADCAST:
        return lambda s, v: broadcast(s)
    if op == "MatMul":
        return lambda s, v: matmul(s[0], s[1]) if len(s) == 2 else None
    if op == "Gemm":
        trans_a, trans_b = _int_attr(node, "transA", 0), _int_attr(node, "transB", 0)
        return lambda s, v: gemm(s, trans_a, trans_b)
    if op == "Concat":
        axis = _int_attr(node, "axis", 0)
        return lambda s, v: concat(s, axis)
    if op == "Gather":
        axis = _int_attr(node, "axis", 0)
        return lambda s, v: gather(s, axis) if len(s) == 2 else None
    if op in _VALUE_RULES:
        return _VALUE_RULES[op]
    return _rearranging_rule(node)


def _rearranging_rule(node: Node) -> Rule | None:
    """Rules for operators that keep the values but move the dims: a bomb can pass through
    them (a Transpose between an input and a broadcast), so the shape must too."""
    op = node.op_type
    if op == "Transpose":
        perm = _ints_attr(node, "perm")
        return lambda s, v: transpose(s[0], perm)
    if op == "Flatten":
        axis = _int_attr(node, "axis", 1)
        return lambda s, v: flatten(s[0], axis)
    if op == "Reshape":
        allow_zero = bool(_int_attr(node, "allowzero", 0))
        return lambda s, v: reshape(s[0], v[1], allow_zero) if len(v) == 2 else None
    if op in ("Squeeze", "Unsqueeze"):
        attribute = _ints_attr(node, "axes")
        squeeze = op == "Squeeze"
        return lambda s, v: squeeze_dims(
            s[0], attribute if attribute is not None else (v[1] if len(v) > 1 else None), squeeze
        )
    if op.startswith("Reduce"):
        keep = bool(_int_attr(node, "keepdims", 1))
        attribute = _ints_attr(node, "axes")
        return lambda s, v: reduce(
            s[0], attribute if attribute is not None else (v[1] if len(v) > 1 else ()), keep
        )
    return None


_SAME_SHAPE = frozenset({
    "Abs", "Cast", "Ceil", "Clip", "Elu", "Erf", "Exp", "Floor", "HardSigmoid", "Identity",
    "LeakyRelu", "Log", "LogSoftmax", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu",
    "Sigmoid", "Sign", "Softmax", "Softplus", "Sqrt", "Tanh",
})  # fmt: skip
_BROADCAST = frozenset({
    "Add", "And", "Div", "Equal", "Greater", "Less", "Max", "Min", "Mul", "Or", "Pow", "Sub",
    "Sum", "Where",
})  # fmt: skip


def broadcast(shapes: Sequence[Shape]) -> Shape | None:
    """numpy's (and ONNX's multidirectional) broadcast of ``shapes``; None if incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int | None] = []
    for back in range(1, rank + 1):
        dims = [s[-back] for s in shapes if len(s) >= back]
        sized = {d for d in dims if d is not None and d != 1}
        if len(sized) > 1:
            return None
        out.append(sized.pop() if sized else None if None in dims else 1)
    return tuple(reversed(out))


def matmul(a: Shape, b: Shape) -> Shape | None:
    if not a or not b:
        return None
    left = (1, *a) if len(a) == 1 else a
    right = (*b, 1) if len(b) == 1 else b
    batch = broadcast([left[:-2], right[:-2]])
    if batch is None:
        return None
    rows = () if len(a) == 1 else (left[-2],)
    columns = () if len(b) == 1 else (right[-1],)
    return (*batch, *rows, *columns)


def gemm(shapes: Sequence[Shape], trans_a: int, trans_b: int) -> Shape | None:
    if len(shapes) < 2 or len(shapes[0]) != 2 or len(shapes[1]) != 2:
        return None
    a, b = shapes[0], shapes[1]
    product: Shape = (a[1] if trans_a else a[0], b[0] if trans_b else b[1])
    # C is broadcast to the product, and numpy would broadcast the product to a larger C.
    return broadcast([product, shapes[2]]) if len(shapes) > 2 else product


def concat(shapes: Sequence[Shape], axis: int) -> Shape | None:
    rank = len(shapes[0]) if shapes else 0
    if not rank or any(len(s) != rank for s in shapes) or not -rank <= axis < rank:
        return None
    axis %= rank
    along = [s[axis] for s in shapes]
    total = None if None in along else sum(d for d in along if d is not None)
    return (*shapes[0][:axis], total, *shapes[0][axis + 1 :])


def gather(shapes: Sequence[Shape], axis: int) -> Shape | None:
    data, indices = shapes
    if not -len(data) <= axis < len(data):
        return None
    axis %= len(data)
    return (*data[:axis], *indices, *data[axis + 1 :])


def transpose(shape: Shape, perm: tuple[int, ...] | None) -> Shape | None:
    order = tuple(reversed(range(len(shape)))) if perm is None else perm
    if sorted(order) != list(range(len(shape))):
        return None
    return tuple(shape[axis] for axis in order)


def flatten(shape: Shape, axis: int) -> Shape | None:
    if not -len(shape) <= axis <= len(shape):
        return None
    axis %= len(shape) + 1
    outer, inner = shape[:axis], shape[axis:]
    return (_product(outer), _product(inner))


def reshape(shape: Shape, target: Values, allow_zero: bool) -> Shape | None:
    if target is None:
        return None
    dims: list[int | None] = []
    for at, size in enumerate(target):
        if size == 0 and not allow_zero:
            dims.append(shape[at] if at < len(shape) else None)
        else:
            dims.append(None if size == -1 else size)
    total = _product(shape)
    if dims.count(None) == 1 and target.count(-1) == 1 and total is not None:
        known = math.prod(d for d in dims if d is not None)
        dims[dims.index(None)] = total // known if known else 0
    return tuple(dims)


def squeeze_dims(shape: Shape, axes: Values, squeeze: bool) -> Shape | None:
    if squeeze:
        if axes is None:
            return None if None in shape else tuple(d for d in shape if d != 1)
        if not all(-len(shape) <= a < len(shape) for a in axes):
            return None
        dropped = {a % len(shape) for a in axes}
        return tuple(d for at, d in enumerate(shape) if at not in dropped)
    rank = len(shape) + len(axes or ())
    if axes is None or not all(-rank <= a < rank for a in axes):
        return None
    inserted = {a % rank for a in axes}
    rest = iter(shape)
    return tuple(1 if at in inserted else next(rest, None) for at in range(rank))


def reduce(shape: Shape, axes: Values, keep: bool) -> Shape | None:
    if axes is None or not all(-len(shape) <= a < len(shape) for a in axes):
        return None
    reduced = {a % len(shape) for a in axes} if axes else set(range(len(shape)))
    if keep:
        return tuple(1 if at in reduced else d for at, d in enumerate(shape))
    return tuple(d for at, d in enumerate(shape) if at not in reduced)


def _product(shape: Shape) -> int | None:
    return None if None in shape else math.prod(d for d in shape if d is not None)


def _expand(shapes: Sequence[Shape], values: Sequence[Values]) -> Shape | None:
    target = values[1] if len(values) == 2 else None
    return None if target is None else broadcast([shapes[0], target])


def _tile(shapes: Sequence[Shape], values: Sequence[Values]) -> Shape | None:
    repeats = values[1] if len(values) == 2 else None
    if repeats is None or len(repeats) != len(shapes[0]):
        return None
    return tuple(None if d is None else d * r for d, r in zip(shapes[0], repeats, strict=True))


def _constant_of_shape(shapes: Sequence[Shape], values: Sequence[Values]) -> Shape | None:
    return values[0]


def _range(shapes: Sequence[Shape], values: Sequence[Values]) -> Shape | None:
    known = [v[0] if v is not None and len(v) == 1 else None for v in values]
    if len(known) != 3 or None in known or not known[2]:
        return None
    start, limit, delta = (int(v or 0) for v in known)
    return (max(-(-(limit - start) // delta), 0),)  # ceil((limit - start) / delta)


_VALUE_RULES: dict[str, Rule] = {
    "Expand": _expand,
    "Tile": _tile,
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
}


def _tensor_shape(tensor: Tensor, what: str) -> Shape:
    shape: Shape = tuple(tensor.dims)
    check(shape, what)
    _check_payload(tensor, what)
    return shape


# Bytes per value in raw_data of the types numpy holds, and which typed field holds them.
_ITEMSIZE = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8}


def _check_payload(tensor: Tensor, what: str) -> None:
    """The values a tensor holds must be as many as its dims say, for every backend alike
    (onnxruntime skips an unused initializer that the numpy backend would refuse)."""
    if tensor.external or tensor.segmented or tensor.data_type not in NUMPY_DTYPES:
        return
    count = math.prod(tensor.dims)
    if tensor.raw_data is not None:
        given = len(tensor.raw_data)
        expected = count * _ITEMSIZE[tensor.data_type]
        unit = "bytes"
    else:
        given = (
            len(tensor.float_data)
            + len(tensor.double_data)
            + tensor.int32_data.count
            + tensor.int64_data.count
            + tensor.uint64_data.count
        )
        expected, unit = count, "values"
    if given != expected:
        raise ModelFormatError(
            f"{what} holds {given:,} {unit}, its dims {list(tensor.dims)} say {expected:,}"
        )


def _int_values(tensor: Tensor) -> Values:
    """An int64 tensor's values when it is small enough to be a shape operand."""
    count = elements(tuple(tensor.dims)) if all(tensor.dims) else 0
    if tensor.data_type != _INT64 or count > _MAX_VALUES or len(tensor.dims) > 1:
        return None
    if tensor.raw_data is not None:
        if len(tensor.raw_data) != 8 * count:
            return None
        return struct.unpack(f"<{count}q", tensor.raw_data)
    if tensor.int64_data.count != count:
        return None
    return tuple(tensor.int64_data.signed64())


def _ints_attr(node: Node, name: str) -> tuple[int, ...] | None:
    attribute = node.attributes.get(name)
    return None if attribute is None else attribute.ints


def _int_attr(node: Node, name: str, default: int) -> int:
    attribute = node.attributes.get(name)
    return default if attribute is None else attribute.i


def _describe(shape: Shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
