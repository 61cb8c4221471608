"""``edge outbox stats|tail|replay``: thin commands over edge.outbox.inspect, with exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.clock import VirtualClock
from edge.events import Draft
from edge.outbox.store import Outbox, OutboxLimits

DEVICE = "cli-01"
PRIORITIES = ("critical", "warning", "info", "telemetry")
TEXT_KEYS = (
    "stream", "device", "last_seq", "pending", "oldest_age_s", "delivered", "kept", "evicted",
    "bytes", "file_bytes", "max_bytes",
)  # fmt: skip


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


def test_stats_by_state_dir_shows_the_cap_the_runtime_runs_with(
    tmp_path: Path, state: Path, capsys: Any
) -> None:
    """The outbox records its caps when opened to run: --state-dir needs no config for them."""
    path = config(tmp_path, state, "mqtt://127.0.0.1:1883")
    shown = {}
    for where in (["--config", str(path)], ["--state-dir", str(state)]):
        assert main(["outbox", "stats", *where, "--json"]) == 0
        shown[where[0]] = json.loads(capsys.readouterr().out)["max_bytes"]
    assert shown == {"--config": 131072, "--state-dir": 131072}


def test_stats_with_the_config_uses_its_caps_over_the_recorded_ones(
    tmp_path: Path, state: Path, capsys: Any
) -> None:
    path = config(tmp_path, state, "mqtt://127.0.0.1:1883")
    path.write_text(path.read_text().replace("131072", "262144"))
    assert main(["outbox", "stats", "--config", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_bytes"] == 262144


def test_stats_text_is_aligned_lines_with_counts_per_priority(state: Path, capsys: Any) -> None:
    assert main(["outbox", "stats", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out and "None" not in out
    lines = out.splitlines()
    assert [line[:21] for line in lines] == [f"{key:<20} " for key in TEXT_KEYS]
    figures = dict(line.split(None, 1) for line in lines)
    assert main(["outbox", "stats", "--state-dir", str(state), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    for key in ("pending", "evicted"):
        by = stats[f"{key}_by_priority"]
        parts = ", ".join(f"{name} {by[name]}" for name in PRIORITIES)
        assert figures[key] == f"{stats[key]} ({parts})"
    assert figures["max_bytes"] == "131072"


def test_stats_gives_the_oldest_age_whenever_events_are_pending(state: Path, capsys: Any) -> None:
    """The fixture's events come from a simulated clock, as after `edge simulate`: no clock
    here can say how old they are now, but their age when the run stopped is known."""
    assert main(["outbox", "stats", "--state-dir", str(state), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["pending"] > 0
    assert isinstance(stats["oldest_age_s"], float) and stats["oldest_age_s"] >= 0
    assert main(["outbox", "stats", "--state-dir", str(state)]) == 0
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("oldest_age_s")]
    assert line == (
        f"oldest_age_s         {stats['oldest_age_s']} (at least: its age when the last event"
        " of its boot or simulation was stored)"
    )


def test_the_stats_help_says_the_config_caps_win(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        main(["outbox", "stats", "--help"])
    assert "its caps win over those the runtime recorded" in " ".join(
        capsys.readouterr().out.split()
    )


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
