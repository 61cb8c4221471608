"""Sensor filters: concrete examples, properties over random series, params and registry."""

import dataclasses
import itertools
import math
import random
import statistics
import types
import typing
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors.filters import (
    FILTER_TYPES,
    Calibrate,
    CalibrateParams,
    Chain,
    Clamp,
    ClampParams,
    Debounce,
    DebounceParams,
    Delta,
    DeltaParams,
    Filter,
    Heartbeat,
    HeartbeatParams,
    Median,
    MedianParams,
    MovingAverage,
    MovingAverageParams,
    Throttle,
    ThrottleParams,
)

Series = list[tuple[float, float]]  # (t, value)


def run(f: Filter | Chain, series: Sequence[tuple[float, float]]) -> list[float | None]:
    return [f.apply(t, v) for t, v in series]


def at_one_hz(values: Sequence[float]) -> Series:
    return [(float(i), float(v)) for i, v in enumerate(values)]


def passed(f: Filter, series: Series) -> Series:
    return [(t, out) for (t, _), out in zip(series, run(f, series), strict=True) if out is not None]


# -- strategies ---------------------------------------------------------------------------

finite = st.floats(-1e9, 1e9, allow_nan=False)
positive = st.floats(1e-3, 1e5)


@st.composite
def series(draw: st.DrawFn, values: st.SearchStrategy[float] = finite, size: int = 60) -> Series:
    """Readings at non-decreasing times, some at the same instant."""
    gaps = draw(st.lists(st.floats(0.0, 10.0), max_size=size))
    vals = draw(st.lists(values, min_size=len(gaps), max_size=len(gaps)))
    times = [float(t) for t in np.cumsum(gaps)]
    return list(zip(times, vals, strict=True))


@st.composite
def delta_params(draw: st.DrawFn) -> DeltaParams:
    delta, percent = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    return DeltaParams(
        delta=draw(positive) if delta else None,
        percent=draw(st.floats(0.01, 500.0)) if percent else None,
        heartbeat=draw(st.none() | positive),
    )


@st.composite
def debounce_params(draw: st.DrawFn) -> DebounceParams:
    tolerance = draw(st.sampled_from([0.0, 0.5, 10.0]))
    if draw(st.booleans()):
        return DebounceParams(samples=draw(st.integers(1, 10)), tolerance=tolerance)
    return DebounceParams(seconds=draw(st.floats(0.01, 30.0)), tolerance=tolerance)


@st.composite
def calibrate_params(draw: st.DrawFn) -> CalibrateParams:
    raw_low = draw(st.floats(-1e4, 1e4))
    raw_high = draw(st.floats(-1e4, 1e4).filter(lambda x: abs(x - raw_low) > 1e-3))
    return CalibrateParams(
        raw_low=raw_low,
        raw_high=raw_high,
        true_low=draw(st.floats(-1e4, 1e4)),
        true_high=draw(st.floats(-1e4, 1e4)),
    )


@st.composite
def clamp_params(draw: st.DrawFn) -> ClampParams:
    a, b = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
    which = draw(st.sampled_from(["both", "min", "max"]))
    return ClampParams(
        min=a if which != "max" else None,
        max=b if which != "min" else None,
        drop=draw(st.booleans()),
    )


PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "delta": delta_params(),
    "heartbeat": st.builds(HeartbeatParams, every=positive),
    "debounce": debounce_params(),
    "moving_average": st.builds(
        MovingAverageParams, window=st.integers(1, 20), warmup=st.booleans()
    ),
    "median": st.builds(
        MedianParams, window=st.integers(0, 10).map(lambda n: 2 * n + 1), warmup=st.booleans()
    ),
    "throttle": st.builds(ThrottleParams, interval=positive),
    "calibrate": calibrate_params(),
    "clamp": clamp_params(),
}


def test_every_registered_type_has_a_strategy_here() -> None:
    assert set(PARAMS) == set(FILTER_TYPES)


