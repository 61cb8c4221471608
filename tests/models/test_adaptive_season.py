"""The adaptive detector's daily profile: jumps the daily cycle explains stop scoring."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models import AdaptiveDetector, AdaptiveParams
from models.adaptive_season import BINS, CYCLES, DAY, LATE, DailyProfile

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


def learn_square(profile: DailyProfile, days: float, start: float, shift: float = 0.0) -> float:
    """Learn ``days`` of deviations of a square day (+30 from 09:00 to 18:00, -30 otherwise)
    read every STEP from ``start`` on a clock that reads ``shift`` at 00:00; return the time
    of the next reading."""
    rng = random.Random(1)
    t = start
    for _ in range(int(days * DAY / STEP)):
        hour = ((t - shift) % DAY) / 3600
        profile.learn(t, (30.0 if 9 <= hour < 18 else -30.0) + rng.gauss(0.0, 1.0))
        t += STEP
    return t


def test_a_late_reading_is_learnt_at_its_phase_and_the_latest_stays() -> None:
    profile = DailyProfile()
    learn_square(profile, 3, 0.0)
    before = profile.snapshot()
    late = before["last"] - 55 * 60  # 55 minutes behind the latest (23:55): 23:00
    assert profile.expected(late) == pytest.approx(-30.0, abs=3)
    profile.learn(late, -30.0)
    after = profile.snapshot()
    assert after["last"] == before["last"] and after["origin"] == before["origin"]
    assert profile.steps_back == after["back"] == 1
    at = int(late % DAY / STEP)
    assert (before["counts"][at], after["counts"][at]) == (3, 4)  # learnt at its phase
    assert profile.trusted(before["last"])  # nothing was forgotten


def test_a_new_clock_keeps_what_was_learnt_and_proves_its_phase_again() -> None:
    profile = DailyProfile()
    learn_square(profile, 3, 0.0)
    before = profile.snapshot()
    profile.learn(10.0, -30.0)  # a monotonic clock after a reboot, the state restored
    after = profile.snapshot()
    assert profile.steps_back == 1
    assert all(a >= b for a, b in zip(after["counts"], before["counts"], strict=True))
    assert after["spread"] == pytest.approx(before["spread"], rel=0.01)
    # The days seen carry over, so the profile is used at once, but it is not trusted on
    # this clock before it explains the readings here.
    assert after["last"] - after["origin"] == before["last"] - before["origin"]
    assert profile.expected(20.0) is not None and not profile.trusted(20.0)
    # This clock's 00:00 is the old one's: the profile still fits, and is trusted again
    # within a day.
    end = learn_square(profile, 1, 10.0 + STEP)
    assert profile.trusted(end) and profile.steps_back == 1


def test_on_a_new_clock_with_another_phase_the_bins_are_learnt_again() -> None:
    profile = DailyProfile()
    learn_square(profile, 3, 0.0)
    assert profile.expected(3 * DAY + 10 * 3600) == pytest.approx(30.0, abs=3)
    # The new clock reads 0 at 21:00: the day's 09:00-18:00 is its 12:00-21:00. Each bin
    # takes a new day at weight 1/4, so in twelve days the old phase is all but gone.
    end = learn_square(profile, 12, 0.0, shift=-21 * 3600)
    assert profile.steps_back == 1
    day = end - end % DAY + DAY
    assert profile.expected(day + 10 * 3600) == pytest.approx(-30.0, abs=3)
    assert profile.expected(day + 20 * 3600) == pytest.approx(30.0, abs=3)
    assert profile.trusted(end)


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
        {"back": -1},
        {"back": 2.5},
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


# -- time that steps back or repeats ------------------------------------------------------------


@st.composite
def stepping_times(draw: st.DrawFn, count: int) -> tuple[list[float], int]:
    """Reading times every STEP with a few readings moved back: to the previous reading's
    time (a repeat), up to LATE before it (a late reading) or further (a new clock); and
    how many of them step back. Moved readings are at least two apart, so each follows one
    on time."""
    times = [i * STEP for i in range(count)]
    back = 0
    for half in draw(st.sets(st.integers(min_value=15, max_value=count // 2 - 1), max_size=5)):
        at = 2 * half
        how = draw(st.sampled_from(["repeat", "late", "clock"]))
        if how == "repeat":
            times[at] = times[at - 1]
            continue
        low, high = (0.001, LATE) if how == "late" else (LATE, 5 * DAY)
        by = draw(st.floats(min_value=low, max_value=high, exclude_min=how == "clock"))
        times[at] = times[at - 1] - by
        back += 1
    return times, back


VALUES = square_day(2.5)  # past CYCLES days: the profile is used, and may be trusted


@settings(max_examples=40)
@given(stepping_times(len(VALUES)))
def test_time_that_steps_back_or_repeats_never_resets_the_profile(
    timed: tuple[list[float], int],
) -> None:
    times, back = timed
    detector = AdaptiveDetector()
    moved = {i for i in range(1, len(times)) if times[i] <= times[i - 1]}
    for i, (t, value) in enumerate(zip(times, VALUES, strict=True)):
        counts = detector.snapshot()["season"]["counts"] if i in moved else None
        detector.observe(t, value)
        score = detector.anomaly_score
        assert math.isfinite(score) and 0.0 <= score <= 1.0
        if counts is not None:  # every bin learnt before is still learnt
            after = detector.snapshot()["season"]["counts"]
            assert all(a >= b for a, b in zip(after, counts, strict=True))
    assert detector.time_steps_back == back


def test_the_count_of_steps_back_is_kept_and_an_old_snapshot_without_it_loads() -> None:
    detector = AdaptiveDetector()
    times = [i * STEP for i in range(len(VALUES))]
    times[300] = times[299] - 600.0  # late
    times[500] = 30.0  # a new clock
    for t, value in zip(times, VALUES, strict=True):
        detector.observe(t, value)
    saved: dict[str, Any] = json.loads(json.dumps(detector.snapshot()))
    assert saved["season"]["back"] == 2
    resumed = AdaptiveDetector()
    resumed.restore(saved)
    assert resumed.time_steps_back == 2 and resumed.snapshot() == detector.snapshot()

    del saved["season"]["back"]  # as an earlier release saved it
    old = AdaptiveDetector()
    old.restore(saved)
    assert old.time_steps_back == 0
    # A reboot: the state restored, the monotonic clock from near 0. The profile is kept.
    learnt = saved["season"]["counts"]
    old.observe(12.0, VALUES[0])
    assert old.time_steps_back == 1
    after = old.snapshot()["season"]["counts"]
    assert all(a >= b for a, b in zip(after, learnt, strict=True)) and sum(after) > BINS
