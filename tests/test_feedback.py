"""The feedback loop end to end: a noisy probe whose zscore detector raises false alarms, an
operator's signed verdicts through a real Mosquitto, fewer false alarms afterwards with every
labelled anomaly still caught, each threshold change seen upstream, and a reset undoing them.

Each hour runs on a VirtualClock the sampling loop drives (seconds of real time). The
verdicts are given between runs, to a runtime whose virtual clock stands still, as an
operator labels yesterday's alarms; the second hour is the same scenario with other noise
and other random bumps (another seed), so what the thresholds learnt must generalise.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.clock import VirtualClock
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.labels import Label, score
from edge.sim.scenario import labels, parse_scenario
from edge.uplink.operator import send_command
from tests.brokers import Received, Subscriber

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
DEVICE = "fb-01"
HOUR = 3600.0
GRACE = 30.0
CONFIGURED = 3.0

SCENARIO = """
[device]
id = "{device}"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 0.5
[commands]
enabled = true
key_file = "{key}"
[feedback]
enabled = true
adjust = true
max_change = 1.0

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0

[[detectors]]
id = "probe-z"
sensor = "probe"
type = "zscore"
window = 120
threshold = 3.0

[simulation]
duration = 3600.0
seed = {seed}

# A noisy probe with short bumps now and then (a door opening): a z-score of 3 is too tight.
[simulation.signals.probe]
base = 22.0
noise = 0.3
events = [{{ rate_per_hour = 20.0, amplitude = 1.2, duration = 4.0, shape = "decay" }}]

[[simulation.injections]]
kind = "anomaly"
at = 900.0
until = 1000.0
label = "coolant pump stalled"
sensor = "probe"
signal = {{ base = 6.0 }}

[[simulation.injections]]
kind = "anomaly"
at = 2400.0
until = 2500.0
label = "fan belt slipping"
sensor = "probe"
signal = {{ base = 3.0 }}
"""


@dataclass(frozen=True)
class Seen:
    """An event as the subscriber got it, timed from the run's start (for scoring)."""

    t: float
    sensor: str
    kind: str
    fields: dict[str, Any] = field(hash=False)


class Device:
    """The device's files (state dir, key) and a way to run it, across runtimes."""

    def __init__(self, tmp_path: Path, broker: str, name: str = DEVICE) -> None:
        self.name = name
        self.state = tmp_path / name
        self.broker = broker
        self.key = tmp_path / "keys" / f"{name}.key"  # the layout edge sink label reads
        self.key.parent.mkdir(exist_ok=True)
        self.key.write_text(KEY_HEX + "\n")
        self.key.chmod(0o600)

    def runtime(
        self, seed: int, *, drive: bool, wall: float | None = None
    ) -> tuple[Runtime, VirtualClock, list[Label]]:
        text = SCENARIO.format(device=self.name, state=self.state, broker=self.broker,
                               key=self.key, seed=seed)  # fmt: skip
        scenario = parse_scenario(text, "feedback.toml", overrides={})
        clock = VirtualClock() if wall is None else VirtualClock(start_wall=wall)
        hardware = SimulatedHardware(scenario, clock)
        runtime = Runtime(scenario.config, hardware=hardware.hardware, clock=clock,
                          drive_clock=drive)  # fmt: skip
        return runtime, clock, labels(scenario)

    def hour(
        self, seed: int, upstream: Subscriber, duration: float = HOUR
    ) -> tuple[list[Seen], list[Label]]:
        """Run the scenario's hour; the events the subscriber got, timed from its start."""
        runtime, clock, truth = self.runtime(seed, drive=True)
        start = clock.wall()
        try:
            runtime.start(until=clock.monotonic() + duration)
            assert runtime.sampling_done(timeout=300)
            assert runtime.drain(timeout=30)
            last = runtime.outbox.last_seq
        finally:
            runtime.close(timeout=5)

        def mine(m: Received) -> bool:
            return f"/{self.name}/events/" in m.topic

        upstream.wait_for(lambda got: any(mine(m) and _body(m)["seq"] == last for m in got))
        return [_seen(m, start) for m in upstream.messages if mine(m)], truth


def _body(message: Received) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(message.payload)
    return body


def _seen(message: Received, start: float) -> Seen:
    body = _body(message)
    t = datetime.fromisoformat(body["ts"].replace("Z", "+00:00")).timestamp() - start
    return Seen(t, body["sensor"], body["kind"], body)


def _all(messages: list[Received]) -> list[Seen]:
    return [_seen(m, 0.0) for m in messages]


def changes(messages: list[Received]) -> list[dict[str, Any]]:
    return health(_all(messages), "threshold_changed")