any_filter = st.sampled_from(sorted(PARAMS)).flatmap(
    lambda name: PARAMS[name].map(lambda p: FILTER_TYPES[name].build(p))
)


# -- properties shared by every filter ----------------------------------------------------


@given(
    f=any_filter,
    readings=series(
        finite | st.integers(-1000, 1000) | st.sampled_from([math.nan, math.inf, -math.inf])
    ),
)
def test_output_is_none_or_a_finite_float(f: Filter, readings: Series) -> None:
    assert isinstance(f, Filter)
    for (_, value), out in zip(readings, run(f, readings), strict=True):
        assert out is None or (type(out) is float and math.isfinite(out))
        if not math.isfinite(value):
            assert out is None


@given(f=any_filter, readings=series(), seed=st.integers(0, 2**32))
def test_a_non_finite_reading_leaves_the_state_alone(
    f: Filter, readings: Series, seed: int
) -> None:
    # The same filter built twice: one also sees NaNs and infinities in between.
    twin = FILTER_TYPES[_type_name(f)].build(f.params)  # type: ignore[attr-defined]
    rng = random.Random(seed)
    for t, value in readings:
        if rng.random() < 0.3:
            assert twin.apply(t, rng.choice([math.nan, math.inf, -math.inf])) is None
        assert twin.apply(t, value) == f.apply(t, value)


def _type_name(f: Filter) -> str:
    return next(name for name, kind in FILTER_TYPES.items() if kind.build is type(f))


@pytest.mark.parametrize("kind", [MovingAverage, Median])
@settings(max_examples=10, deadline=None)
@given(window=st.integers(1, 40).map(lambda n: 2 * n + 1), seed=st.integers(0, 2**32))
def test_memory_stays_within_the_window(
    kind: type[MovingAverage] | type[Median], window: int, seed: int
) -> None:
    f: MovingAverage | Median = (
        Median(MedianParams(window=window))
        if kind is Median
        else MovingAverage(MovingAverageParams(window=window))
    )
    rng = random.Random(seed)
    most = 0
    for i in range(10_000):
        f.apply(float(i), rng.choice([rng.uniform(-100, 100), float(rng.randint(0, 3))]))
        most = max(most, f.held)
    assert most == window


# -- moving average ------------------------------------------------------------------------


@given(
    window=st.integers(1, 25),
    warmup=st.booleans(),
    values=st.lists(st.floats(-1e6, 1e6), max_size=200),
)
def test_moving_average_is_numpys_mean_over_the_window(
    window: int, warmup: bool, values: list[float]
) -> None:
    f = MovingAverage(MovingAverageParams(window=window, warmup=warmup))
    scale = max([abs(v) for v in values] + [1.0])
    for i, out in enumerate(run(f, at_one_hz(values))):
        recent = values[max(0, i + 1 - window) : i + 1]
        if len(recent) < window and not warmup:
            assert out is None
        else:
            assert out is not None
            assert math.isclose(out, float(np.mean(recent)), rel_tol=1e-9, abs_tol=1e-12 * scale)


def test_moving_average_examples() -> None:
    f = MovingAverage(MovingAverageParams(window=3))
    assert run(f, at_one_hz([1, 2, 3, 4, 8])) == [None, None, 2.0, 3.0, 5.0]
    g = MovingAverage(MovingAverageParams(window=3, warmup=True))
    assert run(g, at_one_hz([1, 2, 3, 4])) == [1.0, 1.5, 2.0, 3.0]


def test_moving_average_recovers_exactly_after_a_huge_spike() -> None:
    # 1e17 + 1 rounds to 1e17, so a bare running sum would keep the spike's rounding error
    # (a mean of 1/3 below) forever; the periodic exact re-sum removes it within a window.
    f = MovingAverage(MovingAverageParams(window=3))
    outs = run(f, at_one_hz([1.0, 1.0, 1e17] + [1.0] * 9))
    assert outs[-3:] == [1.0, 1.0, 1.0]


# -- median -------------------------------------------------------------------------------


