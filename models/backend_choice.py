"""Which backend ``backend="auto"`` runs a model on: the numpy backend for small models,
onnxruntime where it pays.

onnxruntime costs a fixed ~35-40 MB of resident memory (its import, then a session) against
a device budget of 40 MB for everything else, and saves little time on a small model: both
backends hand a MatMul or Gemm to an optimised BLAS, and what differs is the cost per node,
about 2.5 microseconds more with the numpy interpreter. So a model is small when it has few
nodes and little arithmetic; measured on a 2-core x86-64 machine (one BLAS thread, the
microseconds of one run, onnxruntime against numpy):

========================  ==========  ===========
model                     onnxruntime  numpy
========================  ==========  ===========
shipped ``vibration``        8.5        14.1
PCA, 512 inputs             25.8        34.0
PCA, 1,024 inputs           82.3       110.4
PCA, 2,048 inputs          431.7       424.9
10 dense layers of 64       13.0        60.5
40 dense layers of 64       34.9       217.4
========================  ==========  ===========

At the line (:data:`MAX_NODES` nodes, :data:`MAX_MULTIPLY_ADDS` multiply-adds a run) numpy
costs at most some 30-50 microseconds more per run: 0.05 % of a core for a window a second.
Past it the model's own weights and arithmetic dwarf what onnxruntime's memory would save.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from models.onnx_reader import Node, OnnxModel
from models.shapes import Shape, SizePlan

Backend = Literal["onnxruntime", "numpy"]

MAX_NODES = 16
MAX_MULTIPLY_ADDS = 1_000_000  # a 1,000 x 1,000 float32 MatMul: 4 MB of weights


@dataclass(frozen=True)
class ModelCost:
    """What one run of a model costs, as far as choosing a backend goes.

    ``multiply_adds`` counts the MatMul and Gemm nodes of a run with every dimension the file
    leaves open taken as 1 (a detector feeds one window a run); ``unsupported`` lists the
    operators the numpy backend lacks.
    """

    nodes: int
    multiply_adds: int
    unsupported: tuple[str, ...]

    @property
    def small(self) -> bool:
        """Whether the numpy backend runs it at about onnxruntime's cost."""
        return self.nodes <= MAX_NODES and self.multiply_adds <= MAX_MULTIPLY_ADDS

    def describe(self) -> str:
        nodes = "1 node" if self.nodes == 1 else f"{self.nodes} nodes"
        text = f"{nodes}, {self.multiply_adds:,} multiply-adds a run"
        if self.unsupported:
            text += f", operators the numpy backend lacks: {', '.join(self.unsupported)}"
        return text


def auto_backend(cost: ModelCost, onnxruntime_installed: Callable[[], bool]) -> tuple[Backend, str]:
    """The backend "auto" picks for a model of ``cost``, and why. ``onnxruntime_installed``
    is asked only when the answer depends on it: a small model never imports onnxruntime."""
    if cost.small and not cost.unsupported:
        return "numpy", f"auto: small, {cost.describe()}"
    if onnxruntime_installed():
        why = "an operator the numpy backend lacks" if cost.unsupported else "large"
        return "onnxruntime", f"auto: {why}, {cost.describe()}"
    return "numpy", f"auto: onnxruntime is not installed, {cost.describe()}"


def model_cost(onnx: OnnxModel, sizes: SizePlan) -> ModelCost:
    """The cost of one run of ``onnx``, whose sizes ``sizes`` works out."""
    from models.numpy_backend import SUPPORTED_OPERATORS

    graph = onnx.graph
    initialized = {t.name for t in graph.initializers}
    fed: dict[str, Shape] = {
        v.name: tuple(d if isinstance(d, int) and d >= 0 else 1 for d in v.shape)
        for v in graph.inputs
        if v.name not in initialized and v.shape is not None
    }
    shapes = sizes.shapes(fed)
    unsupported = sorted(
        {
            node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
            for node in graph.nodes
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPERATORS
        }
    )
    multiply_adds = 0
    for node in graph.nodes:
        if node.op_type in ("MatMul", "Gemm") and node.domain in ("", "ai.onnx"):
            a, b = (shapes.get(name) for name in (*node.inputs, "", "")[:2])
            output = shapes.get(node.outputs[0]) if node.outputs else None
            multiply_adds += _multiply_adds(node, a, b, output)
    return ModelCost(len(graph.nodes), multiply_adds, tuple(unsupported))


def _multiply_adds(node: Node, a: Shape | None, b: Shape | None, output: Shape | None) -> int:
    """Output values times the contracted dimension; unknown dims count as 1."""
    contracted: int | None = None
    if node.op_type == "Gemm":
        trans_a, trans_b = _flag(node, "transA"), _flag(node, "transB")
        if a is not None and len(a) == 2:
            contracted = a[0] if trans_a else a[1]
        if contracted is None and b is not None and len(b) == 2:
            contracted = b[1] if trans_b else b[0]
    else:
        if a:
            contracted = a[-1]
        if contracted is None and b:
            contracted = b[-2] if len(b) >= 2 else b[0]
    values = 1 if output is None else math.prod(d if d is not None else 1 for d in output)
    return values * (1 if contracted is None else contracted)


def _flag(node: Node, name: str) -> bool:
    attribute = node.attributes.get(name)
    return attribute is not None and attribute.i != 0
