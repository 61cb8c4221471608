"""Rate-of-change and rolling z-score detectors: scenarios, references and properties."""

from __future__ import annotations

import json
import math
import random
import statistics
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any, Literal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from models import DETECTOR_TYPES, Detection, Detector, ModelError
from models.rules import RateDetector, RateParams, ZScoreDetector, ZScoreParams

Reading = tuple[float, float]
SEVERITIES: tuple[Literal["warning", "critical"], ...] = ("warning", "critical")


def feed(detector: Detector, readings: Iterable[Reading]) -> list[Detection | None]:
    return [detector.observe(t, v) for t, v in readings]


def emitted(results: list[Detection | None]) -> list[tuple[int, Detection]]:
    return [(i, d) for i, d in enumerate(results) if d is not None]


def num(detection: Detection, key: str) -> float:
    value = detection.fields[key]
    assert isinstance(value, float)
    return value


def grid(values: Iterable[float], step: float = 1.0, start: float = 0.0) -> list[Reading]:
    return [(start + i * step, v) for i, v in enumerate(values)]


# -- params --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["rise", "fall"]),
        ({"rise": -1.0}, ["rise"]),
        ({"fall": -1.0}, ["fall"]),
        ({"rise": 1.0, "fall": 1.0, "hysteresis": 1.0}, ["hysteresis", "rise", "fall"]),
        ({"rise": 1.0, "window": 0.0}, ["window"]),
        ({"rise": 1.0, "max_readings": 2}, ["max_readings"]),
        ({"rise": math.nan}, ["rise"]),
    ],
)
def test_rate_params_validation_names_the_fields(kwargs: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        RateParams(**kwargs)
    assert isinstance(info.value, ModelError)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"threshold": 0.0}, ["threshold"]),
        ({"threshold": 2.0, "hysteresis": 2.0}, ["hysteresis", "threshold"]),
        ({"window": 1}, ["window"]),
        ({"warmup": 1}, ["warmup"]),
        ({"min_std": -1.0}, ["min_std"]),
        ({"min_duration": math.inf}, ["min_duration"]),
    ],
)
def test_zscore_params_validation_names_the_fields(
    kwargs: dict[str, Any], names: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        ZScoreParams(**kwargs)
    assert isinstance(info.value, ModelError)
    for name in names:
        assert name in str(info.value)


def test_registry_entries_build_working_detectors() -> None:
    rate = DETECTOR_TYPES["rate"]
    assert rate.params is RateParams
    detector = rate.build(RateParams(rise=1.0, window=2.0))
    assert isinstance(detector, RateDetector)
    assert isinstance(detector, Detector)
    zscore = DETECTOR_TYPES["zscore"]
    assert zscore.params is ZScoreParams
    assert isinstance(zscore.build(ZScoreParams()), ZScoreDetector)


# -- rate ---------------------------------------------------------------------------------


def test_ramp_steeper_than_rise_fires_once_then_clears_when_it_stops() -> None:
    # Smoke at 1 Hz: flat at 5, then rising 0.5/s for 30 s, then flat at 20.
    det = RateDetector(RateParams(rise=0.2, window=10.0, hysteresis=0.05, severity="critical"))
    values = [5.0] * 30 + [5.0 + 0.5 * k for k in range(1, 31)] + [20.0] * 30
    found = emitted(feed(det, grid(values)))
    assert [(i, d.fields["state"]) for i, d in found] == [(34, "active"), (66, "clear")]
    active, clear = found[0][1], found[1][1]
    assert active.kind == "threshold"
    assert active.severity == "critical"
    assert active.value == values[34]
    assert active.fields["limit"] == "above"
    assert active.fields["threshold"] == 0.2
    assert active.fields["per"] == "second"
    assert active.fields["duration"] == 0.0
    # The least-squares fit over t = 24..34: six flat readings, then five rising ones.
    assert active.fields["rate"] == pytest.approx(ref_rate(grid(values[:35]), 10.0, 1000))
    assert clear.severity == "info"
    assert num(clear, "rate") <= 0.15
    assert clear.fields["duration"] == 32.0
    json.dumps(dict(active.fields), allow_nan=False)


def test_rate_per_minute() -> None:
    det = RateDetector(RateParams(rise=3.0, per="minute", window=60.0))
    # 0.06 units per second is 3.6 per minute.
    found = emitted(feed(det, grid([0.06 * k for k in range(120)])))
    assert len(found) == 1
    assert found[0][0] == 30  # the first reading whose readings span half the window
    assert found[0][1].fields["rate"] == pytest.approx(3.6)
    assert found[0][1].fields["per"] == "minute"
    assert det.rate == pytest.approx(3.6)


def test_fall_is_a_speed_of_falling() -> None:
    det = RateDetector(RateParams(fall=1.0, window=4.0))
    found = emitted(feed(det, grid([100.0 - 2 * k for k in range(10)])))
    assert [(i, d.fields["limit"], d.fields["threshold"]) for i, d in found] == [(2, "below", -1.0)]
    assert found[0][1].fields["rate"] == pytest.approx(-2.0)


def test_rate_min_duration() -> None:
    det = RateDetector(RateParams(rise=1.0, window=2.0, min_duration=3.0))
    found = emitted(feed(det, grid([2.0 * k for k in range(10)])))
    assert [(i, d.fields["duration"]) for i, d in found] == [(4, 3.0)]


def test_rate_waits_for_half_a_window_of_readings() -> None:
    det = RateDetector(RateParams(rise=0.1, window=10.0))
    # A noisy start: two readings a second apart would give 5/s.
    assert feed(det, [(0.0, 0.0), (1.0, 5.0), (2.0, 0.0), (3.0, 5.0)]) == [None] * 4
    assert det.rate is None
    assert det.state == "normal"


def test_rate_after_a_gap_needs_half_a_window_again() -> None:
    det = RateDetector(RateParams(rise=1.0, window=10.0))
    feed(det, grid([0.0] * 20))
    assert det.rate == 0.0
    # An hour later the sensor is back much higher: one reading is no slope.
    assert det.observe(3600.0, 50.0) is None
    assert det.observe(3601.0, 50.0) is None
    assert det.rate == 0.0


def test_rate_keeps_at_most_max_readings() -> None:
    # 10 Hz over a 60 s window would be 600 readings; only the last 50 (5 s) are kept.
    det = RateDetector(RateParams(rise=1.0, window=60.0, max_readings=50))
    readings = [(k / 10, 0.0) for k in range(400)] + [
        (40.0 + k / 10, 2.0 * k / 10) for k in range(60)
    ]
    assert emitted(feed(det, readings[:400])) == []
    assert det.rate == 0.0  # measured though 50 readings span only 4.9 s of the 60
    found = emitted(feed(det, readings[400:]))
    assert [d.fields["state"] for _, d in found] == ["active"]
    assert det.rate == pytest.approx(2.0)  # only the ramp is in the last 50


def test_rate_is_exact_on_a_far_clock_with_a_large_offset() -> None:
    det = RateDetector(RateParams(rise=1.0, window=30.0, max_readings=8))
    # A pressure near 1013 hPa rising 1e-3 hPa/s on a clock a week from its epoch.
    readings = grid([1013.25 + 1e-3 * k for k in range(100_000)], start=604_800.0)
    feed(det, readings)
    assert det.rate == pytest.approx(1e-3, rel=1e-6)


def ref_rate(readings: list[Reading], window: float, capacity: int) -> float | None:
    t_now = readings[-1][0]
    kept = [(t, x) for t, x in readings[-capacity:] if t >= t_now - window]
    span = kept[-1][0] - kept[0][0]
    if span == 0 or (span < window / 2 and len(kept) < capacity):
        return None
    ts, xs = [t for t, _ in kept], [x for _, x in kept]
    tm, xm = statistics.fmean(ts), statistics.fmean(xs)
    den = math.fsum((t - tm) ** 2 for t in ts)
    return math.fsum((t - tm) * (x - xm) for t, x in kept) / den


@st.composite
def irregular_series(draw: st.DrawFn) -> list[Reading]:
    size = draw(st.integers(1, 120))
    steps = draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.0, 7.0]), min_size=size, max_size=size))
    values = draw(st.lists(st.integers(-1000, 1000), min_size=size, max_size=size))
    t = draw(st.integers(0, 10**6)) * 0.5
    readings = []
    for dt, v in zip(steps, values, strict=True):
        t += dt
        readings.append((t, v / 8))
    return readings


