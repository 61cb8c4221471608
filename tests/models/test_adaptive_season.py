"""The adaptive detector's daily profile: jumps the daily cycle explains stop scoring."""

from __future__ import annotations

import json
import random

import pytest

from models import AdaptiveDetector, AdaptiveParams
from models.adaptive_season import BINS, CYCLES, DAY, DailyProfile

STEP = 300.0  # seconds between readings: NAB's 5-minute cadence


def square_day(days: float, seed: int = 1, high: float = 80.0, low: float = 20.0) -> list[float]:
    """High from 09:00 to 18:00, low otherwise, with a little noise; one reading per STEP."""
    rng = random.Random(seed)
    values = []
    for i in range(int(days * DAY / STEP)):
        hour = (i * STEP % DAY) / 3600
        values.append((high if 9 <= hour < 18 else low) + rng.gauss(0.0, 1.0))
    return values


def noise(count: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [20.0 + rng.gauss(0.0, 1.0) for _ in range(count)]


def observe_all(detector: AdaptiveDetector, values: list[float], start: int = 0) -> list[float]:
    scores = []
    for i, value in enumerate(values, start):
        detector.observe(i * STEP, value)
        scores.append(detector.anomaly_score)
    return scores


def test_the_profile_learns_each_phase_and_is_trusted_on_a_daily_cycle() -> None:
    profile = DailyProfile()
    values = square_day(4)
    for i, value in enumerate(values):
        t = i * STEP
        if t < CYCLES * DAY:
            assert profile.expected(t) is None
        profile.learn(t, value - 50.0)  # deviations from a median of 50
    t = len(values) * STEP
    noon, midnight = t + 12 * 3600, t + 24 * 3600
    assert profile.expected(noon) == pytest.approx(30.0, abs=1.5)
    assert profile.expected(midnight) == pytest.approx(-30.0, abs=1.5)
    assert profile.strength > 0.9 and profile.trusted(t)


def test_the_profile_is_not_trusted_on_a_signal_without_a_daily_cycle() -> None:
    profile = DailyProfile()
    for i, value in enumerate(noise(3000)):
        profile.learn(i * STEP, value - 20.0)
    assert profile.strength < 0.3 and not profile.trusted(3000 * STEP)


def test_a_clock_that_goes_back_starts_the_profile_afresh() -> None:
    profile = DailyProfile()
    for i, value in enumerate(square_day(3)):
        profile.learn(i * STEP, value - 50.0)
    assert profile.expected(3 * DAY) is not None
    profile.learn(10.0, 30.0)  # a new clock after a restart
    assert profile.expected(20.0) is None and not profile.trusted(20.0)
    assert profile.snapshot()["origin"] == 10.0


def jump_alarms(values: list[float], clock: bool) -> list[int]:
    """The readings at which a jump raised an alarm (threshold 0.5: any new extreme)."""
    detector = AdaptiveDetector(AdaptiveParams(threshold=0.5))
    found = []
    for i, value in enumerate(values):
        alarm = detector.observe(i * STEP if clock else 0.0, value)
        if (
            alarm is not None
            and alarm.fields["state"] == "active"
            and alarm.fields["signal"] == "jump"
        ):
            found.append(i)
    return found


def test_the_daily_rise_and_drop_stop_scoring_while_an_out_of_phase_jump_still_does() -> None:
    values = square_day(8)
    learnt = int(3 * DAY / STEP)  # from the fourth day on
    # A clock that stands still (the same t for every reading) gives no daily profile.
    assert [i for i in jump_alarms(values, clock=False) if i >= learnt]
    assert [i for i in jump_alarms(values, clock=True) if i >= learnt] == []

    detector = AdaptiveDetector(AdaptiveParams(threshold=0.5))
    observe_all(detector, values)
    at_night = len(values) * STEP  # 00:00: the signal is low, and jumps to its daytime level
    alarm = detector.observe(at_night, 80.0)
    assert alarm is not None and alarm.fields["signal"] == "jump"
    assert alarm.fields["side"] == "above" and alarm.fields["score"] > 0.5


def test_without_a_daily_cycle_the_scores_are_those_of_no_profile() -> None:
    values = [*noise(3000, seed=4), 27.0, *noise(200, seed=5)]
    timed = observe_all(AdaptiveDetector(), values)
    untimed = AdaptiveDetector()
    assert timed == [untimed.update(v) for v in values]


def test_a_restored_detector_keeps_its_profile_and_continues_exactly() -> None:
    values = [*square_day(5, seed=2), *square_day(1, seed=3, high=60.0)]
    whole = AdaptiveDetector()
    expected = observe_all(whole, values)

    cut = int(3.5 * DAY / STEP)
    first = AdaptiveDetector()
    observe_all(first, values[:cut])
    saved = json.loads(json.dumps(first.snapshot()))
    assert len(saved["season"]["profile"]) == BINS
    resumed = AdaptiveDetector()
    resumed.restore(saved)
    assert observe_all(resumed, values[cut:], start=cut) == expected[cut:]
    assert resumed.snapshot() == whole.snapshot()


@pytest.mark.parametrize(
    "change",
    [
        {"profile": [0.0] * 10},
        {"counts": [9] * BINS},
        {"error": float("nan")},
        {"origin": None},
        {"last": -5.0},
    ],
)
def test_a_damaged_profile_is_refused(change: dict[str, object]) -> None:
    detector = AdaptiveDetector()
    observe_all(detector, square_day(2.5))
    good = detector.snapshot()
    state = {**good, "season": {**good["season"], **change}}
    with pytest.raises(ValueError):
        detector.restore(state)
    assert detector.snapshot() == good
