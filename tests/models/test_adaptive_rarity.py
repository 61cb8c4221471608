"""The adaptive detector's parts: rolling quantiles and the rarity of a measure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.adaptive_rarity import STACK_LIMIT, TAIL_SIZE, Rarity, RollingQuantiles

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.integers(min_value=1, max_value=20), st.lists(finite, max_size=80))
def test_rolling_quantiles_hold_the_last_values_sorted(size: int, values: list[float]) -> None:
    window = RollingQuantiles(size)
    for i, value in enumerate(values):
        window.add(value)
        kept = values[max(0, i + 1 - size) : i + 1]
        assert window.values() == kept
        assert window.sorted == sorted(kept)
        assert window.quantile(0.5) == sorted(kept)[len(kept) // 2]


@given(st.integers(min_value=1, max_value=20), st.lists(finite, max_size=60))
def test_rolling_quantiles_survive_a_snapshot(size: int, values: list[float]) -> None:
    window = RollingQuantiles(size)
    for value in values:
        window.add(value)
    copy = RollingQuantiles(size)
    copy.restore(window.snapshot())
    for value in (1.0, -2.0, 3.0):
        window.add(value)
        copy.add(value)
    assert copy.values() == window.values() and copy.sorted == window.sorted


def brute_force(measures: list[float]) -> list[float]:
    """Rarities by definition, for measures that never pass their running maximum."""
    out = []
    for n, m in enumerate(measures, start=1):
        previous = [i for i in range(1, n) if measures[i - 1] >= m]
        period = n - previous[-1] if previous else n
        out.append(math.log(period) / math.log(max(n, 2)))
    return out


@given(st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=60))
def test_a_rarity_is_the_log_return_period_over_the_log_count(digits: list[int]) -> None:
    measures = [10.0, *map(float, digits)]  # the first is the largest: no record after it
    rarity = Rarity(horizon=10_000)
    assert [rarity.update(m) for m in measures] == pytest.approx(brute_force(measures))


def test_a_new_extreme_scores_above_1_by_its_margin_in_tail_spreads() -> None:
    rarity = Rarity(horizon=10_000)
    for i in range(200):
        rarity.update(float(i % 50))  # 49 last at update 200
    for _ in range(30):
        rarity.update(10.0)
    assert rarity.update(49.0) == pytest.approx(math.log(31) / math.log(231))  # seen 31 ago
    state = rarity.snapshot()
    tail = sorted(m for m, _ in state["tail"])
    spread = sum(tail[1:]) / (len(tail) - 1) - tail[0]
    n = state["n"] + 1
    small = rarity.update(49.5)
    assert small == pytest.approx((math.log(n) + (49.5 - 49.0) / spread) / math.log(n))
    assert 1.0 < small < rarity.update(60.0)


def test_an_extreme_older_than_the_horizon_is_forgotten() -> None:
    rarity = Rarity(horizon=100)
    rarity.update(1000.0)
    for _ in range(150):
        rarity.update(1.0)
    assert rarity.update(5.0) >= 1.0  # the 1000 is past the horizon


def test_the_state_stays_bounded_and_round_trips() -> None:
    rarity = Rarity(horizon=1_000_000)
    for i in range(5000):
        rarity.update(1e6 - i)  # falling: every measure stays on the stack until thinned
    state = rarity.snapshot()
    assert len(state["stack"]) <= STACK_LIMIT and len(state["tail"]) == TAIL_SIZE
    copy = Rarity(horizon=1_000_000)
    copy.restore(state)
    assert [copy.update(v) for v in (3.0, 2e6, 5.0)] == [rarity.update(v) for v in (3.0, 2e6, 5.0)]


@pytest.mark.parametrize(
    "state",
    [
        {"n": 3, "stack": [[4, 1.0]], "tail": []},  # an update it has not seen
        {"n": 3, "stack": [[1, math.inf]], "tail": []},
        {"n": 3, "stack": [[1]], "tail": []},
        {"n": 3, "stack": [], "tail": [[1.0, 1]] * (TAIL_SIZE + 1)},
    ],
)
def test_a_bad_rarity_state_is_refused(state: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Rarity(horizon=100).restore(state)


def test_huge_and_non_finite_measures_stay_finite() -> None:
    rarity = Rarity(horizon=100)
    for value in (1.0, math.inf, math.nan, 1e300, 2.0):
        assert math.isfinite(rarity.update(value))
