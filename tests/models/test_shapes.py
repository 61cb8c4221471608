"""The shape rules behind the size limits agree with numpy on every shape numpy accepts:
a rule that guessed smaller than numpy allocates would let a bomb through."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from models import shapes

SHAPES = st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple)


def numpy_shape(compute: Callable[[], Any]) -> tuple[int, ...] | None:
    """The shape numpy gives (of an array, or a shape itself), None when numpy refuses."""
    try:
        result = compute()
    except (ValueError, IndexError):
        return None
    return tuple(result) if isinstance(result, tuple) else np.shape(result)


@given(st.lists(SHAPES, min_size=1, max_size=3))
def test_broadcast_is_numpys(operands: list[tuple[int, ...]]) -> None:
    expected = numpy_shape(lambda: np.broadcast_shapes(*operands))
    assert shapes.broadcast(operands) == expected


@st.composite
def matmul_operands(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes whose inner dimensions agree (random pairs rarely do, and numpy refuses
    those: hypothesis would give up on filtering them out)."""
    a, b = draw(SHAPES), list(draw(SHAPES))
    b[-2 if len(b) > 1 else -1] = a[-1]
    return a, tuple(b)


@given(matmul_operands())
def test_matmul_is_numpys_where_numpy_accepts_it(
    operands: tuple[tuple[int, ...], tuple[int, ...]],
) -> None:
    a, b = operands
    expected = numpy_shape(lambda: np.zeros(a) @ np.zeros(b))
    assume(expected is not None)
    assert shapes.matmul(a, b) == expected


@st.composite
def concat_operands(draw: st.DrawFn) -> tuple[list[tuple[int, ...]], int]:
    """Shapes that agree but on one axis, and that axis (from either end)."""
    base = draw(SHAPES)
    axis = draw(st.integers(-len(base), len(base) - 1))
    lengths = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    operands = []
    for length in lengths:
        shape = list(base)
        shape[axis] = length
        operands.append(tuple(shape))
    return operands, axis


@given(concat_operands())
def test_concat_is_numpys_where_numpy_accepts_it(
    operands_and_axis: tuple[list[tuple[int, ...]], int],
) -> None:
    operands, axis = operands_and_axis
    expected = numpy_shape(lambda: np.concatenate([np.zeros(s) for s in operands], axis=axis))
    assume(expected is not None)
    assert shapes.concat(operands, axis) == expected


@given(SHAPES, SHAPES, st.integers(-4, 3))
def test_gather_is_numpys(data: tuple[int, ...], indices: tuple[int, ...], axis: int) -> None:
    expected = numpy_shape(lambda: np.take(np.zeros(data), np.zeros(indices, np.int64), axis=axis))
    assume(expected is not None)
    assert shapes.gather([data, indices], axis) == expected


@given(SHAPES, st.data())
def test_rearranging_rules_are_numpys(shape: tuple[int, ...], data: st.DataObject) -> None:
    x = np.zeros(shape)
    rank = len(shape)
    perm = tuple(data.draw(st.permutations(range(rank))))
    assert shapes.transpose(shape, perm) == np.transpose(x, perm).shape
    axis = data.draw(st.integers(-rank, rank))
    at = axis % (rank + 1)
    flat = (int(np.prod(shape[:at])), int(np.prod(shape[at:])))
    assert shapes.flatten(shape, axis) == flat
    axes = tuple(data.draw(st.sets(st.integers(0, rank - 1), min_size=1)))
    keep = data.draw(st.booleans())
    assert shapes.reduce(shape, axes, keep) == np.sum(x, axis=axes, keepdims=keep).shape
    new = data.draw(st.integers(-rank - 1, rank))
    assert shapes.squeeze_dims(shape, (new,), squeeze=False) == np.expand_dims(x, new).shape
    assert shapes.squeeze_dims(shape, None, squeeze=True) == np.squeeze(x).shape
    if x.size:
        target = (-1, *shape[1:])
        assert shapes.reshape(shape, target, allow_zero=False) == x.reshape(target).shape
