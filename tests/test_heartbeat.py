"""The heartbeat status, ``status.json``'s health block and the metrics, all from one
runtime against a real Mosquitto, with a real SQLite sink listening.

The runtime runs unchanged on simulated hardware and a virtual clock that the test
advances itself, poll by poll, so every poll runs at its due time and each heartbeat is due
at an exact virtual second. ``max_rate`` lets the first event through and then none (one
token per 1,000 virtual seconds), so what the sensor stores afterwards stays pending: the
heartbeat's outbox depth has something to equal. The sensor polls every 7 s, so no poll
falls on a heartbeat (60, 120, 180) and the outbox stands still while a heartbeat reads it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from edge import __version__
from edge.bench.mosquitto import Mosquitto, free_port
from edge.clock import VirtualClock
from edge.cloud.sink import Sink
from edge.cloud.store import open_store
from edge.events import format_ts
from edge.runtime.runtime import Runtime
from edge.runtime.status_file import read_status
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.brokers import Received
from tests.waiting import wait_until

SCENARIO = """
[device]
id = "hb-01"

[storage]
state_dir = "{state}"
commit_window_ms = 0
status_interval = 0.2
card_bytes = 32_000_000_000
card_tbw_per_gb = 0.5

[uplink]
broker = "{broker}"
heartbeat = {heartbeat}
max_rate = 0.001

[metrics]
textfile = "{textfile}"
interval = 1
port = {port}

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 7.0
telemetry = true

[simulation]
duration = 3600.0
"""

STATUS = "edgeline/hb-01/status"
HEALTH_FIELDS = {
    "uptime_s", "loop_rate_hz", "readings_per_s", "lateness_p99_ms", "skipped_polls",
    "degraded_sensors", "outbox_pending", "outbox_oldest_age_s", "outbox_queued",
    "outbox_evicted", "link_state", "link_connects", "link_failovers", "cpu_percent",
    "rss_bytes", "disk_written_bytes", "disk_write_bytes_per_day", "card_bytes",
    "card_tbw_per_gb", "card_life_days",
}  # fmt: skip


class Rig:
    """A runtime on simulated hardware; the test moves its virtual clock."""

    def __init__(self, tmp_path: Path, broker: str, *, heartbeat: float = 60) -> None:
        self.textfile = tmp_path / "node_exporter" / "edgeline.prom"
        self.textfile.parent.mkdir()
        self.port = free_port()
        text = SCENARIO.format(state=tmp_path / "state", broker=broker, heartbeat=heartbeat,
                               textfile=self.textfile, port=self.port)  # fmt: skip
        source = tmp_path / "hb.toml"
        source.write_text(text)
        self.scenario = parse_scenario(text, str(source), overrides={})
        self.clock = VirtualClock()
        self.t0 = self.clock.monotonic()
        hardware = SimulatedHardware(self.scenario, self.clock)
        self.runtime = Runtime(self.scenario.config, hardware=hardware.hardware, clock=self.clock)

    def advance_to(self, seconds: float) -> None:
        """Move the clock to t0 + seconds, stopping at each poll until it has run: no poll
        runs late, so the loop's lateness is exactly 0."""
        probe = next(t for t in self.runtime.scheduler.tasks if t.name == "probe")
        target = self.t0 + seconds
        while (due := probe.due) <= target:
            self.clock.advance_to(due)
            wait_until(lambda: probe.due > due)  # ran, and re-armed for the next slot
        self.clock.advance_to(target)

    def polls_until(self, seconds: float) -> int:
        return int(seconds // 7) + 1  # at 0, 7, 14, ...


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Rig]:
    rig = Rig(tmp_path, mosquitto.url)
    try:
        yield rig
    finally:
        rig.runtime.close()


def heartbeats_of(messages: list[Received]) -> list[dict[str, Any]]:
    bodies = [json.loads(m.payload) for m in messages if m.topic == STATUS]
    return [b for b in bodies if "health" in b]


def vm_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return str(response.read().decode("utf-8"))


