"""`edge simulate` and `edge run` as a user runs them: real processes, real brokers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto

EDGE = [sys.executable, "-m", "edge.cli"]
SUMMARY = re.compile(
    r"stream (?P<stream>[0-9a-f]+) at seq (?P<seq>\d+); upstream received (?P<got>\d+) distinct,"
    r" (?P<dups>\d+) duplicates, (?P<missing>\d+) missing"
)


def simulate(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*EDGE, "simulate", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def summary(output: str) -> dict[str, Any]:
    match = SUMMARY.search(output)
    assert match, output
    return {k: (v if k == "stream" else int(v)) for k, v in match.groupdict().items()}


def test_default_scenario_with_the_embedded_broker_arrives_wholly_upstream() -> None:
    result = simulate("--speed", "max")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    figures = summary(result.stdout)
    assert figures["seq"] > 100
    assert figures["got"] == figures["seq"] and figures["missing"] == 0
    assert "threshold/temperature warning" in result.stdout
    assert "upstream  #" in result.stdout
    assert "status    edgeline/sim-01/status online" in result.stdout


def test_restart_on_the_same_state_dir_continues_stream_and_seq(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    common = ["--speed", "max", "--duration", "30", "--quiet", "--broker", mosquitto.url]
    first = simulate(*common, "--state-dir", str(tmp_path / "state"))
    second = simulate(*common, "--state-dir", str(tmp_path / "state"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = summary(first.stdout), summary(second.stdout)
    assert one["stream"] == two["stream"]
    assert two["seq"] > one["seq"] > 0
    stats = subprocess.run(
        [*EDGE, "outbox", "stats", "--json", "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    body = json.loads(stats.stdout)
    assert body["stream"] == one["stream"] and body["last_seq"] == two["seq"]
    assert body["pending"] == 0 and body["evicted"] == 0


def test_a_run_resumed_on_a_state_dir_reports_only_its_own_seqs_missing(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    # The earlier run's seqs went upstream before this run's sink subscribed: they are
    # not missing, and waiting for them would only delay the exit.
    common = ["--speed", "max", "--duration", "30", "--quiet", "--broker", mosquitto.url]
    first = simulate(*common, "--state-dir", str(tmp_path / "state"))
    second = simulate(*common, "--state-dir", str(tmp_path / "state"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    one, two = summary(first.stdout), summary(second.stdout)
    assert two["seq"] > one["seq"] and two["missing"] == 0
    assert two["got"] == two["seq"] - one["seq"]


def test_simulate_runs_with_its_broker_down_and_says_what_stays_stored_on_sigterm(
    tmp_path: Path,
) -> None:
    # A device that boots during an outage samples and stores; stopped, it says the
    # outbox is not drained (and does not wait for a broker that is not there).
    down = Mosquitto(tmp_path / "mosquitto")  # a free port nothing listens on
    process = subprocess.Popen(
        [*EDGE, "simulate", "--speed", "20", "--duration", "3600", "--quiet",
         "--broker", down.url, "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert "broker unreachable" in process.stdout.readline() + process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    figures = summary(out)
    assert figures["seq"] > 0 and figures["got"] == 0
    assert "not drained" in out


def test_sigterm_stops_cleanly_commits_and_publishes_offline(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    state = tmp_path / "state"
    process = subprocess.Popen(
        [*EDGE, "simulate", "--speed", "20", "--duration", "3600", "--broker", mosquitto.url,
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        status = mqtt_subscriber(mosquitto.url, "edgeline/sim-01/status")
        status.wait_for(lambda ms: any(b'"online"' in m.payload for m in ms), timeout=30)
        assert process.stdout is not None
        readings = 0
        for line in process.stdout:  # wait for a few readings, then stop it
            readings += "reading" in line and "temperature" in line
            if readings == 3:
                break
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    status.wait_for(lambda ms: any(b'"offline"' in m.payload for m in ms), timeout=10)
    stats = subprocess.run(
        [*EDGE, "outbox", "stats", "--json", "--state-dir", str(state)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(stats.stdout)["last_seq"] > 0


def test_bad_arguments_exit_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    for args, needle in [
        (["--speed", "fast"], "--speed"),
        (["--duration", "-1"], "--duration"),
        (["--broker", "http://x"], "--broker"),
        (["--scenario", str(tmp_path / "missing.toml")], "no such scenario"),
    ]:
        result = simulate(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr


WRONG_MACHINE = """
[device]
id = "pi-01"
[storage]
state_dir = "{state}"
[uplink]
broker = "mqtt://127.0.0.1:1"
[[sensors]]
id = "probe"
interval = 1.0
{sensor}
"""


@pytest.mark.parametrize(
    ("sensor", "needs"),
    [('type = "gpio.input"\npin = 17', "lgpio"), ('type = "i2c.tmp102"\nbus = 7', "enable I2C")],
)
def test_run_on_a_machine_without_the_hardware_says_what_to_do_and_exits_2(
    tmp_path: Path, sensor: str, needs: str
) -> None:
    if importlib.util.find_spec("lgpio") is not None or Path("/dev/i2c-7").exists():
        pytest.skip("this machine has the hardware")
    config = tmp_path / "edge.toml"
    config.write_text(WRONG_MACHINE.format(state=tmp_path / "state", sensor=sensor))
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    result = subprocess.run(
        [*EDGE, "run", "--config", str(config)], capture_output=True, text=True, timeout=30,
        env=env,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert needs in lines[0] and f"edge simulate --config {config}" in lines[0]


def test_run_refuses_a_broken_config_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[device]\nid = "a/b"\n[uplink]\nbroker = "mqtt://localhost"\n')
    result = subprocess.run(
        [*EDGE, "run", "--config", str(config)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert f"{config}: device.id: expected" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_on_gpiozero_mock_pins_reports_state_and_stops_on_sigterm(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        f"""
        [device]
        id = "pi-01"
        [storage]
        state_dir = "{tmp_path / "state"}"
        [uplink]
        broker = "{mosquitto.url}"
        [[sensors]]
        id = "door"
        type = "gpio.input"
        pin = 27
        interval = 0.1
        """
    )
    events = mqtt_subscriber(mosquitto.url, "edgeline/pi-01/#")
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}  # gpiozero's own fake pins
    process = subprocess.Popen(
        [*EDGE, "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        first = events.wait_for(lambda ms: any("/events/state/door" in m.topic for m in ms))
        state = next(json.loads(m.payload) for m in first if "/events/" in m.topic)
        assert state["value"] is False and state["seq"] == 1  # pulled up, inactive
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    offline = events.wait_for(lambda ms: any(b'"offline"' in m.payload for m in ms), timeout=10)
    assert offline[-1].topic == "edgeline/pi-01/status"


def test_simulate_runs_every_sensor_type_from_a_config_file(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    example = Path(__file__).parent.parent / "examples" / "every-sensor.toml"
    events = mqtt_subscriber(mosquitto.url, "edgeline/bench-01/events/#")
    result = simulate(
        "--config", str(example), "--speed", "max", "--duration", "60", "--quiet",
        "--broker", mosquitto.url, "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    figures = summary(result.stdout)
    assert figures["missing"] == 0 and figures["got"] == figures["seq"]
    got = events.wait_for_count(figures["seq"])
    bodies = [json.loads(m.payload) for m in got]
    telemetry = {b["sensor"] for b in bodies if b["kind"] == "telemetry"}
    assert telemetry == {
        "board-temp", "env", "air", "adc", "supply", "light", "soil", "wind", "pump"
    }  # fmt: skip
    states = {b["sensor"] for b in bodies if b["kind"] == "state"}
    assert states == {"door", "fan"}  # first readings of the input and the output
    assert not [b for b in bodies if b["kind"] == "health"], "a simulated sensor failed"
    env = next(b for b in bodies if b["sensor"] == "env")
    assert set(env["value"]) == {"temperature", "pressure", "humidity"}


def test_simulate_records_plots_and_scores_a_scenario_with_labels(tmp_path: Path) -> None:
    scenario = tmp_path / "labelled.toml"
    scenario.write_text(
        """
