"""Sliding and tumbling windows: contents, emission points, blocks, and fixed memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.windows import Window, WindowBatch


def reference_windows(
    readings: list[tuple[float, list[float]]], size: int, hop: int
) -> list[tuple[list[float], list[list[float]]]]:
    """The spec read literally: after reading k (1-based), emit the last size readings
    when k >= size and (k - size) is a multiple of hop."""
    out = []
    for k in range(1, len(readings) + 1):
        if k >= size and (k - size) % hop == 0:
            last = readings[k - size : k]
            out.append(([t for t, _ in last], [v for _, v in last]))
    return out


def test_sliding_window_emits_every_hop_once_full() -> None:
    window = Window(4, 2)
    emitted = []
    for i in range(10):
        got = window.push(float(i), float(i) * 10)
        emitted.append(None if got is None else got.tolist())
    assert emitted == [
        None,
        None,
        None,
        [0.0, 10.0, 20.0, 30.0],
        None,
        [20.0, 30.0, 40.0, 50.0],
        None,
        [40.0, 50.0, 60.0, 70.0],
        None,
        [60.0, 70.0, 80.0, 90.0],
    ]
    assert (window.first_time, window.last_time) == (6.0, 9.0)
    assert window.times.tolist() == [6.0, 7.0, 8.0, 9.0]


def test_tumbling_windows_do_not_overlap() -> None:
    window = Window(3)  # hop defaults to size
    assert window.hop == 3
    got = [window.push(float(i), i) for i in range(9)]
    # Each view is valid only until the next push: by now all three show the last window.
    assert [w.tolist() for w in got if w is not None] == [[6, 7, 8]] * 3
    window.reset()
    full = [w.tolist() for i in range(9) if (w := window.push(float(i), i)) is not None]
    assert full == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_hop_one_emits_on_every_reading_once_full() -> None:
    window = Window(3, 1)
    got = [None if (w := window.push(float(i), i)) is None else w.tolist() for i in range(5)]
    assert got == [
        None,
        None,
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
    ]


def test_window_is_a_contiguous_view_valid_until_the_next_push() -> None:
    window = Window(3, 1)
    for i in range(3):
        got = window.push(float(i), i)
    assert got is not None
    assert got.flags.c_contiguous
    assert not got.flags.owndata
    kept = got.copy()
    window.push(3.0, 3)
    assert kept.tolist() == [0, 1, 2]


def test_vector_readings() -> None:
    window = Window(2, 2, width=3)
    assert window.push(0.0, (1.0, 2.0, 3.0)) is None
    got = window.push(0.5, np.array([4.0, 5.0, 6.0]))
    assert got is not None
    assert got.shape == (2, 3)
    assert got.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert got.flags.c_contiguous


def test_partial_window_before_full() -> None:
    window = Window(5, 1)
    window.push(1.0, 7.0)
    window.push(2.0, 8.0)
    assert window.values.tolist() == [7.0, 8.0]
    assert (window.first_time, window.last_time) == (1.0, 2.0)
    assert not window.full
    assert window.count == 2


def test_empty_window_has_no_times() -> None:
    with pytest.raises(ValueError, match="no readings"):
        _ = Window(2).first_time
    with pytest.raises(ValueError, match="no readings"):
        _ = Window(2).last_time


def test_reset_starts_over() -> None:
    window = Window(2, 1)
    window.push(0.0, 1.0)
    window.push(1.0, 2.0)
    window.reset()
    assert window.count == 0
    assert window.push(5.0, 3.0) is None
    got = window.push(6.0, 4.0)
    assert got is not None
    assert got.tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    ("size", "hop", "width", "match"),
    [(0, None, None, "size"), (3, 0, None, "hop"), (3, 4, None, "hop"), (3, 1, 0, "width")],
)
def test_invalid_shapes_are_refused(
    size: int, hop: int | None, width: int | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        Window(size, hop, width=width)


def test_time_must_not_go_back() -> None:
    window = Window(3, 1)
    window.push(5.0, 1.0)
    window.push(5.0, 1.0)  # equal is fine
    with pytest.raises(ValueError, match="before the previous"):
        window.push(4.0, 1.0)
    with pytest.raises(ValueError, match="must not decrease"):
        window.push_block([6.0, 5.5], [1.0, 1.0])
    with pytest.raises(ValueError, match="must not decrease"):
        window.push_block([4.0], [1.0])


def test_push_block_checks_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        Window(3, width=3).push_block([0.0, 1.0], [[1, 2, 3]])
    with pytest.raises(ValueError, match="shape"):
        Window(3, width=3).push_block([0.0], [1.0])
    with pytest.raises(ValueError, match="shape"):
        Window(3).push_block([[0.0]], [1.0])


def test_push_block_of_a_fifo_read() -> None:
    # 20 samples of x, y, z at 100 Hz into tumbling windows of 8: two windows, 4 left over.
    window = Window(8, width=3)
    times = 10.0 + np.arange(20) / 100
    samples = np.arange(60, dtype=np.float64).reshape(20, 3)
    batch = window.push_block(times, samples)
    assert isinstance(batch, WindowBatch)
    assert batch.values.shape == (2, 8, 3)
    assert batch.times.shape == (2, 8)
    np.testing.assert_array_equal(batch.values[1], samples[8:16])
    np.testing.assert_array_equal(batch.times[0], times[:8])
    assert window.count == 20
    empty = window.push_block(times[:0] + 11, samples[:0])
    assert empty.values.shape == (0, 8, 3)


Reading = tuple[float, list[float]]


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, int, int | None, list[Reading], list[int]]:
    size = draw(st.integers(1, 9))
    hop = draw(st.integers(1, size))
    width = draw(st.sampled_from([None, 1, 3]))
    n = draw(st.integers(0, 60))
    steps = draw(st.lists(st.sampled_from([0.0, 0.01, 1.0]), min_size=n, max_size=n))
    values = st.floats(-1e6, 1e6)
    readings: list[Reading] = []
    t = 0.0
    for dt in steps:
        t += dt
        readings.append((t, draw(st.lists(values, min_size=width or 1, max_size=width or 1))))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    return size, hop, width, readings, cuts


@given(streams())
def test_push_and_push_block_agree_with_the_reference(
    stream: tuple[int, int, int | None, list[Reading], list[int]],
) -> None:
    size, hop, width, readings, cuts = stream
    expected = reference_windows(readings, size, hop)

    def shaped(v: list[float]) -> list[float] | float:
        return v if width is not None else v[0]

    one = Window(size, hop, width=width)
    by_push = []
    for t, v in readings:
        got = one.push(t, shaped(v))
        if got is not None:
            by_push.append((one.times.tolist(), got.tolist()))
    assert by_push == [(ts, [shaped(v) for v in vs]) for ts, vs in expected]

    blocks = Window(size, hop, width=width)
    by_block = []
    for lo, hi in zip([0, *cuts], [*cuts, len(readings)], strict=True):
        part = readings[lo:hi]
        batch = blocks.push_block([t for t, _ in part], [shaped(v) for _, v in part])
        by_block += list(zip(batch.times.tolist(), batch.values.tolist(), strict=True))
    assert by_block == by_push
    assert blocks.count == one.count == len(readings)
    if readings:
        assert blocks.values.tolist() == one.values.tolist()
        assert (blocks.first_time, blocks.last_time) == (one.first_time, one.last_time)


def test_memory_is_fixed_over_a_long_run() -> None:
    window = Window(64, 16, width=3)
    first = window.push(0.0, (0.0, 0.0, 0.0))
    assert first is None
    base = window.values.base
    assert base is not None
    nbytes = base.nbytes
    sample = np.zeros(3)
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for i in range(1, 100_000):
            sample[0] = i
            got = window.push(i * 0.001, sample)
            if got is not None:
                assert got.base is base
                assert base.nbytes == nbytes
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert window.values.base is base
    assert base.nbytes == nbytes == 2 * 64 * 3 * 8
    assert end - start < 4096  # nothing kept per reading