def alarms(events: list[Seen]) -> list[Seen]:
    found = [e for e in events if e.kind == "anomaly" and e.fields.get("state") == "active"]
    return sorted(found, key=lambda e: e.fields["seq"])  # the order they were raised


def health(events: list[Seen], state: str) -> list[dict[str, Any]]:
    return [e.fields for e in events if e.kind == "health" and e.fields.get("state") == state]


@pytest.fixture
def device(tmp_path: Path, mosquitto: Mosquitto) -> Device:
    return Device(tmp_path, mosquitto.url)


@pytest.fixture
def listen(mosquitto: Mosquitto, mqtt_subscriber: Callable[..., Subscriber]) -> Iterator[Any]:
    def make() -> Subscriber:
        subscriber = mqtt_subscriber(mosquitto.url, "edgeline/+/events/#")
        subscriber.wait_subscribed()
        return subscriber

    yield make


def commands(device: Device, upstream: Subscriber) -> Iterator[Callable[..., dict[str, Any]]]:
    """A runtime on a standing virtual clock answering signed commands; yields a sender."""
    runtime, clock, _ = device.runtime(1, drive=False)
    runtime.start()
    key = bytes.fromhex(KEY_HEX)

    def send(name: str, **args: Any) -> dict[str, Any]:
        # The device's clock judges a command's age: date it by that clock.
        reply = send_command(
            device.broker, device.name, key, name, args, wall=clock.wall, timeout=10
        )
        return {"ok": reply["ok"], "error": reply.get("error"), **reply.get("result", {})}

    try:
        yield send
    finally:
        assert runtime.drain(timeout=30)
        runtime.close(timeout=5)


def test_verdicts_lower_false_alarms_keep_labels_caught_and_reset_undoes_them(
    device: Device, listen: Callable[[], Subscriber]
) -> None:
    # Hour 1: the configured threshold.
    before_events, truth = device.hour(seed=1, upstream=listen())
    before = score(truth, before_events, grace=GRACE, duration=HOUR)
    assert before.labels == 2 and before.missed == ()
    assert before.false_alarms_per_hour >= 10, before.summary()  # the threshold is too tight

    # The operator labels hour 1: the alarm that caught each anomaly true, every alarm
    # outside the anomalies false (those inside, after the first, are left unlabelled).
    def during(alarm: Seen) -> bool:
        return any(label.start <= alarm.t <= label.end + GRACE for label in truth)

    catching = [
        next(a for a in alarms(before_events) if label.start <= a.t <= label.end + GRACE)
        for label in truth
    ]

    upstream = listen()
    replies: list[dict[str, Any]] = []
    sender = commands(device, upstream)
    send = next(sender)
    for alarm in alarms(before_events):
        if during(alarm) and alarm not in catching:
            continue
        verdict = "true_alarm" if alarm in catching else "false_alarm"
        reply = send("label", seq=alarm.fields["seq"], verdict=verdict, note="hour 1 review")
        assert reply["ok"] and reply["stored"] and reply["detector"] == "probe-z", reply
        replies.append(reply)
    again = send("label", seq=alarms(before_events)[0].fields["seq"], verdict="true_alarm")
    first = replies[0]
    if first["verdict"] == "true_alarm":  # the same verdict twice: a duplicate, no change
        assert again["ok"] and again["duplicate"], again
    else:  # another verdict on a labelled alarm: refused
        assert not again["ok"] and "already has the verdict" in again["error"], again
    status = send("feedback", action="status")
    sender.close()

    moves = [(r["threshold"]["old"], r["threshold"]["new"], r["seq"]) for r in replies
             if r["threshold"] is not None]  # fmt: skip
    assert moves, "no verdict moved the threshold"
    got = upstream.wait_for(lambda got: len(changes(got)) >= len(moves), timeout=30)
    changed = changes(got)
    # Every change is upstream, in order, each from where the one before left it.
    assert [(h["old"], h["new"], h["label_seq"]) for h in changed] == moves
    assert changed[0]["old"] == CONFIGURED
    assert all(a["new"] == b["old"] for a, b in itertools.pairwise(changed))
    tuned = status["detectors"]["probe-z"]["above"]
    assert tuned["threshold"] == changed[-1]["new"] > CONFIGURED
    assert tuned["threshold"] <= CONFIGURED * 2  # max_change = 1.0
    true_scores = [abs(a.fields["score"]) for a in catching]
    assert tuned["threshold"] < min(true_scores)  # the ceiling: true alarms stay caught

    # The verdicts are stored on the device with the readings that raised each alarm.
    with sqlite3.connect(device.state / "feedback.sqlite") as db:
        rows = db.execute("SELECT seq, verdict, note, window FROM verdicts").fetchall()
    assert len(rows) == len(replies)
    for seq, verdict, note, window in rows:
        assert verdict in ("true_alarm", "false_alarm")
        readings = json.loads(window)
        assert note == "hour 1 review" and 1 < len(readings) <= 60
        assert readings[-1][0] == 0.0  # the reading that raised it is the newest
        alarm = next(a for a in alarms(before_events) if a.fields["seq"] == seq)
        assert readings[-1][1] == alarm.fields["value"]

    # Hour 2: other noise, other bumps, the same anomalies; the moved threshold resumes.
    after_events, _ = device.hour(seed=2, upstream=listen())
    after = score(truth, after_events, grace=GRACE, duration=HOUR)
    restored = health(after_events, "threshold_restored")
    assert [h["threshold"] for h in restored] == [tuned["threshold"]]
    assert after.missed == () and after.true_positives == before.true_positives == 2
    assert after.false_alarms_per_hour < before.false_alarms_per_hour / 2, (
        before.summary(),
        after.summary(),
    )
    print(f"\nbefore: {before.summary()}\nafter:  {after.summary()}\nthreshold {tuned}")

    # The reset puts the configured threshold back: upstream, in the reply, on the detector.
    upstream = listen()
    sender = commands(device, upstream)
    send = next(sender)
    reset = send("feedback", action="reset", detector="probe-z")
    assert reset["ok"] and reset["reset"] == [
        {"detector": "probe-z", "side": "above", "old": tuned["threshold"], "new": CONFIGURED}
    ]
    status = send("feedback", action="status")
    assert status["detectors"]["probe-z"]["above"]["threshold"] == CONFIGURED
    assert send("feedback", action="reset")["reset"] == []  # nothing left to undo
    sender.close()
    got = upstream.wait_for(lambda got: len(health(_all(got), "threshold_reset")) >= 1)
    undone = health(_all(got), "threshold_reset")
    assert [(h["old"], h["new"]) for h in undone] == [(tuned["threshold"], CONFIGURED)]
    runtime, _, _ = device.runtime(3, drive=False)  # and a restart does not bring it back
    try:
        assert runtime.feedback is not None
        knob = runtime.feedback.knobs["probe-z"]
        assert knob.detector.threshold("above") == CONFIGURED and knob.tuning == {}
    finally:
        runtime.close(timeout=5)


