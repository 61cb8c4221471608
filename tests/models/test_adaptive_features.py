"""What the adaptive detector's categories see: the median of recent levels, and the shape of
a window whatever its level and scale."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.adaptive_features import MedianRing, shape

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.integers(min_value=1, max_value=12), st.lists(values, max_size=60))
def test_the_ring_holds_the_last_values_and_their_median(size: int, series: list[float]) -> None:
    ring = MedianRing(size)
    assert math.isnan(ring.median()) and ring.values() == []
    for i, value in enumerate(series, start=1):
        ring.add(value)
        last = series[max(0, i - size) : i]
        assert ring.values() == last and len(ring) == len(last)
        assert ring.median() == statistics.median(last)


@given(st.integers(min_value=1, max_value=12), st.lists(values, max_size=40), st.lists(values))
def test_a_restored_ring_is_the_ring_it_was(
    size: int, series: list[float], after: list[float]
) -> None:
    ring = MedianRing(size)
    for value in series:
        ring.add(value)
    copy = MedianRing(size)
    copy.restore(series)  # more than it holds: the newest are kept
    for value in after:
        ring.add(value)
        copy.add(value)
    assert copy.values() == ring.values()
    if series or after:
        assert copy.median() == ring.median()


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_ring_refuses_a_non_finite_value_to_restore_and_stays_as_it_was(bad: float) -> None:
    ring = MedianRing(4)
    for value in (1.0, 5.0, 3.0):
        ring.add(value)
    with pytest.raises(ValueError, match="finite"):
        ring.restore([2.0, bad])
    assert ring.values() == [1.0, 5.0, 3.0] and ring.median() == 3.0


windows = st.lists(st.integers(min_value=-1000, max_value=1000), min_size=8, max_size=8)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_the_shape_of_a_constant_window_is_zeros(level: float) -> None:
    assert shape([level] * 8) == [0.0] * 8


@given(windows)
def test_a_shape_spans_0_to_1_unless_the_window_is_flat(window: list[int]) -> None:
    found = shape([float(v) for v in window])
    assert len(found) == 8 and all(0.0 <= v <= 1.0 + 1e-15 for v in found)  # (v - low) / span
    if len(set(window)) > 1:
        assert min(found) == 0.0 and max(found) == pytest.approx(1.0, abs=1e-15)


@given(
    windows,
    st.floats(min_value=1e-3, max_value=1e3),
    st.floats(min_value=-1e4, max_value=1e4),
)
def test_a_shape_does_not_depend_on_the_windows_level_or_scale(
    window: list[int], scale: float, offset: float
) -> None:
    plain = shape([float(v) for v in window])
    moved = shape([offset + scale * v for v in window])
    assert moved == pytest.approx(plain, abs=1e-9)


def test_a_shape_tells_a_rise_from_a_fall() -> None:
    rise = [float(v) for v in range(8)]
    assert shape(rise) != shape(rise[::-1])
    assert shape(rise) == pytest.approx(shape([10.0 * v for v in rise]))
