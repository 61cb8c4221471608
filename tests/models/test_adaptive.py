"""The adaptive detector: scores, alarms, its rest after an anomaly, bounded state, restore."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import DETECTOR_TYPES, AdaptiveDetector, AdaptiveParams, ParamsError, PersistentDetector
from models.adaptive_rarity import STACK_LIMIT, TAIL_SIZE


def noise(count: int, seed: int = 1, level: float = 20.0, spread: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0.0, spread) for _ in range(count)]


def feed(detector: AdaptiveDetector, values: list[float], start: float = 0.0) -> list[float]:
    return [detector.update(v) for v in values]


def test_it_is_registered_and_persistent() -> None:
    kind = DETECTOR_TYPES["adaptive"]
    detector = kind.build(kind.params())
    assert isinstance(detector, AdaptiveDetector)
    assert isinstance(detector, PersistentDetector)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 0.0}, "threshold must be between 0 and 1"),
        ({"threshold": 1.0}, "threshold must be between 0 and 1"),
        ({"threshold": 0.6, "hysteresis": 0.6}, "hysteresis (0.6) must be less than"),
        ({"baseline": 10}, "baseline must be at least 100"),
        ({"learn": -1}, "learn must be at least 0"),
    ],
)
def test_bad_params_are_refused_with_the_reason(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ParamsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AdaptiveParams(**settings)  # type: ignore[arg-type]


def test_it_scores_nothing_while_it_learns_then_a_spike_is_a_new_extreme() -> None:
    detector = AdaptiveDetector(AdaptiveParams(learn=200))
    scores = feed(detector, noise(1500))
    assert scores[:199] == [0.0] * 199
    assert all(0.0 <= s < 1.0 for s in scores)
    spike = detector.update(35.0)
    assert spike > 0.55 > max(scores[1000:])


def test_an_anomaly_fires_one_alarm_that_says_what_was_unusual() -> None:
    detector = AdaptiveDetector()
    for i, value in enumerate(noise(1500)):
        detector.observe(float(i), value)  # learning (the odd early extreme may alarm)
    values = [36.0, 37.0, 36.5, 36.0, *noise(200, seed=2)]
    found = [d for i, v in enumerate(values) if (d := detector.observe(1500.0 + i, v))]
    assert [d.fields["state"] for d in found] == ["active", "clear"]
    alarm, clear = found
    assert alarm.kind == "anomaly" and alarm.severity == "warning" and alarm.value == 36.0
    assert alarm.fields["score"] > 0.55 and alarm.fields["threshold"] == 0.55
    assert alarm.fields["signal"] == "level" and alarm.fields["side"] == "above"
    assert alarm.fields["rarity"] > 1.0
    assert alarm.fields["baseline"] == pytest.approx(20.0, abs=0.3)
    assert clear.severity == "info" and clear.value == 37.0  # the rest: its score is 0


def test_after_an_anomaly_it_rests_unless_a_stronger_one_comes() -> None:
    detector = AdaptiveDetector(AdaptiveParams(rest=50))
    feed(detector, noise(1500))
    first = detector.update(25.0)
    assert 0.5 < first < 0.75
    calm = feed(detector, noise(10, seed=3))
    assert calm == [0.0] * 10  # the rest: nothing weaker scores
    stronger = detector.update(60.0)
    assert stronger > first * 1.1


def test_a_flat_signal_raises_nothing_until_it_moves() -> None:
    detector = AdaptiveDetector()
    assert max(feed(detector, [45.0] * 3000)) == 0.0
    assert detector.update(45.5) > 0.85


def test_non_finite_readings_are_ignored() -> None:
    detector = AdaptiveDetector()
    feed(detector, noise(300))
    before = detector.snapshot()
    assert detector.update(math.nan) == 0.0
    assert detector.observe(1.0, math.inf) is None
    assert detector.snapshot() == before
    assert detector.readings == 300


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=400))
def test_every_score_is_in_0_1_for_any_finite_series(values: list[float]) -> None:
    detector = AdaptiveDetector(AdaptiveParams(learn=0, baseline=100))
    for value in values:
        assert 0.0 <= detector.update(value) < 1.0


def test_memory_is_bounded_whatever_the_run_length() -> None:
    """A falling ramp is the worst case for the return-period stacks; 60,000 readings, five
    minutes apart (208 days: the daily profile and the deseasonalised jumps fill up too)."""
    detector = AdaptiveDetector()
    rng = random.Random(5)
    size = []
    for i in range(60_000):
        detector.observe(300.0 * i, 1e6 - i * 3.0 + rng.random())
        if i % 20_000 == 19_999:
            size.append(len(json.dumps(detector.snapshot())))
    state = detector.snapshot()
    assert len(state["baseline"]) == 1000 and len(state["steps"]) == 300
    assert len(state["residual"]["steps"]) == 300 and len(state["residual"]["recent"]) == 32
    assert len(state["season"]["profile"]) == 288
    for rarity in [*state["rarity"].values(), *state["residual"]["rarity"].values()]:
        assert len(rarity["stack"]) <= STACK_LIMIT and len(rarity["tail"]) <= TAIL_SIZE
    assert max(size) < 80_000 and max(size) - min(size) < 2_000


def test_a_restored_detector_continues_exactly_as_if_never_stopped() -> None:
    values = [*noise(2500, seed=7), 31.0, *noise(500, seed=8), 5.0, *noise(300, seed=9)]
    whole = AdaptiveDetector()
    expected = feed(whole, values)

    first = AdaptiveDetector()
    feed(first, values[:1800])
    saved = json.loads(json.dumps(first.snapshot()))  # as the state file holds it
    resumed = AdaptiveDetector()
    resumed.restore(saved)
    assert resumed.readings == 1800
    assert feed(resumed, values[1800:]) == expected[1800:]
    assert resumed.snapshot() == whole.snapshot()


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"type": "zscore", "version": 1},
        {"type": "adaptive", "version": 99},
        {"type": "adaptive", "version": 1},  # the nine-measure detector
        {"type": "adaptive", "version": 2, "readings": 5},  # before the daily profile
        {"type": "adaptive", "version": 3, "readings": 5},
        "broken-baseline",
        "nan-in-stack",
    ],
)
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(state: object) -> None:
    detector = AdaptiveDetector()
    feed(detector, noise(400))
    good = detector.snapshot()
    if state == "broken-baseline":
        state = {**good, "baseline": "not a list of numbers"}
    elif state == "nan-in-stack":
        rarity = {**good["rarity"], "level_above": {"n": 3, "stack": [[1, "nan"]], "tail": []}}
        state = {**good, "rarity": rarity}
    with pytest.raises(ValueError):
        detector.restore(state)  # type: ignore[arg-type]
    assert detector.snapshot() == good


def test_a_restore_keeps_the_detectors_own_params() -> None:
    source = AdaptiveDetector()
    feed(source, noise(1200))
    small = AdaptiveDetector(AdaptiveParams(baseline=200, rest=5))
    small.restore(source.snapshot())
    state = small.snapshot()
    assert len(state["baseline"]) == 200  # the newest 200 of the 1000 saved
    assert state["baseline"] == source.snapshot()["baseline"][-200:]
    assert small.params.rest == 5


def test_a_missing_peak_is_a_lull_although_every_value_is_in_range() -> None:
    """A daily-like cycle (40 high readings in 100) whose high phase does not come."""
    rng = random.Random(3)

    def cycle(start: int, count: int, peak: float = 10.0) -> list[float]:
        return [
            (peak if i % 100 < 40 else 0.0) + rng.gauss(0.0, 1.0)
            for i in range(start, start + count)
        ]

    values = [*cycle(0, 3000), *cycle(3000, 300, peak=0.0)]
    detector = AdaptiveDetector(AdaptiveParams(threshold=0.51))
    signals = []
    for i, value in enumerate(values):
        detection = detector.observe(float(i), value)
        if i >= 3000 and detection is not None and detection.fields["state"] == "active":
            signals.append(detection.fields["signal"])
    assert signals[:1] == ["lull"]