@given(irregular_series(), st.sampled_from([1.0, 5.0, 20.0]), st.sampled_from([3, 10, 1000]))
def test_rate_matches_a_least_squares_reference(
    readings: list[Reading], window: float, capacity: int
) -> None:
    det = RateDetector(RateParams(rise=1e9, window=window, max_readings=capacity))
    for k, (t, x) in enumerate(readings, 1):
        det.observe(t, x)
        expected = ref_rate(readings[:k], window, capacity)
        if expected is None:
            continue
        assert det.rate == pytest.approx(expected, rel=1e-6, abs=1e-6)


# -- zscore -------------------------------------------------------------------------------


def noise(n: int, seed: int = 1, sigma: float = 1.0, mean: float = 0.0) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, sigma) for _ in range(n)]


def test_step_of_ten_sigma_fires_once_then_clears_as_the_baseline_adapts() -> None:
    det = ZScoreDetector(ZScoreParams(window=100, threshold=4.0))
    values = noise(300) + [10.0 + v for v in noise(300, seed=2)]
    found = emitted(feed(det, grid(values)))
    assert [(i, d.fields["state"]) for i, d in found] == [(300, "active"), (found[1][0], "clear")]
    active, clear = found[0][1], found[1][1]
    assert 300 < found[1][0] < 320
    assert active.kind == "anomaly"
    assert active.severity == "warning"
    assert active.value == values[300]
    assert active.fields["limit"] == "above"
    assert active.fields["threshold"] == 4.0
    assert num(active, "score") > 7
    assert active.fields["baseline"] == pytest.approx(statistics.fmean(values[200:300]))
    assert active.fields["std"] == pytest.approx(statistics.pstdev(values[200:300]))
    assert clear.severity == "info"
    assert num(clear, "score") <= 4.0
    json.dumps(dict(active.fields), allow_nan=False)