@given(
    window=st.integers(0, 12).map(lambda n: 2 * n + 1),
    warmup=st.booleans(),
    values=st.lists(st.floats(-1e9, 1e9) | st.integers(-3, 3).map(float), max_size=200),
)
def test_median_is_statistics_median_over_the_window(
    window: int, warmup: bool, values: list[float]
) -> None:
    f = Median(MedianParams(window=window, warmup=warmup))
    for i, out in enumerate(run(f, at_one_hz(values))):
        recent = values[max(0, i + 1 - window) : i + 1]
        if len(recent) < window and not warmup:
            assert out is None
        else:
            assert out == statistics.median(recent)


def test_median_removes_a_spike() -> None:
    f = Median(MedianParams(window=3))
    assert run(f, at_one_hz([20, 21, 500, 22, 23])) == [None, None, 21.0, 22.0, 23.0]
    g = Median(MedianParams(window=3, warmup=True))
    assert run(g, at_one_hz([20, 30, 1])) == [20.0, 25.0, 20.0]


# -- delta --------------------------------------------------------------------------------


@given(delta=positive, readings=series())
def test_delta_passes_exactly_the_values_that_moved_enough(delta: float, readings: Series) -> None:
    f = Delta(DeltaParams(delta=delta))
    last: float | None = None
    for (_, value), out in zip(readings, run(f, readings), strict=True):
        if last is None or abs(value - last) >= delta:
            assert out == value
            last = value
        else:
            assert out is None


@given(delta=positive, readings=series())
def test_delta_never_passes_two_values_closer_than_delta(delta: float, readings: Series) -> None:
    kept = [v for _, v in passed(Delta(DeltaParams(delta=delta)), readings)]
    assert all(abs(b - a) >= delta for a, b in itertools.pairwise(kept))


def test_delta_examples() -> None:
    f = Delta(DeltaParams(delta=0.5))
    assert run(f, at_one_hz([20, 20.4, 20.5, 20.1, 20.25, 30, 29.5])) == [
        20.0,
        None,
        20.5,
        None,
        None,
        30.0,
        29.5,  # a move of exactly delta passes
    ]


def test_delta_percent_is_of_the_last_value_passed() -> None:
    f = Delta(DeltaParams(percent=10))
    assert run(f, at_one_hz([100, 109, 110, 120, 121, 0, 0, 0.001])) == [
        100.0,
        None,
        110.0,
        None,
        121.0,
        0.0,
        None,  # no change from 0 is no change, not "infinitely many percent"
        0.001,
    ]


def test_delta_with_both_thresholds_passes_on_either() -> None:
    f = Delta(DeltaParams(delta=5, percent=1))
    # 1000 -> 1004: 0.4 %, under 5; 1011: 1.1 %; 1 -> 3: 200 % of 1.
    assert run(f, at_one_hz([1000, 1004, 1011, 1, 1.001, 3])) == [
        1000.0,
        None,
        1011.0,
        1.0,
        None,
        3.0,
    ]


def test_delta_heartbeat_passes_a_steady_value_now_and_then() -> None:
    f = Delta(DeltaParams(delta=1, heartbeat=10))
    readings = [(0.0, 5.0), (4.0, 5.0), (9.9, 5.2), (10.0, 5.3), (15.0, 5.3), (20.0, 5.0)]
    assert run(f, readings) == [5.0, None, None, 5.3, None, 5.0]


# -- heartbeat ----------------------------------------------------------------------------


@given(every=st.floats(0.5, 20.0), readings=series(st.integers(0, 2).map(float)))
def test_heartbeat_passes_changes_and_then_every_so_often(every: float, readings: Series) -> None:
    f = Heartbeat(HeartbeatParams(every=every))
    last: tuple[float, float] | None = None
    for (t, value), out in zip(readings, run(f, readings), strict=True):
        if last is None or value != last[1] or t - last[0] >= every:
            assert out == value
            last = (t, value)
        else:
            assert out is None