def test_the_sink_labels_many_devices_from_a_file(
    tmp_path: Path, mosquitto: Mosquitto, listen: Callable[[], Subscriber],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    fleet = [Device(tmp_path, mosquitto.url, name) for name in ("fb-a", "fb-b")]
    upstream = listen()
    raised = {d.name: alarms(d.hour(seed=i, upstream=upstream, duration=900.0)[0])
              for i, d in enumerate(fleet, start=1)}  # fmt: skip
    assert all(raised.values()), raised
    rows = ["device,seq,verdict,note"]
    for name, found in raised.items():
        rows += [f"{name},{a.fields['seq']},false_alarm,bench review" for a in found]
    rows.append(f"fb-b,{raised['fb-b'][0].fields['seq'] + 100000},false_alarm,")  # no such alarm
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text("\n".join(rows) + "\n")

    # The devices run again, their clocks at the operator's time: it dates the commands.
    running = [d.runtime(9, drive=False, wall=time.time())[0] for d in fleet]
    try:
        for runtime in running:
            runtime.start()
        code = main(["sink", "label", "--broker", mosquitto.url, "--keys",
                     str(tmp_path / "keys"), "--file", str(verdicts)])  # fmt: skip
    finally:
        for runtime in running:
            runtime.close(timeout=5)
    out, err = capsys.readouterr()
    assert code == 1  # one row refused
    assert "is beyond this outbox's newest" in err and err.count("refused") == 1
    assert out.count('"stored": true') == len(rows) - 2
    for device in fleet:
        with sqlite3.connect(device.state / "feedback.sqlite") as db:
            stored = db.execute("SELECT seq, note FROM verdicts ORDER BY seq").fetchall()
        assert stored == [(a.fields["seq"], "bench review") for a in raised[device.name]]


def test_a_file_with_a_bad_row_sends_nothing(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Callable[..., Subscriber],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    commands = mqtt_subscriber(mosquitto.url, "edgeline/+/cmd/#")
    commands.wait_subscribed()
    verdicts = tmp_path / "verdicts.csv"
    verdicts.write_text("device,seq,verdict\nfb-a,12,false_alarm\nfb-a,twelve,false_alarm\n")
    (tmp_path / "keys").mkdir()
    code = main(["sink", "label", "--broker", mosquitto.url, "--keys", str(tmp_path / "keys"),
                 "--file", str(verdicts)])  # fmt: skip
    assert code == 2
    assert "verdicts.csv:3: seq must be an integer >= 1, got 'twelve'" in capsys.readouterr().err
    assert commands.messages == []  # the good row was not sent either
