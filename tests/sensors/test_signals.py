"""Signal sources: the zero-argument Piecewise and Noisy on a hand-advanced clock, the
time-signal models, and scenario signal tables."""

import itertools
import math
import random
import statistics
import tomllib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import Noisy, Piecewise, SensorConfigError
from sensors.sim.signals import (
    Constant,
    Daily,
    Drift,
    During,
    Events,
    Growth,
    Harmonics,
    Noise,
    Sum,
    TimeSignal,
    Tone,
    on_clock,
    sampled,
    signal_from_spec,
)
from tests.sensors.fakes import FakeClock


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


# -- time signals ----------------------------------------------------------------------


def test_piecewise_at_is_a_time_signal_without_a_clock() -> None:
    ramp = Piecewise([(0.0, 0.0), (600.0, 2.0)])
    total = Sum(Constant(21.0), ramp.at)
    assert total(300.0) == pytest.approx(22.0)
    with pytest.raises(TypeError, match=r"\.at\(t\)"):
        ramp()


def test_sampled_reads_a_time_signal_on_the_clock_from_t0() -> None:
    clock = FakeClock(100.0)
    signal = sampled(Drift(3600.0), clock, t0=40.0)  # one unit per second
    assert signal() == pytest.approx(60.0)
    clock.t = 110.0
    assert signal() == pytest.approx(70.0)
    assert sampled(Drift(3600.0), clock)() == 0.0  # t0 defaults to now


def test_on_clock_shifts_time_to_the_scenario_start() -> None:
    signal = on_clock(During(Constant(1.0), 0.0, 10.0), t0=500.0)
    assert [signal(t) for t in (499.0, 500.0, 509.0, 510.0)] == [0.0, 1.0, 1.0, 0.0]


def test_constant_is_constant() -> None:
    assert {Constant(4.5)(t) for t in (-1.0, 0.0, 1e7)} == {4.5}


def test_drift_slope_is_per_hour() -> None:
    drift = Drift(0.05)
    assert drift(0.0) == 0.0
    assert (drift(7200.0) - drift(0.0)) / 2.0 == pytest.approx(0.05)
    assert drift(1800.0) == pytest.approx(0.025)


@pytest.mark.parametrize(("peak_hour", "start_hour"), [(15.0, 0.0), (15.0, 22.5), (3.0, 6.0)])
def test_daily_peaks_at_peak_hour(peak_hour: float, start_hour: float) -> None:
    daily = Daily(3.0, peak_hour, start_hour)
    minutes = range(24 * 60)
    values = [daily(m * 60.0) for m in minutes]
    best = max(minutes, key=lambda m: values[m])
    assert (start_hour + best / 60.0) % 24 == pytest.approx(peak_hour)
    assert max(values) == pytest.approx(3.0)
    worst = min(minutes, key=lambda m: values[m])
    assert (start_hour + worst / 60.0) % 24 == pytest.approx((peak_hour + 12.0) % 24)
    assert min(values) == pytest.approx(-3.0)


def _zero_crossings(signal: TimeSignal, seconds: float, rate: float) -> int:
    samples = [signal(i / rate) for i in range(int(seconds * rate))]
    return sum(1 for a, b in itertools.pairwise(samples) if (a < 0) != (b < 0))


@pytest.mark.parametrize("frequency", [29.5, 157.0])
def test_harmonics_frequency_by_zero_crossings(frequency: float) -> None:
    tone = Harmonics([(frequency, 0.3, 0.4)])
    # Two crossings a period; sampled at a rate that is no multiple of the tone's.
    assert _zero_crossings(tone, 4.0, 10_007.0) == pytest.approx(2 * frequency * 4.0, abs=2)


def test_harmonics_add_their_tones() -> None:
    vibration = Harmonics([(10.0, 1.0, 0.0), (25.0, 0.5, math.pi / 2)])
    t = 0.013
    expected = math.sin(2 * math.pi * 10 * t) + 0.5 * math.cos(2 * math.pi * 25 * t)
    assert vibration(t) == pytest.approx(expected)


def _peak(signal: TimeSignal, around: float, frequency: float) -> float:
    """The largest magnitude over one period starting at ``around``."""
    return max(abs(signal(around + i / (1000 * frequency))) for i in range(1000))