def test_drop_fires_below() -> None:
    det = ZScoreDetector(ZScoreParams(window=50, threshold=3.0, severity="critical"))
    found = emitted(feed(det, grid([*noise(60, mean=20.0), 10.0])))
    assert [(i, d.fields["limit"], d.severity) for i, d in found] == [(60, "below", "critical")]
    assert num(found[0][1], "score") < -3


def test_warmup_before_it_may_fire() -> None:
    det = ZScoreDetector(ZScoreParams(window=100, warmup=20))
    values = noise(25)
    values[10] = 50.0  # inside the warmup: not scored
    values[22] = 50.0  # after it: scored against 22 readings
    found = emitted(feed(det, grid(values)))
    assert [i for i, d in found if d.fields["state"] == "active"] == [22]
    # Default warmup is the window.
    det = ZScoreDetector(ZScoreParams(window=30))
    results = feed(det, grid([*noise(29), 100.0, *noise(1), 100.0]))
    assert [i for i, _ in emitted(results)] == [31]


def test_min_duration_and_hysteresis() -> None:
    det = ZScoreDetector(
        ZScoreParams(window=1000, warmup=100, threshold=3.0, hysteresis=1.0, min_duration=2.0)
    )
    base = [(-1.0) ** k for k in range(100)]  # mean 0, std 1, steady
    results = feed(det, grid([*base, 3.5, 3.5, 3.5, 2.5, 1.5]))
    found = emitted(results)
    assert [(i, d.fields["state"]) for i, d in found] == [(102, "active"), (104, "clear")]
    assert found[0][1].fields["duration"] == 2.0


def test_flat_baseline_scores_the_second_differing_reading() -> None:
    det = ZScoreDetector(ZScoreParams(window=100, threshold=4.0))
    results = feed(det, grid([5.0] * 100 + [6.0, 6.0]))
    assert results[100] is None  # no spread: no scale to measure a difference in
    fired = results[101]
    assert fired is not None
    assert fired.fields["score"] == pytest.approx(math.sqrt(99))
    assert det.score == pytest.approx(math.sqrt(99))


def test_min_std_floors_the_baseline_spread() -> None:
    det = ZScoreDetector(ZScoreParams(window=10, threshold=4.0, min_std=0.5))
    results = feed(det, grid([5.0] * 10 + [6.0, 8.0]))
    assert results[10] is None  # 1.0 / 0.5 = 2 sigma
    fired = results[11]
    assert fired is not None
    assert num(fired, "std") >= 0.5


def test_non_finite_readings_are_ignored() -> None:
    values = noise(120)
    readings = grid(values)
    with_gaps = [*readings[:50], (50.0, math.nan), (50.0, math.inf), *readings[50:]]
    for make in (
        lambda: ZScoreDetector(ZScoreParams(window=20, threshold=1.5)),
        lambda: RateDetector(RateParams(rise=0.3, fall=0.3, window=5.0)),
    ):
        clean, gappy = feed(make(), readings), feed(make(), with_gaps)
        assert gappy[50:52] == [None, None]
        assert gappy[:50] + gappy[52:] == clean


def ref_scores(values: list[float], window: int, warmup: int) -> list[float | None]:
    out: list[float | None] = []
    for k, x in enumerate(values):
        base = values[max(0, k - window) : k]
        if k < warmup:
            out.append(None)
            continue
        mean, std = statistics.fmean(base), statistics.pstdev(base)
        if std == 0:
            out.append(0.0 if x == mean else None)
        else:
            out.append((x - mean) / std)
    return out


