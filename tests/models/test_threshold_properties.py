"""Properties of the threshold detector over random series.

Times lie on a quarter-second grid so elapsed times are exact and the checks below can compare
durations with ``>=`` without the detector's microsecond slack mattering.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

from hypothesis import given
from hypothesis import strategies as st

from models import Detection, ThresholdDetector, ThresholdParams

Reading = tuple[float, float]
SEVERITIES: tuple[Literal["warning", "critical"], ...] = ("warning", "critical")


@st.composite
def threshold_params(draw: st.DrawFn) -> ThresholdParams:
    mode = draw(st.sampled_from(["above", "below", "both"]))
    hysteresis = draw(st.sampled_from([0.0, 0.5, 1.0, 2.0]))
    min_duration = draw(st.sampled_from([0.0, 0.25, 1.0, 2.5]))
    severity = draw(st.sampled_from(SEVERITIES))
    low = float(draw(st.integers(-5, 5)))
    if mode == "above":
        return ThresholdParams(
            above=low, hysteresis=hysteresis, min_duration=min_duration, severity=severity
        )
    if mode == "below":
        return ThresholdParams(
            below=low, hysteresis=hysteresis, min_duration=min_duration, severity=severity
        )
    gap = draw(st.sampled_from([0.25, 1.0, 4.0]))
    return ThresholdParams(
        above=low + 2 * hysteresis + gap,
        below=low,
        hysteresis=hysteresis,
        min_duration=min_duration,
        severity=severity,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ThresholdParams, list[Reading]]:
    params = draw(threshold_params())
    edges: list[float] = []
    for limit, inward in ((params.above, -1.0), (params.below, 1.0)):
        if limit is not None:
            band = limit + inward * params.hysteresis
            edges += [limit, limit + 0.25, limit - 0.25, band, band + 0.25, band - 0.25]
    # Mostly values on, just beside and well beyond each limit and each hysteresis edge, so
    # that crossings, clears and jumps from one limit past the other are common.
    near = st.sampled_from(edges)
    values = st.one_of(
        near,
        near.map(lambda v: v + 3.0),
        near.map(lambda v: v - 3.0),
        st.integers(-60, 60).map(lambda q: q / 4),
        st.just(math.nan),
    )
    # Hypothesis keeps unsized lists short; draw the length first to get long series too.
    size = draw(st.integers(1, 80))
    step = st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0]), values)
    steps = draw(st.lists(step, min_size=size, max_size=size))
    t = draw(st.integers(0, 1000).map(float))
    readings = []
    for dt, value in steps:
        t += dt
        readings.append((t, value))
    return params, readings


def out_side(params: ThresholdParams, value: float) -> str | None:
    if params.above is not None and value > params.above:
        return "above"
    if params.below is not None and value < params.below:
        return "below"
    return None


def back_inside(params: ThresholdParams, limit: str, value: float) -> bool:
    if limit == "above":
        assert params.above is not None
        return value <= params.above - params.hysteresis
    assert params.below is not None
    return value >= params.below + params.hysteresis


def run(
    params: ThresholdParams, readings: list[Reading]
) -> tuple[list[Detection | None], list[str]]:
    det = ThresholdDetector(params)
    results: list[Detection | None] = []
    states: list[str] = []
    for t, value in readings:
        results.append(det.observe(t, value))
        states.append(det.state)
    return results, states


@dataclass
class Reference:
    """The spec, read literally: an alarm per limit, a timer per run of out readings."""

    params: ThresholdParams
    alarm: str | None = None  # the limit whose alarm is active
    alarm_since: float = 0.0
    run: str | None = None  # the limit the current run of out readings is beyond
    run_since: float = 0.0

    def state(self) -> str:
        if self.alarm is not None:
            return "active"
        return "normal" if self.run is None else "pending"

    def step(self, t: float, value: float) -> tuple[str, str, float] | None:
        """Return (state, limit, duration) of the detection this reading causes."""
        if math.isnan(value):
            return None
        side = out_side(self.params, value)
        if self.alarm is not None:
            if not back_inside(self.params, self.alarm, value):
                return None
            cleared, self.alarm = self.alarm, None
            self.run, self.run_since = side, t
            return ("clear", cleared, t - self.alarm_since)
        if side != self.run:
            self.run, self.run_since = side, t
        if side is None or t - self.run_since < self.params.min_duration:
            return None
        self.alarm, self.alarm_since, self.run = side, t, None
        return ("active", side, t - self.run_since)


@given(scenarios())
def test_agrees_with_reference_model(scenario: tuple[ThresholdParams, list[Reading]]) -> None:
    params, readings = scenario
    det = ThresholdDetector(params)
    ref = Reference(params)
    for t, value in readings:
        got = det.observe(t, value)
        expected = ref.step(t, value)
        assert det.state == ref.state()
        if expected is None:
            assert got is None
            continue
        assert got is not None
        assert (got.fields["state"], got.fields["limit"], got.fields["duration"]) == expected


@given(scenarios())
def test_detections_alternate_active_then_clear_on_the_same_limit(
    scenario: tuple[ThresholdParams, list[Reading]],
) -> None:
    params, readings = scenario
    results, _ = run(params, readings)
    found = [d for d in results if d is not None]
    for n, d in enumerate(found):
        assert d.kind == "threshold"
        assert d.fields["state"] == ("active" if n % 2 == 0 else "clear")
        assert d.severity == (params.severity if n % 2 == 0 else "info")
        expected_threshold = params.above if d.fields["limit"] == "above" else params.below
        assert d.fields["threshold"] == expected_threshold
        if n % 2:
            assert d.fields["limit"] == found[n - 1].fields["limit"]
        json.dumps(dict(d.fields), allow_nan=False)


@given(scenarios())
def test_active_only_after_min_duration_of_out_readings(
    scenario: tuple[ThresholdParams, list[Reading]],
) -> None:
    params, readings = scenario
    results, _ = run(params, readings)
    last_clear = -1
    for i, d in enumerate(results):
        if d is None:
            continue
        if d.fields["state"] == "clear":
            last_clear = i
            continue
        limit = d.fields["limit"]
        assert d.value == readings[i][1]
        assert out_side(params, d.value) == limit
        # Walk back over the run of readings out on this limit (NaN does not break a run; a run
        # cannot start before the reading that cleared the previous alarm).
        start = i
        for j in range(i - 1, max(last_clear, 0) - 1, -1):
            value = readings[j][1]
            if math.isnan(value):
                continue
            if out_side(params, value) != limit:
                break
            start = j
        elapsed = readings[i][0] - readings[start][0]
        assert elapsed >= params.min_duration
        assert d.fields["duration"] == elapsed
        # It fired on the first reading that qualified, not later (the reading that cleared
        # the previous alarm could not also fire: one detection per reading).
        for k in range(start, i):
            if k != last_clear and not math.isnan(readings[k][1]):
                assert readings[k][0] - readings[start][0] < params.min_duration


@given(scenarios())
def test_clear_exactly_when_back_inside_the_hysteresis_band(
    scenario: tuple[ThresholdParams, list[Reading]],
) -> None:
    params, readings = scenario
    results, _ = run(params, readings)
    active_at: int | None = None
    for i, d in enumerate(results):
        t, value = readings[i]
        if active_at is not None and d is None and not math.isnan(value):
            limit = results[active_at].fields["limit"]  # type: ignore[union-attr]
            assert not back_inside(params, str(limit), value)
        if d is None:
            continue
        if d.fields["state"] == "active":
            active_at = i
            continue
        assert active_at is not None
        assert back_inside(params, str(d.fields["limit"]), value)
        assert d.fields["duration"] == t - readings[active_at][0]
        active_at = None


@given(scenarios())
def test_nan_readings_change_nothing(scenario: tuple[ThresholdParams, list[Reading]]) -> None:
    params, readings = scenario
    with_nan, states_with_nan = run(params, readings)
    kept = [i for i, (_, value) in enumerate(readings) if not math.isnan(value)]
    without_nan, states_without_nan = run(params, [readings[i] for i in kept])
    assert [with_nan[i] for i in kept] == without_nan
    assert [states_with_nan[i] for i in kept] == states_without_nan
    assert all(with_nan[i] is None for i in range(len(readings)) if i not in kept)