def test_harmonics_growth_is_linear_over_its_window() -> None:
    bearing = Harmonics([Tone(87.3, 0.0, to_amplitude=2.0)], Growth(3600.0, 7200.0))
    assert _peak(bearing, 0.0, 87.3) == 0.0
    assert _peak(bearing, 3599.0, 87.3) == 0.0
    assert _peak(bearing, 5400.0, 87.3) == pytest.approx(1.0, rel=0.01)
    assert _peak(bearing, 7200.0, 87.3) == pytest.approx(2.0, rel=0.01)
    assert _peak(bearing, 36_000.0, 87.3) == pytest.approx(2.0, rel=0.01)


def test_harmonics_growth_leaves_tones_without_a_target_alone() -> None:
    motor = Harmonics([Tone(50.0, 1.0), Tone(87.3, 0.0, to_amplitude=1.0)], Growth(0.0, 0.0))
    assert _peak(motor, 10.0, 50.0) > 1.0  # both tones at full amplitude from t = 0
    assert _peak(Harmonics([Tone(50.0, 1.0)], Growth(0.0, 0.0)), 10.0, 50.0) == pytest.approx(
        1.0, rel=1e-3
    )


def test_harmonics_refuses_a_growth_that_ends_before_it_starts() -> None:
    with pytest.raises(SensorConfigError, match="before it starts"):
        Harmonics([(1.0, 1.0, 0.0)], Growth(10.0, 5.0))


def test_noise_is_a_pure_function_of_time() -> None:
    noise = Noise(0.5, seed=3)
    times = [random.Random(1).uniform(0, 3600) for _ in range(200)]
    forward = [noise(t) for t in times]
    backward = [noise(t) for t in reversed(times)][::-1]
    assert forward == backward
    assert forward == [Noise(0.5, seed=3)(t) for t in times]
    assert noise(12.0) == noise(12.0) != noise(12.000001)


def test_noise_mean_std_and_independence() -> None:
    noise = Noise(0.5, seed=11)
    samples = [noise(i / 500.0) for i in range(40_000)]  # a 500 Hz FIFO for 80 s
    n = len(samples)
    assert abs(statistics.fmean(samples)) < 4 * 0.5 / math.sqrt(n)
    assert statistics.stdev(samples) == pytest.approx(0.5, rel=0.02)
    lag1 = statistics.correlation(samples[:-1], samples[1:])
    assert abs(lag1) < 4 / math.sqrt(n)
    within_1_sigma = sum(1 for s in samples if abs(s) < 0.5) / n
    assert within_1_sigma == pytest.approx(0.6827, abs=0.01)  # Gaussian, not uniform


def test_noise_seeds_give_different_streams() -> None:
    times = [i * 0.37 for i in range(100)]
    a = [Noise(1.0, seed=1)(t) for t in times]
    b = [Noise(1.0, seed=2)(t) for t in times]
    assert abs(statistics.correlation(a, b)) < 0.4
    assert a != b


def test_events_count_follows_the_rate() -> None:
    horizon = 1000 * 3600.0
    events = Events(2.0, 5.0, 30.0, seed=4, horizon=horizon)
    expected = 2.0 * 1000
    assert abs(len(events.starts) - expected) < 5 * math.sqrt(expected)
    assert list(events.starts) == sorted(events.starts)
    assert events.starts[0] >= 0.0 and events.starts[-1] < horizon


def test_events_are_reproducible_from_their_seed() -> None:
    def make(seed: int) -> Events:
        return Events(6.0, 1.0, 10.0, shape="decay", seed=seed, horizon=36_000.0)

    assert make(9).starts == make(9).starts
    assert make(9).starts != make(10).starts


def test_pulse_events_hold_their_amplitude_for_their_duration() -> None:
    events = Events(1.0, 5.0, 30.0, seed=2, horizon=100 * 3600.0)
    gaps = [b - a for a, b in itertools.pairwise(events.starts)]
    assert min(gaps) > 30.0  # no overlap with this seed, so each pulse stands alone
    for s in events.starts[:20]:
        assert events(s) == 5.0
        assert events(s + 29.999) == 5.0
        assert events(s + 30.0) == 0.0
        assert events(math.nextafter(s, -math.inf)) == 0.0


