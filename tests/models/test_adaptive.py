"""The adaptive detector (ARTime made to stream): what it reports, the ladder of time scales,
bounded state, and a snapshot that resumes exactly or is refused whole."""

from __future__ import annotations

import copy
import functools
import json
import math
import random
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.config.device import parse
from edge.errors import ConfigError
from models import DETECTOR_TYPES, AdaptiveDetector, AdaptiveParams, ParamsError, PersistentDetector
from models.adaptive import THRESHOLD

LEARNT = 209  # readings before the first can score: 104 blocks of 2, then one more block


def periodic(count: int, seed: int = 1, period: int = 50, noise: float = 0.3) -> list[float]:
    """A sine around 20 with Gaussian noise: what the detector should find unremarkable."""
    rng = random.Random(seed)
    return [
        20.0 + 5.0 * math.sin(2 * math.pi * i / period) + rng.gauss(0.0, noise)
        for i in range(count)
    ]


def feed(detector: AdaptiveDetector, values: list[float]) -> list[float]:
    return [detector.update(v) for v in values]


def number(fields: Mapping[str, object], key: str) -> float:
    value = fields[key]
    assert isinstance(value, float), f"{key}: {value!r}"
    return value


def test_it_is_registered_and_persistent() -> None:
    kind = DETECTOR_TYPES["adaptive"]
    detector = kind.build(kind.params())
    assert isinstance(detector, AdaptiveDetector)
    assert isinstance(detector, PersistentDetector)
    assert detector.params.threshold == THRESHOLD == 0.46


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 0.0}, "threshold must be between 0 and 1, got 0.0"),
        ({"threshold": 1.0}, "threshold must be between 0 and 1, got 1.0"),
        ({"threshold": 1.5}, "threshold must be at most 1.0"),
        ({"threshold": math.nan}, "threshold must be a finite number"),
        ({"hysteresis": -0.1}, "hysteresis must be at least 0.0"),
        ({"threshold": 0.6, "hysteresis": 0.6}, "hysteresis (0.6) must be less than threshold"),
    ],
)
def test_bad_params_are_refused_with_the_reason(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ParamsError) as info:
        AdaptiveParams(**settings)  # type: ignore[arg-type]
    assert message in str(info.value)


CONFIG = """\
[device]
id = "d1"
[uplink]
broker = "mqtt://localhost"
[[sensors]]
id = "t"
type = "i2c.tmp102"
interval = 1
[[detectors]]
sensor = "t"
type = "adaptive"
threshold = 0.5
"""


def test_a_config_with_the_settings_of_the_old_detector_says_they_are_retired() -> None:
    text = CONFIG + "rest = 50\nlearn = 200\nbaseline = 1000\nhorizon = 3\nmin_duration = 5\n"
    text += "rests = 1\n"
    with pytest.raises(ConfigError) as info:
        parse(text, "edge.toml")
    known = "(known keys: hysteresis, id, inputs, quantity, sensor, severity, "
    retired = "no longer a setting: the adaptive detector learns and rests by its own rules now"
    assert info.value.problems == [
        *(
            f"edge.toml: detectors[0].{key}: {retired}; remove it"
            for key in ("rest", "learn", "baseline", "horizon")
        ),
        "edge.toml: detectors[0].min_duration: no longer a setting: an adaptive report lasts "
        "one reading, so nothing could last; remove it",
        f"edge.toml: detectors[0].rests: unknown key {known}threshold, type)",
    ]
    detector = parse(CONFIG, "edge.toml").detectors[0]
    assert detector.params == AdaptiveParams(threshold=0.5)


# -- what it reports -------------------------------------------------------------------------


@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=500),
)
@example([1.7e308, -1.7e308, 0.0] * 120)  # a range wider than the largest float
@example([45.0] * 300 + [45.5])  # flat, then a move
@settings(max_examples=60)
def test_every_score_is_in_0_1_and_none_comes_before_the_first_time_scale_has_learnt(
    values: list[float],
) -> None:
    scores = feed(AdaptiveDetector(), values)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert not any(scores[:LEARNT])


