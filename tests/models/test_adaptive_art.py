"""The adaptive detector's category memory: dual-vigilance fuzzy ART in a bounded table."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.adaptive_art import Array, Categories

# The detector's layout: 8 shape values, then 8 values normalised to a range (the last one
# the latest), complement-coded.
DIM, START = 16, 8


def coded(values: list[float]) -> Array:
    x = np.array(values, dtype=np.float64)
    return np.concatenate((x, 1.0 - x))


def pattern(shape: list[float], raw: list[float], low: float, span: float) -> Array:
    """A pattern of ``raw`` values in the frame (``low``, ``span``)."""
    return coded([*shape, *((v - low) / span for v in raw)])


def table(size: int = 8) -> Categories:
    return Categories(DIM, DIM - 1, size)


unit = st.floats(min_value=0.0, max_value=1.0)
shapes = st.lists(unit, min_size=8, max_size=8)
raws = st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=8, max_size=8)


def test_the_first_pattern_is_a_new_cluster_and_itself_matches_fully() -> None:
    art = table()
    x = coded([0.5] * DIM)
    assert art.train(x, 1, 0.9, 0.5) == (True, 0.0, 0.0)
    assert art.count == 1
    assert art.train(x, 2, 0.9, 0.5) == (False, 1.0, 1.0)
    assert art.count == 1  # resonance: learnt into the category, no new one


def test_a_pattern_short_of_the_upper_vigilance_is_a_new_category_of_either_cluster() -> None:
    art = table()
    art.train(coded([0.5] * DIM), 1, 0.9, 0.5)
    near = coded([0.5] * (DIM - 1) + [0.45])
    new, a, e = art.train(near, 2, 0.99, 0.1)
    assert (new, art.count) == (False, 2) and 0.1 <= a < 0.99 and e < 1.0
    far = coded([0.0] * (DIM - 1) + [1.0])
    new, a, _ = art.train(far, 3, 0.99, 0.9)
    assert (new, art.count) == (True, 3) and a < 0.9


def test_without_learning_nothing_changes() -> None:
    art = table()
    art.train(coded([0.2] * DIM), 1, 0.9, 0.5)
    before = art.snapshot()
    assert art.train(coded([0.9] * DIM), 2, 0.9, 0.5, learning=False)[0] is False
    assert art.snapshot() == before


def test_a_full_table_makes_room_by_dropping_the_least_recently_used() -> None:
    art = table(size=3)
    # 0.5 last wins at step 3 (as the closest to 1.0); 1.0 and 0.0 are seen again after it
    for step, level in enumerate([0.0, 0.5, 1.0, 1.0, 0.0, 0.25], start=1):
        art.train(coded([level] * DIM), step, 0.999, 0.999)
    assert art.count == 3
    kept = sorted(round(float(w[0]), 2) for w in art.weights[: art.count])
    assert kept == [0.0, 0.25, 1.0]


@given(
    st.lists(st.tuples(shapes, raws), min_size=1, max_size=6),
    st.floats(min_value=-100.0, max_value=0.0),
    st.floats(min_value=0.0, max_value=100.0),
)
def test_a_wider_range_re_expresses_every_box_exactly_and_maps_back(
    learnt: list[tuple[list[float], list[float]]], lower: float, higher: float
) -> None:
    art = table()
    for step, (shape, raw) in enumerate(learnt, start=1):
        art.train(pattern(shape, raw, 0.0, 100.0), step, 0.7, 0.3)
    before = art.weights[: art.count].copy()
    wide = (lower, 100.0 + higher - lower)
    art.rescale(START, 0.0, 100.0, *wide)
    after = art.weights[: art.count]
    # the shape half is untouched; the value half holds the same boxes in raw units
    assert np.array_equal(after[:, :START], before[:, :START])
    assert np.array_equal(after[:, DIM : DIM + START], before[:, DIM : DIM + START])
    raw_low = before[:, START:DIM] * 100.0
    raw_high = (1.0 - before[:, DIM + START :]) * 100.0
    assert np.allclose(wide[0] + after[:, START:DIM] * wide[1], raw_low, atol=1e-9)
    assert np.allclose(wide[0] + (1.0 - after[:, DIM + START :]) * wide[1], raw_high, atol=1e-9)
    art.rescale(START, *wide, 0.0, 100.0)
    assert np.allclose(art.weights[: art.count], before, atol=1e-12)


@given(shapes, raws, st.floats(min_value=-100.0, max_value=0.0), st.floats(0.0, 100.0))
def test_a_pattern_a_category_holds_matches_it_fully_in_any_wider_range(
    shape: list[float], raw: list[float], lower: float, higher: float
) -> None:
    art = table()
    art.train(pattern(shape, raw, 0.0, 100.0), 1, 0.9, 0.5)
    wide = (lower, 100.0 + higher - lower)
    art.rescale(START, 0.0, 100.0, *wide)
    new, a, e = art.train(pattern(shape, raw, *wide), 2, 0.9, 0.5, learning=False)
    assert not new and a == pytest.approx(1.0) and e == pytest.approx(1.0)


def test_rescaling_to_an_empty_range_changes_nothing() -> None:
    art = table()
    art.train(coded([0.3] * DIM), 1, 0.9, 0.5)
    before = art.snapshot()
    art.rescale(START, 0.0, 1.0, 5.0, 0.0)
    assert art.snapshot() == before


def test_a_table_restores_to_what_it_was() -> None:
    art = table()
    for step, level in enumerate([0.1, 0.6, 0.9], start=1):
        art.train(coded([level] * DIM), step, 0.95, 0.5)
    copy = table()
    copy.restore(art.snapshot())
    probe = coded([0.55] * DIM)
    assert copy.snapshot() == art.snapshot()
    assert copy.train(probe, 4, 0.95, 0.5) == art.train(probe, 4, 0.95, 0.5)


@pytest.mark.parametrize(
    "state",
    [
        {"weights": [[0.5] * (2 * DIM - 1)], "used": [1.0]},  # the wrong width
        {"weights": [[0.5] * (2 * DIM)] * 9, "used": [1.0] * 9},  # more than it holds
        {"weights": [[0.5] * (2 * DIM)], "used": [1.0, 2.0]},
        {"weights": [[float("nan")] * (2 * DIM)], "used": [1.0]},
        {"weights": [[0.5] * (2 * DIM)], "used": [float("inf")]},
        {"weights": [["x"] * (2 * DIM)], "used": [1.0]},
    ],
)
def test_a_table_refuses_a_state_that_does_not_fit(state: dict[str, object]) -> None:
    art = table()
    art.train(coded([0.3] * DIM), 1, 0.9, 0.5)
    before = art.snapshot()
    with pytest.raises(ValueError):
        art.restore(state)
    assert art.snapshot() == before