def test_decay_events_fall_with_their_time_constant_and_add_up() -> None:
    events = Events(20.0, 4.0, 60.0, shape="decay", seed=5, horizon=50 * 3600.0)
    lone = next(
        s
        for a, s, b in zip(events.starts, events.starts[1:], events.starts[2:], strict=False)
        if s - a > 60 * 8 and b - s > 60 * 2
    )
    assert events(lone) == pytest.approx(4.0)
    assert events(lone + 60.0) == pytest.approx(4.0 / math.e)
    close = next(b for a, b in itertools.pairwise(events.starts) if b - a < 60.0)
    assert events(close) > 4.0  # the previous event has not decayed away yet


def test_events_at_rate_zero_never_happen() -> None:
    events = Events(0.0, 5.0, 30.0, seed=1, horizon=3600.0)
    assert events.starts == ()
    assert events(100.0) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rate_per_hour": -1.0}, "rate_per_hour"),
        ({"duration": 0.0}, "duration"),
        ({"shape": "square"}, "shape"),
        ({"horizon": math.inf}, "horizon"),
        ({"rate_per_hour": 1e9, "horizon": 1e6}, "at most"),
    ],
)
def test_events_refuse_bad_parameters(kwargs: dict[str, Any], match: str) -> None:
    params: dict[str, Any] = {
        "rate_per_hour": 1.0,
        "amplitude": 1.0,
        "duration": 1.0,
        "seed": 0,
        "horizon": 3600.0,
    }
    with pytest.raises(SensorConfigError, match=match):
        Events(**(params | kwargs))


def test_window_is_the_signal_inside_start_to_end_only() -> None:
    anomaly = During(Constant(7.0), 100.0, 200.0)
    assert anomaly(math.nextafter(100.0, 0.0)) == 0.0
    assert anomaly(100.0) == 7.0
    assert anomaly(math.nextafter(200.0, 0.0)) == 7.0
    assert anomaly(200.0) == 0.0
    assert During(Constant(1.0), 5.0, 5.0)(5.0) == 0.0  # empty
    with pytest.raises(SensorConfigError, match="start <= end"):
        During(Constant(1.0), 6.0, 5.0)


def test_sum_adds_in_order() -> None:
    assert Sum()(3.0) == 0.0
    total = Sum(Constant(1.0), Drift(3600.0), During(Constant(10.0), 0.0, 5.0))
    assert [total(t) for t in (0.0, 4.0, 5.0)] == [11.0, 15.0, 6.0]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Constant(math.nan),
        lambda: Drift(math.inf),
        lambda: Daily(1.0, math.nan),
        lambda: Noise(-0.1, seed=0),
        lambda: Harmonics([(-1.0, 1.0, 0.0)]),
        lambda: Harmonics([(1.0, math.inf, 0.0)]),
    ],
)
def test_models_refuse_non_finite_or_negative_parameters(build: Callable[[], object]) -> None:
    with pytest.raises(SensorConfigError):
        build()


# -- scenario tables -------------------------------------------------------------------

EXAMPLE = """
base = 21.0
noise = 0.1
drift = 0.05
daily = {amplitude = 3.0, peak_hour = 15.0}
points = [[0, 0.0], [600, 2.0]]
harmonics = [{frequency = 29.5, amplitude = 0.3, phase = 0.0}]
events = {rate_per_hour = 2.0, amplitude = 5.0, duration = 30.0, shape = "decay"}
"""


def test_spec_builds_the_sum_of_its_terms() -> None:
    spec = tomllib.loads(EXAMPLE)
    signal = signal_from_spec(spec, seed=1, start_hour=8.0, horizon=86_400.0)
    quiet = dict(spec, noise=0.0, events={"rate_per_hour": 0, "amplitude": 5, "duration": 30})
    deterministic = signal_from_spec(quiet, seed=1, start_hour=8.0, horizon=86_400.0)
    for t in (0.0, 300.0, 3600.0, 7 * 3600.0):
        expected = (
            21.0
            + Piecewise([(0, 0.0), (600, 2.0)]).at(t)
            + 0.05 * t / 3600
            + Daily(3.0, 15.0, 8.0)(t)
            + 0.3 * math.sin(2 * math.pi * 29.5 * t)
        )
        assert deterministic(t) == pytest.approx(expected)
        assert abs(signal(t) - expected) < 0.5 or signal(t) > expected  # noise, or an event