@pytest.mark.parametrize(("jump", "side"), [(40.0, "above"), (-40.0, "below")])
def test_a_spike_far_outside_a_long_periodic_series_alarms_once_and_says_what_it_was(
    jump: float, side: str
) -> None:
    values = periodic(3000, seed=2)
    values[2500] += jump
    detector = AdaptiveDetector()
    found = [(i, d) for i, v in enumerate(values) if (d := detector.observe(float(i), v))]
    near = [(i, d) for i, d in found if 2500 <= i < 2600]
    assert [d.fields["state"] for _, d in near] == ["active", "clear"]
    (at, alarm), (cleared_at, clear) = near
    assert 2500 <= at < 2500 + detector.step  # scored when the spike's block ends
    assert cleared_at == at + 1  # a report is one reading
    assert alarm.kind == "anomaly" and alarm.severity == "warning" and alarm.value == values[at]
    fields = alarm.fields
    assert set(fields) == {
        "score", "threshold", "state", "duration", "signal", "side", "match", "baseline", "scale",
    }  # fmt: skip
    assert THRESHOLD <= number(fields, "score") <= 1.0 and fields["threshold"] == THRESHOLD
    assert fields["duration"] == 0.0 and fields["scale"] == detector.step == 3
    assert fields["signal"] == "level" and fields["side"] == side
    assert 0.0 <= number(fields, "match") < 0.5  # nothing known is like it
    assert fields["baseline"] == pytest.approx(20.0, abs=1.0)
    assert clear.severity == "info" and clear.fields["score"] == 0.0


def test_a_level_shift_alarms_within_its_first_block() -> None:
    values = periodic(3000, seed=3)
    values[2500:] = [v + 15.0 for v in values[2500:]]
    detector = AdaptiveDetector()
    found = [(i, d) for i, v in enumerate(values) if (d := detector.observe(float(i), v))]
    first = next((i, d) for i, d in found if i >= 2500)
    assert first[0] < 2500 + detector.step and first[1].fields["state"] == "active"
    assert first[1].fields["signal"] == "level" and first[1].fields["side"] == "above"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_calm_periodic_series_is_rarely_reported(seed: int) -> None:
    """5,000 readings of a sine and noise: the odd pattern is new (more so as the time
    scale changes), but reports stay rare and alarms rarer."""
    scores = feed(AdaptiveDetector(), periodic(5000, seed=seed))
    assert sum(s > 0 for s in scores) <= 6
    assert sum(s >= THRESHOLD for s in scores) <= 2


def test_non_finite_readings_are_ignored() -> None:
    detector = AdaptiveDetector()
    feed(detector, periodic(300))
    before = detector.snapshot()
    assert [detector.update(v) for v in (math.nan, math.inf, -math.inf)] == [0.0] * 3
    assert detector.observe(1.0, math.nan) is None
    assert detector.snapshot() == before and detector.readings == 300


@functools.cache
def scored(values: tuple[float, ...]) -> list[float]:
    return feed(AdaptiveDetector(), list(values))


SPIKED = periodic(600, seed=4)
SPIKED[450] = 45.0


@given(st.lists(st.tuples(st.integers(0, 600), st.sampled_from([math.nan, math.inf, -math.inf]))))
@settings(max_examples=30)
def test_non_finite_readings_do_not_count(inserted: list[tuple[int, float]]) -> None:
    values: list[float] = list(SPIKED)
    for at, bad in sorted(inserted, reverse=True):
        values.insert(at, bad)
    detector = AdaptiveDetector()
    scores = feed(detector, values)
    assert [s for s, v in zip(scores, values, strict=True) if math.isfinite(v)] == scored(
        tuple(SPIKED)
    )
    assert not any(s for s, v in zip(scores, values, strict=True) if not math.isfinite(v))
    assert detector.readings == len(SPIKED) and max(scores) > 0  # the spike is there


# -- the ladder of time scales ---------------------------------------------------------------


def scales(detector: AdaptiveDetector) -> dict[int, int]:
    """Each running time scale's step and the blocks it has seen."""
    return {s["step"]: s["patterns"] for s in detector.snapshot()["scales"]}


def test_the_block_grows_with_the_readings_and_each_scale_has_learnt_when_it_reports() -> None:
    detector = AdaptiveDetector()
    assert (detector.step, scales(detector)) == (2, {2: 0, 3: 0})
    changes = []
    running = []
    for n, value in enumerate(periodic(5000, seed=5), start=1):
        step = detector.step
        detector.update(value)
        if detector.step != step:
            changes.append((n, detector.step))
            running.append(scales(detector))
        elif n % 250 == 0:
            assert len(scales(detector)) <= 2
    assert changes == [(2080, 3), (3467, 5), (4854, 7)]
    # the one taking over has learnt (104 blocks); the next coarser one starts learning
    assert running[0].keys() == {3, 5} and running[0][3] > 104 and running[0][5] == 0
    assert running[1].keys() == {5, 7} and running[1][5] > 104 and running[1][7] == 0
    assert running[2].keys() == {7} and running[2][7] > 104
    assert detector.step == 7 and scales(detector).keys() == {7}