[device]
id = "lab-01"
[uplink]
broker = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "t"
type = "i2c.tmp102"
interval = 1.0
[[detectors]]
sensor = "t"
type = "threshold"
above = 30.0
[simulation]
duration = 300.0
seed = 3
[simulation.signals.t]
base = 21.0
noise = 0.2
[[simulation.injections]]
kind = "anomaly"
sensor = "t"
at = 100.0
until = 160.0
label = "overheating"
signal = {base = 15.0}
"""
    )
    record, plot = tmp_path / "run.jsonl", tmp_path / "run.png"
    args = ["--scenario", str(scenario), "--speed", "max", "--quiet"]
    result = simulate(*args, "--record", str(record), "--plot", str(plot))
    assert result.returncode == 0, result.stderr
    assert "labels: 1/1 labels caught, 0 false alarm(s)" in result.stdout
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["type"] == "scenario" and lines[0]["seed"] == 3
    assert lines[1] == {
        "type": "label", "kind": "anomaly", "label": "overheating", "sensor": "t",
        "start": 100.0, "end": 160.0,
    }  # fmt: skip
    assert sum(1 for line in lines if line["type"] == "reading") == 301
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = tmp_path / "again.jsonl"
    assert simulate(*args, "--record", str(again)).returncode == 0
    assert again.read_bytes() == record.read_bytes()  # same scenario and seed: same bytes


def test_several_devices_share_one_broker_with_their_own_ids_and_streams(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    result = simulate(
        "--speed", "max", "--duration", "60", "--quiet", "--devices", "3",
        "--broker", mosquitto.url, "--state-dir", str(tmp_path / "fleet"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("summary")]
    assert [line.split(":")[0] for line in lines] == [
        "summary sim-01-001", "summary sim-01-002", "summary sim-01-003",
    ]  # fmt: skip
    figures = [summary(line) for line in lines]
    assert len({f["stream"] for f in figures}) == 3
    assert all(f["missing"] == 0 and f["got"] == f["seq"] > 0 for f in figures)
    states = sorted(p.name for p in (tmp_path / "fleet").iterdir())
    assert states == ["keys", "sim-01-001", "sim-01-002", "sim-01-003"]  # and a key each
    assert f"command keys: {tmp_path / 'fleet' / 'keys'}/<device>.key" in result.stdout


BASE = """
[device]
id = "edge-case-01"
[uplink]
broker = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "t"
type = "i2c.tmp102"
interval = 1.0
telemetry = true
[[sensors]]
id = "door"
type = "gpio.edge"
pin = 5
[simulation]
duration = 400.0
"""


def test_an_outage_that_ends_during_a_power_cut_is_over_after_it(tmp_path: Path) -> None:
    scenario = tmp_path / "cuts.toml"
    scenario.write_text(
        BASE
        + """
