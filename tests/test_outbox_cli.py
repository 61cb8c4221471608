"""``edge outbox stats|tail|replay``: thin commands over edge.outbox.inspect, with exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.clock import VirtualClock
from edge.events import Draft
from edge.outbox.store import Outbox, OutboxLimits
from tests.brokers import Mosquitto

DEVICE = "cli-01"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    clock = VirtualClock()
    directory = tmp_path / "state"
    with Outbox.open(
        directory, DEVICE, clock=clock, limits=OutboxLimits(max_bytes=128 * 1024)
    ) as box:
        events = box.commit(
            [Draft("t", "telemetry", "info", i, 1.0, clock.wall(), True) for i in range(20)]
        )
        box.ack([e.seq for e in events[:5]])  # delivered: kept, then trimmed for room
        box.commit(
            [Draft("t", "telemetry", "info", i, 1.0, clock.wall(), True) for i in range(280)]
        )
        box.commit([Draft("t", "threshold", "critical", 1, 1.0, clock.wall(), True)])
    return directory


def config(tmp_path: Path, state: Path, broker: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(
        f"""
[device]
id = "{DEVICE}"

[storage]
state_dir = "{state}"
max_bytes = 131072

[uplink]
broker = "{broker}"
""",
        encoding="utf-8",
    )
    return path


def test_stats_json_has_the_contract_keys(state: Path, capsys: Any) -> None:
    assert main(["outbox", "stats", "--state-dir", str(state), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert {"stream", "last_seq", "pending", "evicted"} <= stats.keys()
    assert {"pending_by_priority", "oldest_age_s", "delivered", "bytes", "kept"} <= stats.keys()
    assert stats["evicted"] > 0 and stats["delivered"] == 5
    assert stats["pending_by_priority"]["critical"] == 1
    assert stats["evicted_by_priority"]["telemetry"] == stats["evicted"]
    assert stats["pending"] == sum(stats["pending_by_priority"].values())


def test_stats_with_the_config_knows_the_cap(tmp_path: Path, state: Path, capsys: Any) -> None:
    path = config(tmp_path, state, "mqtt://127.0.0.1:1883")
    assert main(["outbox", "stats", "--config", str(path)]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["max_bytes"] == "131072"
    assert lines["stream"]


def test_tail_prints_payloads_newest_last(state: Path, capsys: Any) -> None:
    assert main(["outbox", "tail", "--state-dir", str(state), "-n", "3"]) == 0
    bodies = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # The newest telemetry, the report of the eviction it caused, the alarm after it.
    assert [b["sensor"] for b in bodies] == ["t", "outbox", "t"]
    assert [b["seq"] for b in bodies] == sorted(b["seq"] for b in bodies)
    assert main(["outbox", "tail", "--state-dir", str(state), "-n", "400", "--pending"]) == 0
    pending = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert not set(range(1, 6)) & set(pending)  # delivered ones are not pending


def test_replay_through_the_cli(
    tmp_path: Path, state: Path, mosquitto: Mosquitto, mqtt_subscriber: Any, capsys: Any
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/#")
    path = config(tmp_path, state, mosquitto.url)
    argv = ["outbox", "replay", "--config", str(path)]
    assert main([*argv, "--from-seq", "290", "--to-seq", "299"]) == 0
    assert "replayed 10 of 10 events" in capsys.readouterr().out
    got = subscriber.wait_for_count(10, timeout=10)
    assert [json.loads(m.payload)["seq"] for m in got] == list(range(290, 300))
    argv = ["outbox", "replay", "--state-dir", str(state), "--broker", mosquitto.url]
    assert main([*argv, "--from-seq", "1", "--to-seq", "5"]) == 0  # trimmed: none held
    assert "not held (evicted or trimmed): 1-5" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["outbox", "replay", "--state-dir", "{state}", "--from-seq", "1"],  # no broker
        ["outbox", "replay", "--state-dir", "{state}", "--broker", "mqtt://h", "--from-seq", "0"],
        ["outbox", "replay", "--state-dir", "{state}", "--broker", "http://h", "--from-seq", "1"],
        ["outbox", "replay", "--state-dir", "{state}", "--from-seq", "5", "--to-seq", "4"],
    ],
)
def test_bad_replay_arguments_exit_2(state: Path, argv: list[str], capsys: Any) -> None:
    assert main([a.replace("{state}", str(state)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_no_outbox_exits_1(tmp_path: Path, capsys: Any) -> None:
    assert main(["outbox", "stats", "--state-dir", str(tmp_path / "none")]) == 1
    assert "no outbox" in capsys.readouterr().err
