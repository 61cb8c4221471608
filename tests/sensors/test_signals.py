"""Piecewise and Noisy signal sources on a hand-advanced clock."""

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import Noisy, Piecewise, SensorConfigError


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_piecewise_interpolates_from_its_creation_time() -> None:
    clock = FakeClock(1000.0)
    signal = Piecewise([(0.0, 10.0), (10.0, 20.0), (20.0, 0.0)], clock)
    expected = {1000.0: 10.0, 1005.0: 15.0, 1010.0: 20.0, 1015.0: 10.0, 1020.0: 0.0}
    for t, value in expected.items():
        clock.t = t
        assert signal() == pytest.approx(value)


def test_piecewise_holds_its_end_values() -> None:
    clock = FakeClock()
    signal = Piecewise([(5.0, 1.0), (6.0, 2.0)], clock)
    assert signal() == 1.0  # before the first point
    clock.t = 1e6
    assert signal() == 2.0


def test_piecewise_explicit_t0() -> None:
    clock = FakeClock(50.0)
    signal = Piecewise([(0.0, 0.0), (100.0, 100.0)], clock, t0=0.0)
    assert signal() == pytest.approx(50.0)


def test_piecewise_repeated_time_is_a_step() -> None:
    signal = Piecewise([(0.0, 0.0), (10.0, 0.0), (10.0, 5.0), (20.0, 5.0)], FakeClock())
    assert signal.at(9.999) == 0.0
    assert signal.at(10.0) == 5.0
    assert signal.at(15.0) == 5.0


def test_piecewise_single_point_is_constant() -> None:
    signal = Piecewise([(3.0, 7.5)], FakeClock())
    assert [signal.at(t) for t in (-1.0, 3.0, 99.0)] == [7.5, 7.5, 7.5]


@pytest.mark.parametrize(
    "points",
    [[], [(1.0, 0.0), (0.0, 1.0)], [(0.0, math.nan)], [(math.inf, 0.0)]],
)
def test_piecewise_refuses_bad_points(points: list[tuple[float, float]]) -> None:
    with pytest.raises(SensorConfigError):
        Piecewise(points, FakeClock())


finite = st.floats(min_value=-1e6, max_value=1e6)


@given(
    st.lists(st.tuples(finite, finite), min_size=1, max_size=8),
    st.floats(min_value=-2e6, max_value=2e6),
)
def test_piecewise_stays_within_its_values(points: list[tuple[float, float]], t: float) -> None:
    points.sort(key=lambda p: p[0])
    value = Piecewise(points, FakeClock()).at(t)
    values = [v for _, v in points]
    assert min(values) - 1e-6 <= value <= max(values) + 1e-6


def test_noisy_same_seed_same_sequence() -> None:
    a = Noisy(lambda: 20.0, 0.5, seed=7)
    b = Noisy(lambda: 20.0, 0.5, seed=7)
    c = Noisy(lambda: 20.0, 0.5, seed=8)
    first = [a() for _ in range(20)]
    assert first == [b() for _ in range(20)]
    assert first != [c() for _ in range(20)]


def test_noisy_adds_zero_mean_noise_of_the_given_sigma() -> None:
    signal = Noisy(lambda: 20.0, 0.5, seed=1)
    samples = [signal() for _ in range(5000)]
    assert statistics.fmean(samples) == pytest.approx(20.0, abs=0.05)
    assert statistics.stdev(samples) == pytest.approx(0.5, rel=0.05)


def test_noisy_follows_the_underlying_signal() -> None:
    clock = FakeClock()
    signal = Noisy(Piecewise([(0.0, 0.0), (10.0, 100.0)], clock), 0.0, seed=0)
    clock.t = 2.5
    assert signal() == 25.0


@pytest.mark.parametrize("sigma", [-0.1, math.nan, math.inf])
def test_noisy_refuses_bad_sigma(sigma: float) -> None:
    with pytest.raises(SensorConfigError, match="sigma"):
        Noisy(lambda: 0.0, sigma, seed=0)