def test_spec_harmonic_growth_and_event_lists() -> None:
    spec = {
        "harmonics": [
            {
                "frequency": 87.3,
                "amplitude": 0.0,
                "grow_from": 10,
                "grow_until": 20,
                "to_amplitude": 1.0,
            }
        ],
        "events": [
            {"rate_per_hour": 30, "amplitude": 1, "duration": 1},
            {"rate_per_hour": 30, "amplitude": 100, "duration": 1},
        ],
    }
    signal = signal_from_spec(spec, seed=0, horizon=3600.0)
    assert isinstance(signal, Sum)
    harmonic, small, large = signal.signals
    assert isinstance(harmonic, Harmonics) and harmonic.growth == Growth(10.0, 20.0)
    assert isinstance(small, Events) and isinstance(large, Events)
    assert small.starts != large.starts  # each events table has its own stream


def test_empty_spec_is_zero_and_a_single_term_is_itself() -> None:
    assert signal_from_spec({}, seed=0, horizon=1.0)(5.0) == 0.0
    assert isinstance(signal_from_spec({"base": 3}, seed=0, horizon=1.0), Constant)
    assert isinstance(signal_from_spec({"noise": 0}, seed=0, horizon=1.0), Constant)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"bsae": 1}, "bsae: unknown key; did you mean 'base'?"),
        ({"wobble": 1}, "wobble: unknown key; known keys: base, noise"),
        ({"base": "21"}, "base: expected a number, found string '21'"),
        ({"base": True}, "base: expected a number, found boolean True"),
        ({"base": math.nan}, "base: expected a finite number"),
        (
            {"base": 10**400},
            r"base: expected a finite number of magnitude <= 1e\+12, found integer$",
        ),
        ({"noise": -0.5}, "noise: expected a number >= 0, found number -0.5"),
        ({"daily": 3.0}, "daily: expected a table, found number 3.0"),
        ({"daily": {"amplitude": 3.0}}, "daily.peak_hour: required"),
        (
            {"daily": {"amplitude": 3, "peak_hour": 24}},
            "daily.peak_hour: expected a number >= 0 and < 24",
        ),
        ({"daily": {"amplitude": 3, "peak_hour": 1, "phase": 0}}, "daily.phase: unknown key"),
        ({"points": []}, r"points: expected \[\[t, value\], ...\], found array \[\]"),
        ({"points": [[0, 1], [1]]}, r"points\[1\]: expected \[t, value\], found array \[1\]"),
        ({"points": [[0, 1], [5, "x"]]}, r"points\[1\]\[1\]: expected a number"),
        (
            {"points": [[5, 1], [0, 2]]},
            r"points\[1\]\[0\]: times must not decrease, found 0 after 5",
        ),
        ({"harmonics": {"frequency": 1}}, "harmonics: expected an array of tables, found table"),
        ({"harmonics": [{"frequency": 1}]}, r"harmonics\[0\].amplitude: required"),
        (
            {"harmonics": [{"frequency": -1, "amplitude": 1}]},
            r"harmonics\[0\].frequency: expected a number >= 0",
        ),
        (
            {"harmonics": [{"frequency": 1, "amplitude": 1, "grow_from": 5}]},
            r"harmonics\[0\].grow_until: required with grow_from",
        ),
        (
            {
                "harmonics": [
                    {
                        "frequency": 1,
                        "amplitude": 1,
                        "grow_from": 5,
                        "grow_until": 4,
                        "to_amplitude": 2,
                    }
                ]
            },
            r"harmonics\[0\].grow_until: expected a number >= 5, found integer 4",
        ),
        (
            {"events": {"rate_per_hour": -1, "amplitude": 5, "duration": 30}},
            "events.rate_per_hour: expected a number >= 0, found integer -1",
        ),
        (
            {"events": {"rate_per_hour": 1, "amplitude": 5, "duration": 0}},
            "events.duration: expected a number > 0, found integer 0",
        ),
        (
            {"events": [{"rate_per_hour": 1, "amplitude": 5, "duration": 1, "shape": "sine"}]},
            r"events\[0\].shape: expected one of pulse, decay, found string 'sine'",
        ),
        (
            {"events": {"rate_per_hour": 1e12, "amplitude": 5, "duration": 1}},
            "events.rate_per_hour: 1e\\+12 per hour over 3600 s draws more than 1000000 events",
        ),
        ({"events": 2.0}, "events: expected a table or an array of tables, found number 2.0"),
    ],
)
def test_spec_errors_name_the_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SensorConfigError, match=f"^{message}"):
        signal_from_spec(spec, seed=0, horizon=3600.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"horizon": -1.0}, "horizon: expected a number >= 0"), ({"start_hour": 24.0}, "start_hour")],
)
def test_spec_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(SensorConfigError, match=message):
        signal_from_spec({}, seed=0, **({"horizon": 1.0} | kwargs))


