"""Concrete scenarios for the threshold detector and its parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytest

from models import Detection, ModelError, ThresholdDetector, ThresholdParams


def feed(
    detector: ThresholdDetector, readings: Iterable[tuple[float, float]]
) -> list[Detection | None]:
    return [detector.observe(t, v) for t, v in readings]


def emitted(results: list[Detection | None]) -> list[tuple[int, Detection]]:
    return [(i, d) for i, d in enumerate(results) if d is not None]


def test_fires_once_on_crossing_with_full_payload() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0))
    results = feed(det, enumerate([10.0, 20.0, 31.0, 35.0, 40.0, 33.0]))
    assert emitted(results) == [
        (
            2,
            Detection(
                kind="threshold",
                severity="warning",
                value=31.0,
                fields={"state": "active", "limit": "above", "threshold": 30.0, "duration": 0.0},
            ),
        )
    ]
    assert det.state == "active"


def test_value_equal_to_limit_is_not_out() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, below=10.0))
    assert feed(det, [(0, 30.0), (1, 10.0)]) == [None, None]
    assert det.state == "normal"


def test_no_chatter_inside_hysteresis_band() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, hysteresis=2.0))
    results = feed(det, enumerate([31.0, 29.0, 31.0, 28.5, 30.5, 29.9, 28.0, 29.0]))
    found = emitted(results)
    assert [(i, d.fields["state"]) for i, d in found] == [(0, "active"), (6, "clear")]
    # The clear reading sits exactly on above - hysteresis: inclusive.
    assert found[1][1].value == 28.0


def test_clear_is_info_with_active_duration_and_rearms() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, hysteresis=1.0, severity="critical"))
    readings = [(10.0, 31.0), (12.5, 32.0), (14.0, 29.0), (15.0, 29.5), (16.0, 30.5)]
    found = emitted(feed(det, readings))
    assert [(i, d.severity, d.fields["state"]) for i, d in found] == [
        (0, "critical", "active"),
        (2, "info", "clear"),
        (4, "critical", "active"),
    ]
    clear = found[1][1]
    assert clear == Detection(
        kind="threshold",
        severity="info",
        value=29.0,
        fields={"state": "clear", "limit": "above", "threshold": 30.0, "duration": 4.0},
    )
    assert det.state == "active"


def test_min_duration_fires_after_continuous_out_time() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, min_duration=5.0))
    results = feed(det, [(0.0, 31.0), (2.0, 32.0), (4.0, 33.0)])
    assert results == [None, None, None]
    assert det.state == "pending"
    fired = det.observe(5.0, 31.5)
    assert fired is not None
    assert fired.fields == {"state": "active", "limit": "above", "threshold": 30.0, "duration": 5.0}
    assert fired.value == 31.5
    assert det.observe(6.0, 40.0) is None


def test_min_duration_resets_when_back_in_range() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, min_duration=5.0))
    assert feed(det, [(0.0, 31.0), (3.0, 29.0)]) == [None, None]
    assert det.state == "normal"
    # The timer restarts at t=4: t=8 is only 4 s out, t=9 is 5 s.
    results = feed(det, [(4.0, 31.0), (8.0, 31.0), (9.0, 31.0)])
    assert results[:2] == [None, None]
    assert results[2] is not None
    assert results[2].fields["duration"] == 5.0
    assert det.state == "active"


def test_min_duration_measured_from_first_out_reading() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, min_duration=5.0))
    results = feed(det, [(0.0, 29.0), (1.0, 31.0), (5.9, 31.0), (6.0, 31.0)])
    found = emitted(results)
    assert [(i, d.fields["duration"]) for i, d in found] == [(3, 5.0)]


def test_time_stepping_back_never_makes_a_duration_negative_nor_stalls_a_timer() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, min_duration=5.0))
    # Out at 1000, then a new clock at 10: the timer starts at 10, not ~1000 s from now.
    assert feed(det, [(1000.0, 31.0), (10.0, 31.0), (14.0, 31.0)]) == [None, None, None]
    fired = det.observe(15.0, 31.0)
    assert fired is not None and fired.fields["duration"] == 5.0
    # Cleared by a late reading, before the time the alarm fired: a duration of 0, not -3.
    cleared = det.observe(12.0, 20.0)
    assert cleared is not None and cleared.fields == {
        "state": "clear", "limit": "above", "threshold": 30.0, "duration": 0.0,
    }  # fmt: skip


def test_min_duration_on_float_accumulated_sampling_grid() -> None:
    # Ten steps of 0.1 s add up to 0.9999999999999999, not 1.0; the alarm still fires on the
    # reading a person counts as one second out, not one reading late.
    det = ThresholdDetector(ThresholdParams(above=30.0, min_duration=1.0))
    t, fired_at = 0.0, None
    for i in range(20):
        if det.observe(t, 31.0) is not None:
            fired_at = i
            break
        t += 0.1
    assert fired_at == 10


def test_below_limit() -> None:
    det = ThresholdDetector(ThresholdParams(below=5.0, hysteresis=1.0))
    found = emitted(feed(det, enumerate([6.0, 4.9, 3.0, 5.5, 4.0, 6.0, 5.9])))
    assert [(i, d.severity, d.fields["state"], d.fields["limit"]) for i, d in found] == [
        (1, "warning", "active", "below"),
        (5, "info", "clear", "below"),
    ]
    assert all(d.fields["threshold"] == 5.0 for _, d in found)


def test_both_limits_each_alarm_independently() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, below=10.0, hysteresis=1.0))
    found = emitted(feed(det, enumerate([20.0, 31.0, 28.0, 9.0, 12.0, 20.0])))
    assert [(i, d.fields["state"], d.fields["limit"]) for i, d in found] == [
        (1, "active", "above"),
        (2, "clear", "above"),
        (3, "active", "below"),
        (4, "clear", "below"),
    ]


@pytest.mark.parametrize(
    ("first", "jump", "first_limit", "second_limit"),
    [(31.0, 9.0, "above", "below"), (9.0, 31.0, "below", "above")],
)
def test_jump_across_both_limits_clears_then_times_the_other(
    first: float, jump: float, first_limit: str, second_limit: str
) -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, below=10.0, min_duration=2.0))
    results = feed(
        det, [(0.0, first), (2.0, first), (10.0, jump), (11.0, jump), (12.0, jump), (13.0, jump)]
    )
    found = emitted(results)
    assert [(i, d.fields["state"], d.fields["limit"]) for i, d in found] == [
        (1, "active", first_limit),
        (2, "clear", first_limit),
        (4, "active", second_limit),
    ]
    assert found[1][1].fields["duration"] == 8.0
    assert found[2][1].fields["duration"] == 2.0


def test_jump_with_zero_min_duration_fires_on_next_reading() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, below=10.0))
    results = feed(det, [(0.0, 31.0), (1.0, 9.0), (2.0, 9.0)])
    assert [r.fields["state"] if r else None for r in results] == ["active", "clear", "active"]
    assert det.state == "active"
    last = results[2]
    assert last is not None
    assert last.fields["limit"] == "below"
    assert last.fields["duration"] == 1.0


def test_pending_switching_side_restarts_timer() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, below=10.0, min_duration=2.0))
    assert feed(det, [(0.0, 31.0), (1.0, 9.0), (2.5, 9.0)]) == [None, None, None]
    assert det.state == "pending"
    fired = det.observe(3.0, 9.0)
    assert fired is not None
    assert fired.fields["limit"] == "below"
    assert fired.fields["duration"] == 2.0


def test_nan_is_ignored_in_every_state() -> None:
    det = ThresholdDetector(ThresholdParams(above=30.0, min_duration=2.0))
    assert det.observe(0.0, math.nan) is None
    assert det.state == "normal"
    assert det.observe(1.0, 31.0) is None
    # NaN neither resets the pending timer nor counts as back in range.
    assert det.observe(2.0, math.nan) is None
    assert det.state == "pending"
    fired = det.observe(3.0, 31.0)
    assert fired is not None
    assert fired.fields["duration"] == 2.0
    assert det.observe(4.0, math.nan) is None
    assert det.state == "active"
    cleared = det.observe(5.0, 20.0)
    assert cleared is not None
    assert cleared.fields["state"] == "clear"


def test_state_transitions() -> None:
    det = ThresholdDetector(ThresholdParams(below=0.0, min_duration=1.0))
    states = []
    for t, v in [(0.0, 1.0), (1.0, -1.0), (2.0, -1.0), (3.0, -0.5), (4.0, 0.0)]:
        det.observe(t, v)
        states.append(det.state)
    assert states == ["normal", "pending", "active", "active", "normal"]


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({}, ["above", "below"]),
        ({"above": 10.0, "below": 10.0}, ["above", "below"]),
        ({"above": 10.0, "below": 20.0}, ["above", "below"]),
        ({"above": 20.0, "below": 10.0, "hysteresis": 5.0}, ["hysteresis", "above", "below"]),
        ({"above": 20.0, "hysteresis": -0.1}, ["hysteresis"]),
        ({"above": 20.0, "min_duration": -1.0}, ["min_duration"]),
        ({"above": math.nan}, ["above"]),
        ({"below": -math.inf}, ["below"]),
        ({"above": 20.0, "hysteresis": math.inf}, ["hysteresis"]),
    ],
)
def test_params_validation_names_the_fields(kwargs: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        ThresholdParams(**kwargs)
    assert isinstance(info.value, ModelError)
    for name in names:
        assert name in str(info.value)


def test_params_accept_the_tightest_valid_hysteresis() -> None:
    params = ThresholdParams(above=20.0, below=10.0, hysteresis=4.9, min_duration=0.0)
    assert params.hysteresis == 4.9
    assert ThresholdParams(above=-5).above == -5


def test_params_are_frozen() -> None:
    params = ThresholdParams(above=1.0)
    with pytest.raises(AttributeError):
        params.above = 2.0  # type: ignore[misc]