def test_memory_is_bounded_whatever_the_run_length() -> None:
    """A random walk keeps making new patterns: the category table fills and stays full."""
    detector = AdaptiveDetector()
    rng = random.Random(5)
    level, sizes = 0.0, []
    for n in range(1, 20_001):
        level += rng.gauss(0.0, 1.0)
        detector.update(level)
        if n in (15_000, 20_000):
            state = detector.snapshot()
            (scale,) = state["scales"]
            assert len(scale["categories"]["weights"]) == 128 and len(scale["median"]) == 1024
            sizes.append(numbers(state) - len(scale["block"]))  # a block fills and empties
    # 128 categories of 32 weights and a use each, 1,024 levels, a window, 53 + 105 matches
    assert sizes[0] == sizes[1] < 128 * 33 + 1024 + 8 + 53 + 105 + 30


def numbers(state: object) -> int:
    """How many values a JSON document holds."""
    if isinstance(state, dict):
        return sum(numbers(v) for v in state.values())
    if isinstance(state, list):
        return sum(numbers(v) for v in state)
    return 1


# -- snapshot and restore ---------------------------------------------------------------------

SPIKES = {1200: 20.0, 2700: -15.0, 4000: 12.0, 5000: 25.0}
RUN = periodic(5400, seed=6)
for at, jump in SPIKES.items():
    RUN[at] += jump


@functools.cache
def uninterrupted() -> tuple[list[float], dict[str, Any]]:
    detector = AdaptiveDetector()
    return feed(detector, RUN), detector.snapshot()


@given(st.integers(min_value=0, max_value=len(RUN)))
@example(LEARNT - 1)  # the first time scale mid-fit
@example(2079)  # just before the ladder moves (and before each spike it must report)
@example(3467)
@example(4854)
@settings(max_examples=8)
def test_a_restored_detector_continues_exactly_as_if_never_stopped(cut: int) -> None:
    expected, final = uninterrupted()
    first = AdaptiveDetector()
    feed(first, RUN[:cut])
    saved = json.loads(json.dumps(first.snapshot(), allow_nan=False))  # as the state file
    resumed = AdaptiveDetector(AdaptiveParams(threshold=0.7))
    resumed.restore(saved)
    assert resumed.readings == cut and resumed.step == first.step
    assert feed(resumed, RUN[cut:]) == expected[cut:]
    assert resumed.snapshot() == final
    assert resumed.params.threshold == 0.7  # the detector's own params, not the saved run's


def test_the_run_it_resumes_has_reports_to_get_right() -> None:
    expected, _ = uninterrupted()
    reported = [i for i, s in enumerate(expected) if s >= THRESHOLD]
    assert all(any(at <= i < at + 7 for i in reported) for at in SPIKES)


@functools.cache
def midway() -> dict[str, Any]:
    """A snapshot with one time scale reporting and one still in its learning period."""
    detector = AdaptiveDetector()
    feed(detector, periodic(2300, seed=7))
    state = detector.snapshot()
    assert [len(s["learning"]) > 0 for s in state["scales"]] == [False, True]
    return state


AFTER = periodic(500, seed=8)
AFTER[250] = 60.0


def resumed(state: dict[str, Any]) -> AdaptiveDetector:
    detector = AdaptiveDetector()
    detector.restore(state)
    return detector


def refused_and_unchanged(state: object) -> None:
    detector, twin = resumed(midway()), resumed(midway())
    with pytest.raises(ValueError):
        detector.restore(state)  # type: ignore[arg-type]
    assert detector.snapshot() == twin.snapshot()
    assert feed(detector, AFTER) == feed(twin, AFTER)