toml_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["pulse", "decay"])
)
sub_keys = st.sampled_from(
    [
        "amplitude",
        "peak_hour",
        "frequency",
        "phase",
        "grow_from",
        "grow_until",
        "to_amplitude",
        "rate_per_hour",
        "duration",
        "shape",
        "bogus",
    ]
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(sub_keys, inner, max_size=6),
    max_leaves=12,
)
spec_keys = st.sampled_from(["base", "noise", "drift", "daily", "points", "harmonics", "events"])
arbitrary_specs = st.dictionaries(spec_keys | st.just("basee"), toml_values, max_size=7)


def _mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid value, sometimes any TOML value, so both outcomes get explored."""
    return st.one_of(valid, valid, valid, toml_values)


def _table_of(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    return _mostly(
        st.fixed_dictionaries(
            {k: _mostly(v) for k, v in required.items()},
            optional={k: _mostly(v) for k, v in optional.items()},
        )
    )


def _as_points(pairs: list[tuple[float, float]]) -> list[list[float]]:
    return [list(pair) for pair in sorted(pairs)]


number = st.floats(min_value=-1e3, max_value=1e3) | st.integers(-1000, 1000)
positive = st.floats(min_value=0.001, max_value=1e3)
tone = _table_of(
    {"frequency": positive, "amplitude": number},
    {"phase": number, "grow_from": number, "grow_until": number, "to_amplitude": number},
)
events_table = _table_of(
    {"rate_per_hour": st.floats(0.0, 100.0), "amplitude": number, "duration": positive},
    {"shape": st.sampled_from(["pulse", "decay"])},
)
near_valid_specs = st.fixed_dictionaries(
    {},
    optional={
        "base": _mostly(number),
        "noise": _mostly(positive),
        "drift": _mostly(number),
        "daily": _table_of({"amplitude": number, "peak_hour": st.floats(0.0, 23.9)}, {}),
        "points": _mostly(st.lists(st.tuples(positive, number), min_size=1).map(_as_points)),
        "harmonics": _mostly(st.lists(tone, max_size=3)),
        "events": events_table | _mostly(st.lists(events_table, max_size=3)),
    },
)


@given(
    arbitrary_specs | near_valid_specs,
    st.integers(),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_spec_is_a_time_signal_or_a_config_error(
    spec: dict[str, Any], seed: int, where: float
) -> None:
    horizon = 86_400.0
    try:
        signal = signal_from_spec(spec, seed=seed, horizon=horizon)
    except SensorConfigError as exc:
        assert str(exc).split(":")[0].split(".")[0].split("[")[0] in spec
        return
    value = signal(where * horizon)
    assert isinstance(value, float) and math.isfinite(value)


def test_same_spec_and_seed_same_values_at_any_time() -> None:
    spec = tomllib.loads(EXAMPLE)
    times = [random.Random(42).uniform(-10.0, 90_000.0) for _ in range(1000)]

    def values(seed: int) -> list[float]:
        signal = signal_from_spec(spec, seed=seed, start_hour=6.0, horizon=86_400.0)
        return [signal(t) for t in times]

    first = values(7)
    assert first == values(7)
    other = values(8)
    assert sum(1 for a, b in zip(first, other, strict=True) if a != b) > 990