def test_heartbeat_examples() -> None:
    f = Heartbeat(HeartbeatParams(every=60))
    readings = [(0.0, 1.0), (30.0, 1.0), (31.0, 0.0), (61.0, 0.0), (91.0, 0.0), (92.0, 1.0)]
    assert run(f, readings) == [1.0, None, 0.0, None, 0.0, 1.0]


# -- debounce -----------------------------------------------------------------------------


@given(
    samples=st.integers(1, 6),
    tolerance=st.sampled_from([0.0, 0.5, 2.0]),
    values=st.lists(st.integers(0, 3).map(float), max_size=80),
)
def test_debounce_passes_only_after_samples_readings_within_tolerance(
    samples: int, tolerance: float, values: list[float]
) -> None:
    f = Debounce(DebounceParams(samples=samples, tolerance=tolerance))
    for i, out in enumerate(run(f, at_one_hz(values))):
        if out is not None:
            assert out == values[i]
            recent = values[i + 1 - samples : i + 1] if i + 1 >= samples else None
            assert recent is not None
            assert max(recent) - min(recent) <= tolerance
    # A value held long enough always gets through in the end.
    held = run(f, at_one_hz([7.0] * samples))
    assert held[-1] == 7.0


def test_debounce_by_samples() -> None:
    f = Debounce(DebounceParams(samples=3))
    values = [0, 1, 0, 1, 1, 1, 1, 0, 0, 0]
    assert run(f, at_one_hz(values)) == [None] * 5 + [1.0, 1.0, None, None, 0.0]


def test_debounce_tolerance_spans_the_run() -> None:
    f = Debounce(DebounceParams(samples=3, tolerance=0.2))
    # 10.0, 10.15, 10.3 drift: each step is within 0.2 but the run spans 0.3.
    assert run(f, at_one_hz([10.0, 10.15, 10.3, 10.2, 10.25])) == [None, None, None, None, 10.25]


def test_debounce_by_seconds() -> None:
    f = Debounce(DebounceParams(seconds=2.0))
    readings = [(0.0, 1.0), (1.0, 1.0), (2.0, 1.0), (2.5, 0.0), (4.0, 0.0), (4.5, 0.0)]
    assert run(f, readings) == [None, None, 1.0, None, None, 0.0]


# -- throttle -----------------------------------------------------------------------------


@given(interval=st.floats(0.1, 30.0), readings=series())
def test_throttle_keeps_passes_an_interval_apart(interval: float, readings: Series) -> None:
    f = Throttle(ThrottleParams(interval=interval))
    last_pass: float | None = None
    for (t, value), out in zip(readings, run(f, readings), strict=True):
        if out is None:
            assert last_pass is not None and t - last_pass < interval
        else:
            assert out == value
            assert last_pass is None or t - last_pass >= interval
            last_pass = t


def test_throttle_examples() -> None:
    f = Throttle(ThrottleParams(interval=1.0))
    readings = [(0.0, 1.0), (0.5, 2.0), (1.0, 3.0), (1.9, 4.0), (2.0, 5.0), (2.0, 6.0)]
    assert run(f, readings) == [1.0, None, 3.0, None, 5.0, None]


# -- calibrate ----------------------------------------------------------------------------


@given(params=calibrate_params(), x=st.floats(-1e5, 1e5), y=st.floats(-1e5, 1e5))
def test_calibrate_hits_both_points_exactly_and_is_linear(
    params: CalibrateParams, x: float, y: float
) -> None:
    f = Calibrate(params)
    assert f.apply(0.0, params.raw_low) == params.true_low
    assert f.apply(0.0, params.raw_high) == params.true_high
    slope = (params.true_high - params.true_low) / (params.raw_high - params.raw_low)
    fx, fy = f.apply(0.0, x), f.apply(0.0, y)
    assert fx is not None and fy is not None
    scale = max(abs(params.true_low), abs(params.true_high), abs(slope) * 1e5, 1.0)
    line = params.true_low + (x - params.raw_low) * slope
    assert math.isclose(fx, line, rel_tol=1e-9, abs_tol=1e-9 * scale)
    mid = f.apply(0.0, (x + y) / 2)
    assert mid is not None
    assert math.isclose(mid, (fx + fy) / 2, rel_tol=1e-9, abs_tol=1e-9 * scale)


