"""Figure 2: latency from a reading to its event on disk to its receipt by a subscriber.

The runtime runs in one process (simulated sensors with telemetry, real clock), a paho
subscriber in another; both stamp with CLOCK_MONOTONIC, so their times compare. Each event
is traced from its reading (the draft's stamp) to the end of the group commit that stored
it to the subscriber's receipt, at 100 and 1,000 events/s, with the commit window at 0 ms
(commit as soon as the previous commit ends) and at the default 100 ms.

Then a run of its own at the lowest rate and the default window in which a known share
of readings is critical: each sensor's value swings across a critical threshold rule
``CRITICAL_HZ`` times a second, so one reading in ``SENSOR_HZ / CRITICAL_HZ`` per sensor
fires a critical event (and a later one an info clear). A critical event is committed at
once, whatever the window, and takes the telemetry waiting in the window with it, so this
run's other figures are not the default window's; its critical events' latency is
reported apart.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.bench import measure, mqtt
from edge.bench.child import run_child
from edge.bench.rig import DEVICE, RigSpec
from edge.config.device import StorageConfig

SENSOR_HZ = 10
CRITICAL_HZ = 1.0  # critical events per second per sensor, in the critical run
CRITICAL_RUN = 4  # the critical run's length, in the other runs' durations
DEFAULT_WINDOW_MS = StorageConfig().commit_window_ms


class Listener:
    """``python -m edge.bench.mqtt`` subscribed to the bench device's events."""

    def __init__(self, url: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge.bench.mqtt", url, f"edgeline/{DEVICE}/events/#", str(out)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != mqtt.READY:
            self.close()
            raise mqtt.BaselineError(f"the listener did not subscribe (said {line!r})")

    def received(self) -> dict[int, float]:
        found: dict[int, float] = {}
        if self.out.exists():
            for line in self.out.read_text(encoding="ascii").splitlines():
                parts = line.split()
                if len(parts) == 2:
                    found.setdefault(int(parts[0]), float(parts[1]))  # the first delivery
        return found

    def wait_for(self, seqs: set[int], timeout: float) -> dict[int, float]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.received()
            if seqs <= found.keys() or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def one(
    url: str, workdir: Path, *, rate: int, window_ms: int, warmup: float, duration: float,
    critical_hz: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        listener = Listener(url, Path(scratch) / "received.txt")
        try:
            spec = RigSpec(
                state_dir=str(Path(scratch) / "state"),
                broker=url,
                sensors=rate // SENSOR_HZ,
                interval=1 / SENSOR_HZ,
                telemetry=True,
                threshold=False,
                commit_window_ms=window_ms,
                critical_hz=critical_hz,
            )
            options = {"spec": asdict(spec), "warmup": warmup, "duration": duration}
            result = run_child("latency", options, timeout=warmup + duration + 60)
            traces = result["traces"]
            received = listener.wait_for({int(t[0]) for t in traces}, timeout=10.0)
        finally:
            listener.close()
    critical = set(result["critical"])
    return {
        "rate": rate,
        "commit_window_ms": window_ms,
        "events_per_s": len(traces) / result["wall_s"],
        **_delays(traces, received),
        "critical_per_s": critical_hz * rate / SENSOR_HZ,
        "critical": (
            _delays([t for t in traces if int(t[0]) in critical], received)
            if critical_hz > 0 else None
        ),
    }  # fmt: skip


def _delays(traces: list[list[Any]], received: dict[int, float]) -> dict[str, Any]:
    """Reading -> disk and reading -> subscriber, in ms, of the traced (seq, read, stored)."""
    disk = [(stored - read) * 1000 for _, read, stored in traces]
    broker = [(received[seq] - read) * 1000 for seq, read, _ in traces if seq in received]
    return {
        "events": len(traces),
        "received": len(broker),
        "to_disk_p50_ms": measure.percentile(disk, 0.5),
        "to_disk_p99_ms": measure.percentile(disk, 0.99),
        "p50_ms": measure.percentile(broker, 0.5),
        "p99_ms": measure.percentile(broker, 0.99),
        "max_ms": max(broker, default=float("nan")),
    }


def run(
    url: str, workdir: Path, *, rates: tuple[int, ...], windows: tuple[int, ...],
    warmup: float, duration: float,
) -> dict[str, Any]:  # fmt: skip
    cases = {}
    for window in windows:
        for rate in rates:
            cases[f"{rate}/s window {window} ms"] = one(
                url, workdir, rate=rate, window_ms=window, warmup=warmup, duration=duration
            )
    rate = min(rates)
    # Four times as long: one reading in ten is critical, and a p99 wants a few hundred.
    cases[f"{rate}/s window {DEFAULT_WINDOW_MS} ms, critical readings"] = one(
        url, workdir, rate=rate, window_ms=DEFAULT_WINDOW_MS, warmup=warmup,
        duration=CRITICAL_RUN * duration, critical_hz=CRITICAL_HZ,
    )  # fmt: skip
    return {"cases": cases}