@given(
    st.lists(st.integers(-50, 50).map(lambda v: v / 4), min_size=1, max_size=150),
    st.integers(2, 12),
    st.integers(2, 15),
)
# A flat window after a sliding update: its spread must be 0, not a rounding residue.
@example([0.0, 0.25, 0.25, 0.25, 0.0], 3, 2)
def test_zscore_matches_a_rolling_reference(values: list[float], window: int, warmup: int) -> None:
    det = ZScoreDetector(ZScoreParams(window=window, warmup=warmup, threshold=1e6))
    expected = ref_scores(values, window, warmup)
    scores = []
    for t, x in grid(values):
        det.observe(t, x)
        scores.append(det.score)
    last: float | None = None  # a reading that is not scored leaves the last score
    for got, want in zip(scores, expected, strict=True):
        last = want if want is not None else last
        if last is None:
            assert got is None
        else:
            assert got == pytest.approx(last, rel=1e-6, abs=1e-6)


# -- properties shared by both: alarms alternate, memory is fixed ---------------------------

Factory = Callable[[], Detector]


@st.composite
def detectors_and_series(draw: st.DrawFn) -> tuple[Factory, list[Reading]]:
    severity = draw(st.sampled_from(SEVERITIES))
    hysteresis = draw(st.sampled_from([0.0, 0.25, 1.0]))
    min_duration = draw(st.sampled_from([0.0, 0.5, 2.0]))
    factory: Factory
    if draw(st.booleans()):
        rise = draw(st.sampled_from([None, 0.5, 2.0]))
        fall = draw(st.sampled_from([2.0, 0.5] if rise is None else [None, 0.5, 2.0]))
        if rise is not None and fall is not None:
            hysteresis = min(hysteresis, 0.25)  # must fit between -fall and rise
        rate_params = RateParams(
            rise=rise,
            fall=fall,
            window=draw(st.sampled_from([1.0, 3.0])),
            hysteresis=hysteresis,
            min_duration=min_duration,
            max_readings=draw(st.sampled_from([3, 100])),
            severity=severity,
        )
        factory = lambda: RateDetector(rate_params)  # noqa: E731
    else:
        z_params = ZScoreParams(
            window=draw(st.integers(2, 20)),
            threshold=draw(st.sampled_from([1.5, 3.0])),
            hysteresis=hysteresis,
            min_duration=min_duration,
            warmup=draw(st.sampled_from([None, 2, 5])),
            severity=severity,
        )
        factory = lambda: ZScoreDetector(z_params)  # noqa: E731
    size = draw(st.integers(1, 150))
    steps = st.tuples(
        st.sampled_from([0.0, 0.25, 0.5, 1.0]),
        st.one_of(st.integers(-40, 40).map(lambda v: v / 4), st.just(math.nan)),
    )
    t = 0.0
    readings = []
    for dt, v in draw(st.lists(steps, min_size=size, max_size=size)):
        t += dt
        readings.append((t, v))
    return factory, readings


@given(detectors_and_series())
def test_detections_alternate_active_then_clear_on_the_same_limit(
    case: tuple[Factory, list[Reading]],
) -> None:
    factory, readings = case
    det = factory()
    params: Any = det.params  # type: ignore[attr-defined]
    found = [d for d in feed(det, readings) if d is not None]
    for n, d in enumerate(found):
        assert d.fields["state"] == ("active" if n % 2 == 0 else "clear")
        assert d.severity == (params.severity if n % 2 == 0 else "info")
        if n % 2:
            assert d.fields["limit"] == found[n - 1].fields["limit"]
            assert num(d, "duration") >= 0
        else:
            assert num(d, "duration") >= params.min_duration - 1e-6
        json.dumps(dict(d.fields), allow_nan=False)
    assert det.state in ("normal", "pending", "active")  # type: ignore[attr-defined]
    assert (det.state == "active") == (len(found) % 2 == 1)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "make",
    [
        lambda: RateDetector(RateParams(rise=0.5, fall=0.5, window=30.0, max_readings=200)),
        lambda: ZScoreDetector(ZScoreParams(window=200)),
    ],
    ids=["rate", "zscore"],
)
def test_memory_is_bounded_over_a_long_run(make: Factory) -> None:
    det = make()
    values = noise(100_000, seed=3)
    feed(det, grid(values[:1000], step=0.1))  # fill every buffer first
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for k in range(1000, 100_000):
            det.observe(k * 0.1, values[k])
        end, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert end - start < 16 * 1024