def test_calibrate_examples() -> None:
    # An ice bath reads 0.4 degC and boiling water 99.1 degC on a thermometer.
    f = Calibrate(CalibrateParams(raw_low=0.4, raw_high=99.1, true_low=0.0, true_high=100.0))
    assert f.apply(0.0, 0.4) == 0.0
    assert f.apply(0.0, 99.1) == 100.0
    assert f.apply(0.0, 49.75) == pytest.approx(50.0)
    # Reversed: an ADC count that falls as the quantity rises; extrapolates past the points.
    g = Calibrate(CalibrateParams(raw_low=4000, raw_high=2000, true_low=0, true_high=100))
    assert run(g, at_one_hz([3000, 1000, 5000])) == [50.0, 150.0, -50.0]


def test_calibrate_drops_an_overflowing_result() -> None:
    f = Calibrate(CalibrateParams(raw_low=0, raw_high=1e-9, true_low=0, true_high=1e12))
    assert f.apply(0.0, 1e300) is None


# -- clamp --------------------------------------------------------------------------------


@given(params=clamp_params(), readings=series())
def test_clamp_output_is_within_bounds(params: ClampParams, readings: Series) -> None:
    f = Clamp(params)
    for (_, value), out in zip(readings, run(f, readings), strict=True):
        inside = (params.min is None or value >= params.min) and (
            params.max is None or value <= params.max
        )
        if inside:
            assert out == value
        elif params.drop:
            assert out is None
        else:
            assert out in (params.min, params.max)
        if out is not None:
            assert params.min is None or out >= params.min
            assert params.max is None or out <= params.max


def test_clamp_examples() -> None:
    values = at_one_hz([-5, 0, 50, 100, 105])
    assert run(Clamp(ClampParams(min=0, max=100)), values) == [0.0, 0.0, 50.0, 100.0, 100.0]
    assert run(Clamp(ClampParams(min=0, max=100, drop=True)), values) == [
        None,
        0.0,
        50.0,
        100.0,
        None,
    ]
    assert run(Clamp(ClampParams(max=10)), values) == [-5.0, 0.0, 10.0, 10.0, 10.0]


# -- chain --------------------------------------------------------------------------------


