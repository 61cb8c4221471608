"""The ``label`` and ``feedback`` commands' arguments and answers, on a real feedback file.

The end-to-end loop through Mosquitto is tests/test_feedback.py; here the handlers are
called directly, with work for the sampling thread run at once.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.device import parse
from edge.config.feedback import FeedbackConfig
from edge.errors import ConfigError
from edge.events import Draft
from edge.outbox.store import Outbox
from edge.runtime.feedback import (
    FEEDBACK_ACTIONS,
    LABEL_KEYS,
    MAX_NOTE,
    Feedback,
    Watched,
    parse_feedback,
    parse_label,
)
from edge.uplink.commands import CommandRefused
from models.rules import ZScoreDetector, ZScoreParams
from models.tuning import VERDICTS

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@given(st.dictionaries(st.sampled_from([*LABEL_KEYS, "sequence", "x"]), json_values))
def test_any_arguments_are_taken_or_refused_with_a_reason(args: dict[str, Any]) -> None:
    try:
        request = parse_label(args)
    except CommandRefused as exc:
        assert str(exc)
        return
    assert set(args) <= set(LABEL_KEYS)
    assert isinstance(request.seq, int) and not isinstance(request.seq, bool)
    assert request.seq >= 1 and request.verdict in VERDICTS


@given(
    st.integers(1, 2**62),
    st.sampled_from(VERDICTS),
    st.none() | st.text(max_size=MAX_NOTE),
    st.none() | st.text(string.ascii_letters + "-_", min_size=1, max_size=64),
    st.none() | st.sampled_from(["above", "below"]),
)
def test_good_arguments_are_taken_as_given(
    seq: int, verdict: str, note: str | None, detector: str | None, side: str | None
) -> None:
    args = {"seq": seq, "verdict": verdict, "note": note, "detector": detector, "side": side}
    request = parse_label({k: v for k, v in args.items() if v is not None})
    assert (request.seq, request.verdict, request.note) == (seq, verdict, note)
    assert (request.detector, request.side) == (detector, side)


@given(
    st.dictionaries(st.sampled_from(["action", "detector", "verdict"]), json_values),
    st.sets(st.sampled_from(["z", "probe-z", "x"])),
)
def test_feedback_arguments_are_taken_or_refused_with_a_reason(
    args: dict[str, Any], known: set[str]
) -> None:
    try:
        action, detector = parse_feedback(args, known)
    except CommandRefused as exc:
        assert str(exc)
        return
    assert action in FEEDBACK_ACTIONS and action == args["action"]
    assert detector is None or detector in known


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ({"verdict": "false_alarm"}, "seq must be"),
        ({"seq": True, "verdict": "false_alarm"}, "seq must be"),
        ({"seq": 0, "verdict": "false_alarm"}, "seq must be"),
        ({"seq": 3, "verdict": "maybe"}, "verdict must be one of false_alarm, true_alarm, missed"),
        ({"seq": 3, "verdict": "missed", "note": "x" * (MAX_NOTE + 1)}, "note must be"),
        ({"seq": 3, "verdict": "missed", "side": "left"}, "side must be"),
        ({"seq": 3, "verdict": "missed", "seqs": [1]}, "unknown argument 'seqs'"),
    ],
)
def test_bad_arguments_are_named(args: dict[str, Any], reason: str) -> None:
    with pytest.raises(CommandRefused, match=reason):
        parse_label(args)


class Bench:
    """A Feedback over a real outbox and feedback file, one zscore detector watched."""

    def __init__(self, state: Path, settings: FeedbackConfig, threshold: float = 3.0) -> None:
        self.outbox = Outbox.open(state, "fb-02")
        self.health: list[dict[str, Any]] = []
        self.feedback = Feedback(settings, state, stream=self.outbox.stream,
                                 post=lambda work: work(), health=self.on_health,
                                 wall=lambda: 1.8e9,
                                 last_seq=lambda: self.outbox.last_seq)  # fmt: skip
        detector = ZScoreDetector(ZScoreParams(window=10, threshold=threshold))
        watched = self.feedback.watch("z", "probe", None, detector)
        assert isinstance(watched, Watched)
        self.detector, self.watched = detector, watched

    def on_health(self, sensor: str, fields: dict[str, Any]) -> None:
        self.health.append(fields)

    def alarm(self, t: float, value: float) -> int:
        """Feed quiet readings, then ``value``; store the alarm as the runtime would."""
        for i in range(12):
            assert self.watched.observe(t + i, float(i % 2)) is None
        found = self.watched.observe(t + 12, value)
        assert found is not None and found.fields["state"] == "active"
        fields = {"detector": "z", **found.fields}
        draft = Draft("probe", found.kind, found.severity, found.value, t + 12, 1.8e9, True,
                      fields)  # fmt: skip
        events = [self.outbox.append(draft)]
        self.feedback.committed(events)
        assert self.watched.observe(t + 13, 0.5) is not None  # it clears
        return events[0].seq

    def telemetry(self) -> int:
        draft = Draft("probe", "telemetry", "info", 25.0, 0.0, 1.8e9, True, {})
        return self.outbox.append(draft).seq

    def close(self) -> None:
        self.feedback.close()
        self.outbox.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    made: list[Bench] = []

    def make(threshold: float = 3.0, **settings: Any) -> Bench:
        config = FeedbackConfig(enabled=True, **settings)
        made.append(Bench(tmp_path / "state", config, threshold))
        return made[-1]

    yield make
    for one in made:
        one.close()


def test_verdicts_are_stored_and_move_nothing_unless_adjust(bench: Callable[..., Bench]) -> None:
    device = bench()
    seq = device.alarm(0.0, 20.0)
    answer = device.feedback.label({"seq": seq, "verdict": "false_alarm", "note": "door"})
    assert answer["stored"] and answer["threshold"] is None and device.health == []
    assert device.detector.threshold("above") == 3.0
    (stored,) = device.feedback.store.verdicts()
    assert (stored.seq, stored.verdict, stored.note, stored.detector) == (seq, "false_alarm",
                                                                           "door", "z")  # fmt: skip
    assert stored.window is not None and stored.window[-1] == [0.0, 20.0]
    assert len(stored.window) == 13  # the quiet readings and the one that raised it


def test_a_verdict_needs_an_alarm_the_device_keeps(bench: Callable[..., Bench]) -> None:
    device = bench(adjust=True)
    reading = device.telemetry()
    with pytest.raises(CommandRefused, match=f"seq {reading} is not an alarm this device keeps"):
        device.feedback.label({"seq": reading, "verdict": "false_alarm"})
    seq = device.alarm(0.0, 20.0)
    with pytest.raises(CommandRefused, match="is an alarm of z"):
        device.feedback.label({"seq": seq, "verdict": "true_alarm", "detector": "other"})
    with pytest.raises(CommandRefused, match="is not this outbox's"):
        device.feedback.label({"seq": seq, "verdict": "true_alarm", "stream": "0" * 16})
    assert device.feedback.label({"seq": seq, "verdict": "true_alarm"})["stored"]
    assert device.feedback.label({"seq": seq, "verdict": "true_alarm"})["duplicate"]
    with pytest.raises(CommandRefused, match="already has the verdict true_alarm"):
        device.feedback.label({"seq": seq, "verdict": "false_alarm"})


def test_missed_lowers_the_threshold_and_reset_restores_it(bench: Callable[..., Bench]) -> None:
    device = bench(adjust=True, max_change=0.5)
    with pytest.raises(CommandRefused, match=r"seq 5 is beyond this outbox's newest \(0\)"):
        device.feedback.label({"seq": 5, "verdict": "missed"})
    seq = device.telemetry()
    answer = device.feedback.label({"seq": seq, "verdict": "missed", "note": "overheated"})
    assert answer["threshold"] == {"side": "above", "old": 3.0, "new": 2.25}
    assert device.detector.threshold("above") == 2.25
    assert [h["state"] for h in device.health] == ["threshold_changed"]
    with pytest.raises(CommandRefused, match="action must be one of reset, status"):
        device.feedback.command({"action": "undo"})
    with pytest.raises(CommandRefused, match="detector must name a tunable detector"):
        device.feedback.command({"action": "reset", "detector": "nope"})
    reset = device.feedback.command({"action": "reset"})
    assert reset == {"reset": [{"detector": "z", "side": "above", "old": 2.25, "new": 3.0}]}
    assert device.detector.threshold("above") == 3.0
    assert device.health[-1] == {"state": "threshold_reset", **reset["reset"][0]}


def test_a_moved_threshold_resumes_unless_the_config_changed_it(
    bench: Callable[..., Bench],
) -> None:
    first = bench(adjust=True)
    first.feedback.label({"seq": first.telemetry(), "verdict": "missed"})
    moved = first.detector.threshold("above")
    assert moved is not None and moved < 3.0
    first.close()
    again = bench(adjust=True)  # a restart: the moved threshold, said upstream
    assert again.detector.threshold("above") == moved
    assert again.health == [{"state": "threshold_restored", "detector": "z", "side": "above",
                             "threshold": moved, "configured": 3.0}]  # fmt: skip
    again.close()
    off = bench(adjust=False)  # adjust off: the configured threshold runs
    assert off.detector.threshold("above") == 3.0 and off.health == []
    off.close()
    changed = bench(threshold=3.5, adjust=True)  # the config moved it: start afresh
    assert changed.detector.threshold("above") == 3.5 and changed.health == []
    assert changed.feedback.store.tunings() == []


def test_feedback_needs_commands() -> None:
    text = '[device]\nid = "d"\n[uplink]\nbroker = "mqtt://127.0.0.1:1883"\n'
    with pytest.raises(ConfigError, match=r"feedback\.enabled: verdicts come as commands"):
        parse(text + "[feedback]\nenabled = true\n", "x.toml")
    assert parse(text + "[feedback]\nstep = 0.2\n", "x.toml").feedback.step == 0.2
    with pytest.raises(ConfigError, match=r"feedback\.step"):
        parse(text + "[feedback]\nstep = 2.0\n", "x.toml")


def test_the_feedback_file_is_private(bench: Callable[..., Bench]) -> None:
    device = bench()
    device.feedback.label({"seq": device.alarm(0.0, 20.0), "verdict": "true_alarm"})
    path = device.feedback.store.path
    assert path.stat().st_mode & 0o777 == 0o600
    assert all(p.stat().st_mode & 0o077 == 0 for p in path.parent.glob("feedback.sqlite*"))