[[simulation.injections]]
kind = "network"
at = 200.0
until = 260.0
[[simulation.injections]]
kind = "power-cut"
at = 250.0
down = 30.0
[[simulation.injections]]
kind = "fault"
sensor = "t"
fault = "vanish"
at = 240.0
until = 270.0
"""
    )
    result = simulate("--scenario", str(scenario), "--speed", "max", "--quiet")
    assert result.returncode == 0, result.stderr
    figures = summary(result.stdout)
    assert figures["missing"] == 0 and figures["got"] == figures["seq"]
    assert "1 power cut(s)" in result.stdout and "not drained" not in result.stdout
    # The chip that vanished during the outage is back: readings go on to the end.
    assert figures["seq"] > 340


def test_random_presses_drive_their_pin(tmp_path: Path) -> None:
    scenario = tmp_path / "random.toml"
    scenario.write_text(
        BASE
        + """
[[simulation.random_presses]]
pin = 5
rate_per_hour = 360.0
hold = 1.0
"""
    )
    result = simulate("--scenario", str(scenario), "--speed", "max", "--quiet")
    assert result.returncode == 0, result.stderr
    presses = re.search(r"(\d+) state/info", result.stdout)
    assert presses and int(presses[1]) >= 2 * 20  # ~40 presses in 400 s: press and release
