"""``<state_dir>/status.json`` and ``edge status``: a real runtime on simulated hardware."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import free_port
from edge.cli import main
from edge.clock import RealClock
from edge.runtime.runtime import Runtime
from edge.runtime.status_file import NAME, StatusMissing, read_status
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.waiting import wait_until

SCENARIO = """
[device]
id = "st-01"
[storage]
state_dir = "{state}"
status_interval = {interval}
[uplink]
broker = "mqtt://127.0.0.1:{port}"
[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 0.05
[simulation]
duration = 3600.0
"""


def runtime(tmp_path: Path, interval: float) -> Runtime:
    text = SCENARIO.format(state=tmp_path / "state", interval=interval, port=free_port())
    config = tmp_path / "st.toml"
    config.write_text(text)
    scenario = parse_scenario(text, str(config), overrides={})
    clock = RealClock(assume_synced=True)
    return Runtime(
        scenario.config, hardware=SimulatedHardware(scenario, clock).hardware, clock=clock
    )


def test_the_runtime_keeps_its_status_file_current_and_says_when_it_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = runtime(tmp_path, interval=0.05)
    state = tmp_path / "state"
    device.start()
    try:
        assert device.status_file is not None
        wait_until(lambda: device.status_file is not None and device.status_file.writes >= 3)
        wait_until(lambda: read_status(state)["readings"] > 0)
        status = read_status(state)
        assert status["state"] == "running" and status["fresh"] is True
        assert status["device"] == "st-01" and status["sensors"]["probe"]["state"] == "ok"
        digest = hashlib.sha256((tmp_path / "st.toml").read_bytes()).hexdigest()
        assert status["config_sha256"] == digest
        assert status["outbox"]["last_seq"] >= 0  # the broker is away: never online
        assert status["link"]["state"] in ("connecting", "offline")
        assert stat.S_IMODE((state / NAME).stat().st_mode) == 0o600
        assert main(["status", "--state-dir", str(state), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["device"] == "st-01"
    finally:
        device.close(timeout=2)
    final = read_status(state)
    assert final["state"] == "stopped" and final["fresh"] is False
    assert final["readings"] >= status["readings"]
    assert main(["status", "--state-dir", str(state)]) == 1
    out, err = capsys.readouterr()
    assert "sensors.probe.state" in out and "stopped" in err


def test_a_stale_file_is_not_fresh(tmp_path: Path) -> None:
    device = runtime(tmp_path, interval=0.05)
    device.start()
    try:
        assert device.status_file is not None
        wait_until(lambda: device.status_file is not None and device.status_file.writes >= 1)
    finally:
        device.crash()  # a power cut: the file still says running, and stops changing
    path = tmp_path / "state" / NAME
    status = read_status(tmp_path / "state", now=path.stat().st_mtime + 0.15 + 0.01)
    assert status["state"] == "running" and status["fresh"] is False


def test_status_interval_0_writes_no_file(tmp_path: Path) -> None:
    device = runtime(tmp_path, interval=0)
    device.start()
    device.close(timeout=2)
    assert device.status_file is None and not (tmp_path / "state" / NAME).exists()
    with pytest.raises(StatusMissing, match="no status file"):
        read_status(tmp_path / "state")
    assert main(["status", "--state-dir", str(tmp_path / "state")]) == 1


@given(st.binary(max_size=300))
def test_any_file_is_read_or_refused_as_missing(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / NAME).write_bytes(data)
        try:
            status = read_status(directory)
        except StatusMissing as exc:
            assert NAME in str(exc)
        else:
            assert status["fresh"] in (True, False) and "age_s" in status
