"""The feedback rule (models.tuning): bounds, direction, the true-alarm ceiling, and the
detectors' own refusals of a threshold their params would refuse."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import AdaptiveDetector, AdaptiveParams, ThresholdDetector, ThresholdParams
from models.alarm import Side
from models.rules import RateDetector, RateParams, ZScoreDetector, ZScoreParams
from models.tuning import VERDICTS, Rule, TunableDetector, Verdict, next_threshold, orient

finite = st.floats(-1e6, 1e6, allow_nan=False)
sides = st.sampled_from(("above", "below"))
rules = st.builds(
    Rule,
    step=st.floats(0.01, 1.0),
    max_change=st.floats(0.0, 10.0),
    margin=st.floats(0.0, 0.5),
)


@given(
    rules, sides, finite, finite, st.sampled_from(VERDICTS), st.none() | finite, st.none() | finite
)
def test_a_threshold_never_leaves_its_bounds(
    rule: Rule,
    side: Side,
    configured: float,
    current: float,
    verdict: Verdict,
    measure: float | None,
    ceiling: float | None,
) -> None:
    low, high = rule.bounds(side, configured)
    current = min(max(current, low), high)  # thresholds start, and stay, inside
    new = next_threshold(rule, side, configured=configured, current=current, verdict=verdict,
                         measure=measure, ceiling=ceiling)  # fmt: skip
    slack = 1e-9 * max(1.0, abs(configured))
    assert low - slack <= new <= high + slack
    if verdict == "false_alarm" and ceiling is None:  # never more alarms after a false one
        assert orient(side, new) >= orient(side, current) - slack
    if verdict == "missed":  # never fewer alarms after a miss
        assert orient(side, new) <= orient(side, current) + slack


@given(rules, sides, finite, st.sampled_from(VERDICTS), finite, finite)
def test_a_labelled_true_alarm_stays_caught(
    rule: Rule, side: Side, configured: float, verdict: Verdict, measure: float, ceiling: float
) -> None:
    """A measure like the lowest true alarm's still passes the threshold (x > threshold
    fires), unless the bounds themselves keep the threshold above it."""
    low, high = rule.bounds(side, configured)
    new = next_threshold(rule, side, configured=configured, current=configured, verdict=verdict,
                         measure=measure, ceiling=ceiling)  # fmt: skip
    if orient(side, ceiling) - rule.margin * abs(configured) > orient(side, min(low, high)):
        if side == "above":
            assert new < ceiling or math.isclose(new, ceiling)
        else:
            assert new > ceiling or math.isclose(new, ceiling)


def test_false_alarms_move_it_toward_their_scores_by_step() -> None:
    rule = Rule(step=0.5, max_change=0.5, margin=0.0)
    up = next_threshold(rule, "above", configured=3.0, current=3.0, verdict="false_alarm",
                        measure=4.0, ceiling=None)  # fmt: skip
    assert up == 3.5
    capped = next_threshold(rule, "above", configured=3.0, current=4.0, verdict="false_alarm",
                            measure=9.0, ceiling=None)  # fmt: skip
    assert capped == 4.5  # configured + 0.5 x 3
    below = next_threshold(rule, "below", configured=10.0, current=10.0,
                           verdict="false_alarm", measure=6.0, ceiling=None)  # fmt: skip
    assert below == 8.0  # a low limit moves down, away from alarms
    missed = next_threshold(rule, "above", configured=3.0, current=3.0, verdict="missed",
                            measure=None, ceiling=None)  # fmt: skip
    assert missed == 2.25  # halfway to 1.5
    under = next_threshold(rule, "above", configured=3.0, current=3.0, verdict="false_alarm",
                           measure=4.0, ceiling=3.2)  # fmt: skip
    assert under == 3.2  # no higher than the lowest true alarm (margin 0 here)


def tunables() -> list[TunableDetector]:
    return [
        ThresholdDetector(ThresholdParams(above=30.0, below=10.0, hysteresis=1.0)),
        RateDetector(RateParams(rise=2.0, fall=1.0)),
        ZScoreDetector(ZScoreParams(threshold=3.0, hysteresis=0.5)),
        AdaptiveDetector(AdaptiveParams(threshold=0.9, hysteresis=0.1)),
    ]


@pytest.mark.parametrize("detector", tunables(), ids=lambda d: type(d).__name__)
def test_each_tunable_detector_refuses_what_its_params_would(detector: TunableDetector) -> None:
    assert isinstance(detector, TunableDetector)
    before = {side: detector.threshold(side) for side in ("above", "below")}
    bad = {
        ThresholdDetector: [("above", 11.5), ("below", 29.0), ("above", math.nan)],
        RateDetector: [("above", -1.0), ("below", 0.5)],
        ZScoreDetector: [("above", 0.4), ("below", 2.0)],
        AdaptiveDetector: [("above", 1.0), ("above", 0.05), ("below", 0.5)],
    }[type(detector)]  # type: ignore[index]
    for side, value in bad:
        with pytest.raises(ValueError):
            detector.set_threshold(side, value)  # type: ignore[arg-type]
    assert {side: detector.threshold(side) for side in ("above", "below")} == before


def test_a_moved_zscore_threshold_is_what_fires_and_what_events_say() -> None:
    detector = ZScoreDetector(ZScoreParams(window=10, threshold=3.0))
    series = [0.0, 1.0] * 10
    for i, x in enumerate(series):
        assert detector.observe(float(i), x) is None
    detector.set_threshold("above", 5.0)
    assert detector.observe(20.0, 2.9) is None  # z = 4.8: would have fired at 3
    found = detector.observe(21.0, 10.0)  # z ~ 11
    assert found is not None and found.fields["threshold"] == 5.0
    assert detector.alarm_point(found.fields, found.value) == ("above", found.fields["score"])