def changed(path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    state = copy.deepcopy(midway())
    node: Any = state
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return state


@pytest.mark.parametrize(
    "state",
    [
        pytest.param({}, id="empty"),
        pytest.param({"type": "zscore", "version": 4}, id="another-type"),
        pytest.param({"type": "adaptive", "version": 3, "readings": 5}, id="the-rarity-one"),
        pytest.param({"type": "adaptive", "version": 99}, id="a-later-version"),
        pytest.param({"type": "adaptive", "version": 4}, id="nothing-saved"),
        pytest.param("readings", id="wrong-readings"),
        pytest.param("step", id="a-step-not-on-the-ladder"),
        pytest.param("scales", id="three-time-scales"),
        pytest.param("score", id="a-score-above-1"),
        pytest.param("median", id="nan-in-the-median"),
        pytest.param("weights", id="short-categories"),
        pytest.param("window", id="a-window-of-7"),
        pytest.param("learning", id="a-learning-period-longer-than-its-count"),
        pytest.param("masked", id="masked-not-a-boolean"),
        pytest.param("ladder", id="readings-the-ladder-has-moved-past"),
        pytest.param("vigilance", id="a-vigilance-of-null"),
        pytest.param("box", id="a-box-outside-the-unit-cube"),
        pytest.param("range", id="half-a-range"),
        pytest.param("inverted", id="a-range-upside-down"),
    ],
)
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(state: object) -> None:
    good = midway()
    learning = good["scales"][1]["learning"]
    bad = {
        "readings": changed(("readings",), -1),
        "step": changed(("scales", 0, "step"), 4),
        "scales": changed(("scales",), [*good["scales"], good["scales"][0]]),
        "score": changed(("score",), 1.5),
        "median": changed(("scales", 0, "median", 3), math.nan),
        "weights": changed(("scales", 0, "categories", "weights", 0), [0.5] * 31),
        "window": changed(("scales", 0, "window"), [20.0] * 7),
        "learning": changed(("scales", 1, "learning"), [*learning, *learning]),
        "masked": changed(("scales", 0, "masked"), 1),
        "ladder": changed(("readings",), 10_000),
        "vigilance": changed(("scales", 0, "rho_ub"), None),  # null is only an unset range's
        "box": changed(("scales", 0, "categories", "weights", 0, 0), 1e308),
        "range": changed(("scales", 0, "low"), None),
        "inverted": changed(("scales", 0, "low"), good["scales"][0]["high"] + 1.0),
    }
    refused_and_unchanged(bad.get(state, state) if isinstance(state, str) else state)


JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=3)
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=40) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=60,
)


@st.composite
def tampered(draw: st.DrawFn) -> dict[str, Any]:
    """A real snapshot with one value, anywhere in it, replaced or removed."""
    state = copy.deepcopy(midway())
    node: Any = state
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        child = node[key]
        if isinstance(child, dict | list) and child and draw(st.booleans()):
            node = child
            continue
        if draw(st.booleans()):
            del node[key]
        else:
            node[key] = draw(JSON_VALUE)
        return state


@given(tampered())
@settings(max_examples=60)
def test_a_tampered_snapshot_is_refused_unchanged_or_restores_a_working_detector(
    state: dict[str, Any],
) -> None:
    detector, twin = resumed(midway()), resumed(midway())
    try:
        detector.restore(state)
    except ValueError:
        assert detector.snapshot() == twin.snapshot()
        assert feed(detector, AFTER) == feed(twin, AFTER)
    else:  # a change that still fits (another count, another weight): it keeps working
        scores = feed(detector, AFTER)
        assert all(0.0 <= s <= 1.0 for s in scores)
        json.dumps(detector.snapshot(), allow_nan=False)


# -- feedback: the threshold is the one knob -------------------------------------------------


def test_the_threshold_moves_within_its_bounds_and_is_what_alarms_say() -> None:
    detector = AdaptiveDetector(AdaptiveParams(hysteresis=0.1))
    assert detector.threshold("above") == THRESHOLD and detector.threshold("below") is None
    for side, value in [("below", 0.5), ("above", 1.0), ("above", 0.1), ("above", math.nan)]:
        with pytest.raises(ValueError):
            detector.set_threshold(side, value)  # type: ignore[arg-type]
    assert detector.threshold("above") == THRESHOLD
    detector.set_threshold("above", 0.9)
    assert detector.threshold("above") == 0.9
    values = periodic(3000, seed=2)
    values[2500] = 60.0
    alarms = [d for i, v in enumerate(values) if (d := detector.observe(float(i), v))]
    active = [d for d in alarms if d.fields["state"] == "active"]
    assert active and all(d.fields["threshold"] == 0.9 <= number(d.fields, "score") for d in active)
    assert detector.alarm_point(active[0].fields, 60.0) == ("above", active[0].fields["score"])
    assert detector.alarm_point({}, 60.0) is None
