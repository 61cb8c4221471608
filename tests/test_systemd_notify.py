"""systemd's notify protocol, against a real unix datagram socket standing in for systemd:
READY once sampling runs, STATUS lines, WATCHDOG pings from the sampling loop at half the
watchdog period (and none while the loop is stuck), STOPPING on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.bench.mosquitto import free_port
from edge.clock import RealClock
from edge.runtime.runtime import Runtime
from edge.runtime.systemd import Notifier
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario

EDGE = [sys.executable, "-m", "edge.cli"]
WATCHDOG_USEC = 200_000  # pings every 0.1 s


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[socket.socket]:
    """What systemd listens on: a datagram socket; its path goes in NOTIFY_SOCKET."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    try:
        yield listener
    finally:
        listener.close()


def receive(listener: socket.socket, timeout: float) -> str | None:
    listener.settimeout(timeout)
    try:
        return listener.recv(4096).decode()
    except (TimeoutError, BlockingIOError):  # BlockingIOError: timeout 0, nothing waiting
        return None


def until(listener: socket.socket, field: str, timeout: float = 20.0) -> list[str]:
    """Every datagram up to and including the first one with ``field``."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = receive(listener, left)
        if message is None:
            break
        seen.append(message)
        if field in message.splitlines():
            return seen
    raise AssertionError(f"no {field} in {seen}")


def test_edge_run_says_ready_pings_the_watchdog_reports_status_and_says_stopping(
    tmp_path: Path, systemd: socket.socket
) -> None:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'[device]\nid = "pi-01"\n[storage]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[uplink]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n'
        '[[sensors]]\nid = "door"\ntype = "gpio.input"\npin = 27\ninterval = 0.1\n'
    )
    env = {
        **os.environ, "GPIOZERO_PIN_FACTORY": "mock",  # gpiozero's own fake pins
        "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": str(WATCHDOG_USEC),
    }  # fmt: skip
    process = subprocess.Popen(
        [*EDGE, "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        ready = until(systemd, "READY=1")[-1]
        assert any(line.startswith("STATUS=sampling ") for line in ready.splitlines())
        started = time.monotonic()
        seen = until(systemd, "WATCHDOG=1")
        pings = 1
        status_lines = [m for m in seen if m.startswith("STATUS=")]
        while time.monotonic() - started < 6.0:  # past one STATUS period (5 s)
            message = receive(systemd, 1.0)
            pings += message == "WATCHDOG=1"
            if message is not None and message.startswith("STATUS="):
                status_lines.append(message)
        elapsed = time.monotonic() - started
        process.send_signal(signal.SIGTERM)
        assert until(systemd, "STOPPING=1")
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    expected = elapsed / (WATCHDOG_USEC / 2e6)
    assert 0.5 * expected <= pings <= 1.5 * expected + 2, (pings, expected)
    assert status_lines and "link " in status_lines[-1] and "outbox " in status_lines[-1]


def test_a_stuck_sampling_loop_stops_feeding_the_watchdog(
    tmp_path: Path, systemd: socket.socket
) -> None:
    text = (
        f'[device]\nid = "wd-01"\n[storage]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[uplink]\nbroker = "mqtt://127.0.0.1:{free_port()}"\n'
        '[[sensors]]\nid = "probe"\ntype = "i2c.tmp102"\ninterval = 0.05\n'
    )
    scenario = parse_scenario(text, "wd.toml", overrides={})
    clock = RealClock(assume_synced=True)
    notifier = Notifier(
        {"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    )
    assert notifier.watchdog_interval == 0.1
    runtime = Runtime(
        scenario.config, hardware=SimulatedHardware(scenario, clock).hardware, clock=clock,
        notifier=notifier,
    )  # fmt: skip
    stuck, release = threading.Event(), threading.Event()

    def hang() -> None:  # a sensor read that never returns, say
        stuck.set()
        release.wait(30)

    runtime.start()
    try:
        until(systemd, "WATCHDOG=1")
        runtime.scheduler.post(hang)
        assert stuck.wait(10)
        while receive(systemd, 0.0) is not None:  # what was sent before it hung
            pass
        assert receive(systemd, 0.5) is None  # five periods: no ping while stuck
        release.set()
        assert until(systemd, "WATCHDOG=1", timeout=10)  # and they resume
    finally:
        release.set()
        runtime.close(timeout=2)
        notifier.close()


def test_without_notify_socket_nothing_is_sent_and_the_watchdog_is_off() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("x") is False and notifier.sent == 0
    other = Notifier({"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # the watchdog is meant for another process