def parsed(text: str) -> dict[str, tuple[str, list[Sample]]]:
    """Family name -> (type, samples), by prometheus-client's own parser."""
    return {f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text)}


def value(families: dict[str, tuple[str, list[Sample]]], name: str, **labels: str) -> float:
    for _, samples in families.values():
        for sample in samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{labels}")


def test_a_retained_heartbeat_every_interval_with_figures_that_match_the_device(
    rig: Rig, mosquitto: Mosquitto, mqtt_subscriber: Any, tmp_path: Path
) -> None:
    runtime = rig.runtime
    db = tmp_path / "sink.db"
    store = open_store(f"sqlite:///{db}")
    sink = Sink(mosquitto.url, protocol="5", store=store, track=False)
    sink.start()
    try:
        subscriber = mqtt_subscriber(mosquitto.url, STATUS)
        runtime.start()
        wait_until(lambda: runtime.uplink.stats.acked == 1)  # the one event max_rate lets by
        written: list[int] = []
        for k in (1, 2, 3):
            rig.advance_to(60.0 * k)
            beats = subscriber.wait_for(lambda ms, k=k: len(heartbeats_of(ms)) >= k)
            beat = heartbeats_of(beats)[k - 1]
            stats = runtime.outbox.stats()
            health = beat["health"]
            assert set(health) == HEALTH_FIELDS

            # The birth's fields, so that the retained status still says all the birth said.
            assert beat["state"] == "online" and beat["device"] == "hb-01"
            assert beat["stream"] == runtime.outbox.stream and beat["version"] == __version__
            assert beat["sensors"] == ["probe"] and beat["outbox"] == {"state": "ok"}
            assert beat["heartbeat_s"] == 60.0
            assert beat["ts"] == format_ts(rig.clock.wall())  # due on the virtual second
            assert rig.clock.monotonic() == rig.t0 + 60.0 * k

            polls = rig.polls_until(60.0 * k)
            window = polls - rig.polls_until(60.0 * (k - 1)) if k > 1 else polls
            assert health["uptime_s"] == 60.0 * k
            assert health["loop_rate_hz"] == round(window / 60.0, 3)
            assert health["readings_per_s"] == round(window / 60.0, 3)
            assert health["lateness_p99_ms"] == 0.0 and health["skipped_polls"] == 0
            assert health["degraded_sensors"] == []
            assert health["outbox_pending"] == stats.pending == polls - 1
            assert health["outbox_oldest_age_s"] == 60.0 * k - 7.0  # seq 2, stored at 7 s
            assert health["outbox_queued"] == 0 and health["outbox_evicted"] == 0
            assert health["link_state"] == "online" and health["link_connects"] == 1
            assert health["link_failovers"] == 0
            assert 0 < health["cpu_percent"] < 100 * (os.cpu_count() or 1)
            assert 0.5 < health["rss_bytes"] / vm_rss_bytes() < 2.0
            per_day = health["disk_written_bytes"] / health["uptime_s"] * 86_400
            assert health["disk_write_bytes_per_day"] == round(per_day)
            assert health["card_bytes"] == 32_000_000_000 and health["card_tbw_per_gb"] == 0.5
            if per_day:
                expected_days = 32_000_000_000 * 0.5 * 1000 / per_day
                assert health["card_life_days"] == round(expected_days, 1)
            written.append(health["disk_written_bytes"])
            if k == 1:  # 4 MiB written and synced by this process: the next one counts it
                with open(tmp_path / "ballast", "wb") as ballast:
                    ballast.write(os.urandom(4 * 1024 * 1024))
                    ballast.flush()
                    os.fsync(ballast.fileno())
        assert written[1] - written[0] >= 4 * 1024 * 1024
        heartbeat = runtime.heartbeat
        assert heartbeat is not None
        wait_until(lambda: heartbeat.sent == 3)  # counted once publish returned: maybe later
        assert heartbeat.skipped == 0

        # Retained: a consumer that comes later gets the last heartbeat, not the birth.
        late = mqtt_subscriber(mosquitto.url, STATUS)
        retained = late.wait_for(lambda ms: any(m.retain for m in ms))
        assert json.loads(retained[0].payload) == beat

        # The sink stores each status and keeps the device's row on the latest one.
        wait_until(lambda: sink.writer is not None and sink.writer.stats.statuses >= 4)
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT state, version, stream, status_ts, last_seen, status FROM devices"
            ).fetchone()
            states = conn.execute("SELECT state FROM statuses ORDER BY ts").fetchall()
        assert row[:5] == ("online", __version__, runtime.outbox.stream, beat["ts"], beat["ts"])
        assert json.loads(row[5]) == beat
        assert states == [("online",)] * 4  # the birth and three heartbeats

        # status.json: the same block, from the same reading as the rest of the file.
        status_file = runtime.status_file
        assert status_file is not None
        writes = status_file.writes
        wait_until(lambda: status_file.writes > writes)
        local = read_status(runtime.config.storage.state_dir)
        assert set(local["health"]) == HEALTH_FIELDS
        assert local["health"]["outbox_pending"] == local["outbox"]["pending"] == stats.pending
        assert local["health"]["uptime_s"] == 180.0

        # The metrics, from the textfile and from the port: the same families and figures.
        metrics = runtime.metrics
        assert metrics is not None and metrics.textfile is not None
        assert metrics.server is not None and metrics.server.host == "127.0.0.1"  # by default
        textfile = metrics.textfile
        writes = textfile.writes
        wait_until(lambda: textfile.writes > writes)
        from_file = parsed(rig.textfile.read_text(encoding="utf-8"))
        from_port = parsed(scrape(rig.port))
        assert stat.S_IMODE(rig.textfile.stat().st_mode) == 0o644
        assert [name for name in from_file] == [name for name in from_port]
        assert {n: t for n, (t, _) in from_file.items()} == {
            n: t for n, (t, _) in from_port.items()
        }
        polls = rig.polls_until(180.0)
        for families in (from_file, from_port):
            assert value(families, "edgeline_outbox_pending_events") == stats.pending
            assert value(families, "edgeline_outbox_last_seq") == polls
            assert value(families, "edgeline_outbox_oldest_age_seconds") == 180.0 - 7.0
            assert value(families, "edgeline_sensor_readings_total", sensor="probe") == polls
            assert value(families, "edgeline_sensor_degraded", sensor="probe") == 0
            assert value(families, "edgeline_poll_lateness_seconds", quantile="0.99") == 0
            assert value(families, "edgeline_poll_lateness_seconds_count") == polls
            assert value(families, "edgeline_uplink_up") == 1
            assert value(families, "edgeline_uplink_acked_events_total") == 1
            assert value(families, "edgeline_uptime_seconds") == 180.0
            assert value(families, "edgeline_card_size_bytes") == 32e9
            assert value(families, "edgeline_card_endurance_bytes") == 32e9 * 0.5 * 1000
            assert value(families, "edgeline_process_cpu_seconds_total") > 0
            assert value(families, "edgeline_disk_written_bytes_total") >= written[1]
            info = {"device": "hb-01", "stream": runtime.outbox.stream, "version": __version__}
            assert value(families, "edgeline_info", **info) == 1
    finally:
        sink.close()
        store.close()


def test_no_heartbeat_while_offline_and_none_when_off(tmp_path: Path) -> None:
    unreachable = f"mqtt://127.0.0.1:{free_port()}"
    rig = Rig(tmp_path, unreachable)
    try:
        rig.runtime.start()
        heartbeat = rig.runtime.heartbeat
        assert heartbeat is not None
        for k in (1, 2):
            rig.advance_to(60.0 * k)
            wait_until(lambda k=k: heartbeat.skipped == k)
        assert heartbeat.sent == 0
    finally:
        rig.runtime.close()

    off = tmp_path / "off"
    off.mkdir()
    quiet = Rig(off, unreachable, heartbeat=0)
    try:
        assert quiet.runtime.heartbeat is None
        assert "heartbeat_s" not in quiet.runtime.uplink.birth
    finally:
        quiet.runtime.close()
