"""Scoring detections against ground-truth labels."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.sim.labels import Label, score
from edge.sim.recording import RecordedEvent

HOUR = 3600.0
OVERHEAT = Label("anomaly", "overheat", "temperature", 100.0, 200.0)
STUCK = Label("fault", "stuck sensor", "climate.humidity", 1000.0, 1100.0)
OUTAGE = Label("network", "broker down", None, 300.0, 400.0)


def alarm(t: float, sensor: str = "temperature", **fields: Any) -> RecordedEvent:
    return RecordedEvent(t, sensor, "threshold", "warning", 31.0, {"state": "active", **fields})


def health(t: float, state: str, sensor: str = "climate", **fields: Any) -> RecordedEvent:
    return RecordedEvent(t, sensor, "health", "warning", None, {"state": state, **fields})


def test_a_perfect_detector() -> None:
    events = [alarm(130.0), health(1010.0, "stuck", quantity="humidity")]
    result = score([OVERHEAT, STUCK, OUTAGE], events, grace=10.0, duration=HOUR)
    assert (result.labels, result.detections) == (2, 2)  # the network label is not scored
    assert (result.true_positives, result.false_negatives, result.false_positives) == (2, 0, 0)
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    assert result.false_alarms_per_hour == 0.0
    assert result.mean_delay == pytest.approx(20.0)  # (30 + 10) / 2
    assert result.max_delay == pytest.approx(30.0)
    assert result.caught == (OVERHEAT, STUCK)


def test_a_missed_label() -> None:
    result = score([OVERHEAT, STUCK], [alarm(150.0)], grace=0.0, duration=HOUR)
    assert (result.true_positives, result.false_negatives, result.false_positives) == (1, 1, 0)
    assert (result.precision, result.recall) == (1.0, 0.5)
    assert result.f1 == pytest.approx(2 / 3)
    assert result.missed == (STUCK,)


def test_a_false_alarm_far_away() -> None:
    result = score([OVERHEAT], [alarm(150.0), alarm(2000.0)], grace=30.0, duration=2 * HOUR)
    assert (result.true_positives, result.false_positives) == (1, 1)
    assert result.precision == 0.5
    assert result.false_alarms_per_hour == 0.5


@pytest.mark.parametrize(
    ("t", "caught"),
    [
        (99.999, False),  # before the window opens
        (100.0, True),  # the start is in
        (200.0, True),
        (215.0, True),  # end + grace is in
        (215.001, False),  # just past the grace
    ],
)
def test_grace_edges(t: float, caught: bool) -> None:
    result = score([OVERHEAT], [alarm(t)], grace=15.0, duration=HOUR)
    assert result.true_positives == int(caught)
    assert result.false_positives == int(not caught)
    assert result.mean_delay == (pytest.approx(t - 100.0) if caught else None)


def test_without_grace_only_the_window_counts() -> None:
    result = score([OVERHEAT], [alarm(200.5)], grace=0.0, duration=HOUR)
    assert (result.true_positives, result.false_positives) == (0, 1)


def test_what_counts_as_a_detection() -> None:
    clear = RecordedEvent(150.0, "temperature", "threshold", "info", 29.0, {"state": "clear"})
    telemetry = RecordedEvent(150.0, "temperature", "telemetry", "info", 31.0, {"unit": "degC"})
    door = RecordedEvent(150.0, "temperature", "state", "info", True, {})
    recovered = health(1050.0, "recovered")
    anomaly = RecordedEvent(160.0, "temperature", "anomaly", "critical", 0.9, {"state": "active"})
    labels = [OVERHEAT, STUCK]
    assert (
        score(labels, [clear, telemetry, door, recovered], grace=0, duration=HOUR).detections == 0
    )
    assert score(labels, [anomaly], grace=0, duration=HOUR).true_positives == 1


def test_alarms_catch_anomalies_and_health_catches_faults() -> None:
    overheat_anywhere = Label("anomaly", "overheat", None, 100.0, 200.0)
    fault_anywhere = Label("fault", "bus down", None, 100.0, 200.0)
    result = score([overheat_anywhere], [health(150.0, "degraded")], grace=0, duration=HOUR)
    assert (result.true_positives, result.false_positives) == (0, 1)
    result = score([fault_anywhere], [alarm(150.0)], grace=0, duration=HOUR)
    assert (result.true_positives, result.false_positives) == (0, 1)
    for state in ("degraded", "stuck", "out_of_range"):
        result = score([fault_anywhere], [health(150.0, state)], grace=0, duration=HOUR)
        assert result.true_positives == 1


def test_sensors_and_quantities_must_match() -> None:
    humid = Label("anomaly", "damp", "climate.humidity", 100.0, 200.0)
    cases = [
        (alarm(150.0, sensor="other"), 0),
        (alarm(150.0, sensor="climate", quantity="temperature"), 0),
        (alarm(150.0, sensor="climate", quantity="humidity"), 1),
        (alarm(150.0, sensor="climate"), 1),  # no quantity: the whole sensor
    ]
    for event, caught in cases:
        assert score([humid], [event], grace=0, duration=HOUR).true_positives == caught, event
    # An alarm on a vector quantity concerns each of its axes, and only those.
    axis = Label("anomaly", "bearing", "motor.accel_x", 100.0, 200.0)
    for quantity, caught in [("accel", 1), ("gyro", 0), ("acc", 0), ("accel_x", 1)]:
        event = alarm(150.0, sensor="motor", quantity=quantity)
        assert score([axis], [event], grace=0, duration=HOUR).true_positives == caught, quantity
    # A failed read of the whole sensor is a fault on each of its quantities.
    assert score([STUCK], [health(1050.0, "degraded")], grace=0, duration=HOUR).true_positives == 1


def test_several_detections_in_one_window_are_one_catch_and_no_false_alarm() -> None:
    result = score([OVERHEAT], [alarm(180.0), alarm(120.0), alarm(190.0)], grace=0, duration=HOUR)
    assert (result.true_positives, result.false_positives) == (1, 0)
    assert result.mean_delay == pytest.approx(20.0)  # the first, not the first in the list


def test_nothing_to_score() -> None:
    result = score([OUTAGE], [], grace=5.0, duration=HOUR)
    assert (result.labels, result.precision, result.recall, result.f1) == (0, 1.0, 1.0, 1.0)
    assert result.summary() == "no scored labels, no detections"
    silent = score([OVERHEAT], [], grace=5.0, duration=HOUR)
    assert (silent.precision, silent.recall, silent.f1) == (1.0, 0.0, 0.0)
    assert "0/1 labels caught" in silent.summary()


def test_a_label_after_the_end_of_a_short_run_is_neither_caught_nor_missed() -> None:
    """A 120 s run of an hour-long scenario: its faults at 1000 s never happened."""
    result = score([OVERHEAT, STUCK], [alarm(130.0)], grace=10.0, duration=120.0)
    assert (result.labels, result.true_positives, result.false_negatives) == (1, 1, 0)
    assert result.missed == ()
    before = score([STUCK], [], grace=10.0, duration=120.0)
    assert before.summary() == "no scored labels, no detections"
    started = score([STUCK], [], grace=10.0, duration=1000.5)  # started, not yet over
    assert (started.labels, started.false_negatives) == (1, 1)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="grace"):
        score([], [], grace=-1.0, duration=HOUR)
    with pytest.raises(ValueError, match="duration"):
        score([], [], grace=0.0, duration=0.0)
    with pytest.raises(ValueError, match="before start"):
        Label("anomaly", "x", None, 10.0, 5.0)


SENSORS = st.sampled_from(["a", "b", "b.q"])
times = st.floats(0.0, 1000.0)


@st.composite
def labels(draw: st.DrawFn) -> Label:
    start = draw(times)
    return Label(
        draw(st.sampled_from(["anomaly", "fault", "network"])),
        "x",
        draw(st.none() | SENSORS),
        start,
        start + draw(st.floats(0.0, 200.0)),
    )


@st.composite
def events(draw: st.DrawFn) -> RecordedEvent:
    kind = draw(st.sampled_from(["threshold", "anomaly", "health", "telemetry", "state"]))
    state = draw(st.sampled_from(["active", "clear", "degraded", "stuck", "recovered"]))
    fields: dict[str, Any] = {"state": state}
    if draw(st.booleans()):
        fields["quantity"] = "q"
    return RecordedEvent(draw(times), draw(st.sampled_from(["a", "b"])), kind, "info", 1.0, fields)


@given(
    st.lists(labels(), max_size=8),
    st.lists(events(), max_size=12),
    st.floats(0.0, 60.0),
)
def test_score_properties(truth: list[Label], observed: list[RecordedEvent], grace: float) -> None:
    result = score(truth, observed, grace=grace, duration=1200.0)
    scorable = [label for label in truth if label.kind in ("anomaly", "fault")]
    assert result.true_positives + result.false_negatives == len(scorable) == result.labels
    assert 0.0 <= result.precision <= 1.0
    assert 0.0 <= result.recall <= 1.0
    assert 0.0 <= result.f1 <= 1.0
    assert 0 <= result.false_positives <= result.detections <= len(observed)
    for label in result.caught:
        assert label in scorable
    if result.max_delay is not None:
        assert 0.0 <= result.max_delay <= max(lab.end - lab.start for lab in scorable) + grace
    # Widening the grace never loses a catch.
    wider = score(truth, observed, grace=grace + 30.0, duration=1200.0)
    assert wider.true_positives >= result.true_positives
    assert wider.false_positives <= result.false_positives