class Recorder:
    """A filter that passes everything and remembers what reached it."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float]] = []

    def apply(self, t: float, value: float) -> float | None:
        self.seen.append((t, value))
        return value


def test_chain_applies_filters_in_order() -> None:
    calibrate = CalibrateParams(raw_low=0, raw_high=10, true_low=0, true_high=100)
    clamp = ClampParams(max=50)
    calibrate_first = Chain([Calibrate(calibrate), Clamp(clamp)])
    clamp_first = Chain([Clamp(clamp), Calibrate(calibrate)])
    assert calibrate_first.apply(0.0, 7) == 50.0
    assert clamp_first.apply(0.0, 7) == 70.0


def test_chain_stops_at_the_first_none() -> None:
    after = Recorder()
    chain = Chain([Throttle(ThrottleParams(interval=10)), after])
    assert run(chain, [(0.0, 1.0), (5.0, 2.0), (10.0, 3.0)]) == [1.0, None, 3.0]
    assert after.seen == [(0.0, 1.0), (10.0, 3.0)]


def test_empty_chain_passes_floats() -> None:
    out = Chain([]).apply(0.0, 3)
    assert out == 3.0 and type(out) is float


def test_chain_of_registry_filters_from_config_like_specs() -> None:
    specs: list[tuple[str, dict[str, Any]]] = [
        ("median", {"window": 3}),
        ("calibrate", {"raw_low": 0, "raw_high": 1, "true_low": 0, "true_high": 2}),
        ("delta", {"delta": 1.0}),
    ]
    chain = Chain(FILTER_TYPES[name].build(FILTER_TYPES[name].params(**kw)) for name, kw in specs)
    # Medians from the third reading on: 10, 10, 10.2, 10.2, 10.6, 11 (the spike is gone);
    # doubled: 20, 20, 20.4, 20.4, 21.2, 22; delta 1 passes 20, then 21.2.
    outs = run(chain, at_one_hz([10, 10, 90, 10, 10.2, 10.6, 11, 11]))
    assert outs == pytest.approx([None, None, 20.0, None, None, None, 21.2, None])


# -- params and registry ------------------------------------------------------------------


ALLOWED = {int, float, bool, str, int | None, float | None, bool | None, str | None}


@pytest.mark.parametrize("name", sorted(FILTER_TYPES))
def test_params_follow_the_config_rules(name: str) -> None:
    kind = FILTER_TYPES[name]
    assert kind.name == name and kind.summary
    assert dataclasses.is_dataclass(kind.params)
    assert kind.params.__dataclass_params__.frozen  # type: ignore[attr-defined]
    hints = typing.get_type_hints(kind.params)
    for f in dataclasses.fields(kind.params):
        hint = hints[f.name]
        is_literal = typing.get_origin(hint) is typing.Literal
        assert hint in ALLOWED or is_literal, (name, f.name, hint)
        assert not isinstance(hint, types.GenericAlias)
        assert f.metadata.get("doc"), (name, f.name)
        assert f.name != "type"  # the config table's key naming the filter type


BAD_PARAMS: list[tuple[type, dict[str, Any], str]] = [
    (DeltaParams, {}, "delta or percent"),
    (DeltaParams, {"delta": 0.0}, "delta must be above 0"),
    (DeltaParams, {"delta": -1.0}, "delta must be at least 0"),
    (DeltaParams, {"percent": math.inf}, "percent must be a finite number"),
    (DeltaParams, {"delta": 1.0, "heartbeat": 0.0}, "heartbeat must be above 0"),
    (HeartbeatParams, {"every": 0.0}, "every must be above 0"),
    (DebounceParams, {}, "one of samples or seconds"),
    (DebounceParams, {"samples": 3, "seconds": 1.0}, "one of samples or seconds"),
    (DebounceParams, {"samples": 0}, "samples must be at least 1"),
    (DebounceParams, {"seconds": 1.0, "tolerance": -1.0}, "tolerance must be at least 0"),
    (MovingAverageParams, {"window": 0}, "window must be at least 1"),
    (MovingAverageParams, {"window": 10_001}, "window must be at most 10000"),
    (MedianParams, {"window": 4}, "window must be odd"),
    (ThrottleParams, {"interval": 0.0}, "interval must be above 0"),
    (ThrottleParams, {"interval": math.nan}, "interval must be a finite number"),
    (
        CalibrateParams,
        {"raw_low": 1, "raw_high": 1, "true_low": 0, "true_high": 5},
        "raw_low and raw_high must differ",
    ),
    (
        CalibrateParams,
        {"raw_low": 0, "raw_high": 1e13, "true_low": 0, "true_high": 5},
        "raw_high must be at most",
    ),
    (ClampParams, {}, "min or max"),
    (ClampParams, {"min": 5, "max": 1}, "must not be above max"),
    (ClampParams, {"min": -math.inf}, "min must be a finite number"),
]


@pytest.mark.parametrize(("cls", "kwargs", "message"), BAD_PARAMS)
def test_params_refuse_bad_values(cls: type, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cls(**kwargs)


def test_config_tables_validate_through_the_runtime_validator() -> None:
    from edge.config.validation import Problems, build

    problems = Problems("edge.toml")
    table = {"window": 4}
    assert build(MedianParams, table, "sensors[0].filters[1]", problems) is None
    assert problems.items == [
        "edge.toml: sensors[0].filters[1]: window must be odd, so the median is a reading; got 4"
    ]
    problems = Problems("edge.toml")
    params = build(ClampParams, {"min": 0, "drop": True}, "f", problems)
    assert problems.items == []
    assert params == ClampParams(min=0.0, drop=True)
