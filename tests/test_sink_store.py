"""``edge sink --db``: every event stored exactly once, in SQLite and in PostgreSQL.

Real parts: a Mosquitto on a free port, a real SQLite file, a throwaway PostgreSQL cluster
(``tests/postgres.py``), and ``edge sink`` as its own process where a ``kill -9`` must lose
nothing. Each test runs over both databases.
"""

from __future__ import annotations

import json
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.cloud.sink import Sink
from edge.cloud.store import Batch, open_store, status_row
from edge.cloud.store import event_row as make_event_row
from edge.errors import StoreError, UsageError
from tests.brokers import publish_many, split_url
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def query(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows from a connection of our own (what any reader of the database would see)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return [tuple(row) for row in conn.execute(sql)]
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute(sql)]


def seqs(url: str, device: str = "dev-1") -> list[int]:
    return [
        int(row[0])
        for row in query(url, f"SELECT seq FROM events WHERE device = '{device}' ORDER BY seq")
    ]


def event(seq: int, device: str = "dev-1", stream: str = "s1", **extra: Any) -> str:
    body = {"v": 1, "device": device, "stream": stream, "seq": seq,
            "ts": f"2026-01-01T00:00:{seq % 60:02d}.000Z", "sensor": "temp", "kind": "telemetry",
            "severity": "info", "value": 20.0 + seq / 10, "synced": True, **extra}  # fmt: skip
    return json.dumps(body)


TOPIC = "edgeline/dev-1/events/telemetry/temp"


# --- in process: duplicates, statuses, devices ------------------------------------------------


def test_each_event_is_stored_once_and_the_devices_table_follows_birth_and_will(
    mosquitto: Mosquitto, db_url: str
) -> None:
    host, port = split_url(mosquitto.url)
    birth = {"state": "online", "device": "dev-1", "ts": "2026-01-01T00:00:00.500Z",
             "stream": "s1", "version": "1.2.3", "sensors": ["temp"]}  # fmt: skip
    store = open_store(db_url)
    try:
        with Sink(mosquitto.url, protocol="5", store=store, track=False) as sink:
            # The device: birth retained, a will, 40 events each sent twice (a resend after a
            # reconnect looks just like this), then it dies without a DISCONNECT.
            device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edgeline-dev-1")
            offline = {"state": "offline", "device": "dev-1", "ts": "2026-01-01T00:00:00.400Z"}
            device.will_set("edgeline/dev-1/status", json.dumps(offline), qos=1, retain=True)
            device.connect(host, port)
            device.loop_start()
            infos = [device.publish("edgeline/dev-1/status", json.dumps(birth), 1, retain=True)]
            for seq in range(1, 41):
                infos += [device.publish(TOPIC, event(seq), 1) for _ in range(2)]
            infos.append(device.publish(TOPIC, b"not json", 1))
            for info in infos:
                info.wait_for_publish(10)
            wait_until(lambda: query(db_url, "SELECT state FROM devices") == [("online",)])
            device.loop_stop()
            device.socket().close()  # a power cut: the broker publishes the will
            wait_until(lambda: query(db_url, "SELECT state FROM devices") == [("offline",)])
            wait_until(lambda: len(seqs(db_url)) == 40)
            assert sink.writer is not None
            wait_until(lambda: sink.writer is not None and sink.writer.stats.duplicates == 40)
            assert sink.malformed == 1
    finally:
        store.close()

    assert seqs(db_url) == list(range(1, 41))
    row = query(db_url, "SELECT device, stream, seq, ts, sensor, kind, severity, value, payload"
                " FROM events WHERE seq = 7")[0]  # fmt: skip
    assert row[:8] == ("dev-1", "s1", 7, "2026-01-01T00:00:07.000Z", "temp", "telemetry",
                       "info", "20.7")  # fmt: skip
    assert json.loads(row[8]) == json.loads(event(7))
    devices = query(db_url, "SELECT device, state, version, stream, last_seen FROM devices")
    # The will (dated before the birth, as a device sets it before it connects) wins: it came
    # last. The version stays from the birth; last_seen is the newest ts the device sent.
    assert devices == [("dev-1", "offline", "1.2.3", "s1", "2026-01-01T00:00:40.000Z")]
    assert query(db_url, "SELECT state FROM statuses ORDER BY ts") == [("offline",), ("online",)]

    # A sink started again gets the retained status once more: still one row for it.
    store = open_store(db_url)
    try:
        with Sink(mosquitto.url, protocol="5", store=store) as sink:
            assert sink.writer is not None
            writer = sink.writer
            with writer.committed:
                assert writer.committed.wait_for(lambda: writer.stats.batches >= 1, 10)
            assert writer.stats.statuses == 0
    finally:
        store.close()
    assert len(query(db_url, "SELECT * FROM statuses")) == 2
    assert query(db_url, "SELECT state FROM devices") == [("offline",)]


def test_heartbeats_keep_the_device_online_and_its_last_seen_moving(db_url: str) -> None:
    """A heartbeat is the birth again with ``health``: the devices row follows it (state
    still online, the birth's version and stream, the heartbeat as its status), last_seen
    moves with it though no event came, and each one is a row of statuses; the will still
    ends it."""
    birth = {"state": "online", "device": "dev-1", "ts": "2026-01-01T00:00:00.000Z",
             "stream": "s1", "version": "1.2.3", "sensors": ["temp"],
             "heartbeat_s": 60.0}  # fmt: skip
    beats = [{**birth, "ts": f"2026-01-01T00:0{k}:00.000Z", "health": {"outbox_pending": k}}
             for k in (1, 2, 3)]  # fmt: skip
    will = {"state": "offline", "device": "dev-1", "ts": "2026-01-01T00:00:00.000Z"}
    now = "2026-01-01T00:03:00.500Z"
    store = open_store(db_url)
    try:
        event_only = Batch(events=[make_event_row(json.loads(event(1)), now)])
        store.write(event_only)  # its ts: 2026-01-01T00:00:01
        store.write(Batch(statuses=[status_row("dev-1", b, now) for b in (birth, *beats)]))
        devices = query(db_url, "SELECT state, version, stream, status_ts, last_seen, status"
                        " FROM devices")  # fmt: skip
        assert devices[0][:5] == ("online", "1.2.3", "s1", beats[-1]["ts"], beats[-1]["ts"])
        assert json.loads(devices[0][5]) == beats[-1]
        assert len(query(db_url, "SELECT * FROM statuses WHERE state = 'online'")) == 4
        assert store.write(Batch(statuses=[status_row("dev-1", beats[-1], now)])).statuses == 0
        store.write(Batch(statuses=[status_row("dev-1", will, now)]))
    finally:
        store.close()
    assert query(db_url, "SELECT state, version, last_seen FROM devices") == [
        ("offline", "1.2.3", beats[-1]["ts"])
    ]


def test_the_schema_is_versioned_and_a_newer_one_is_refused(db_url: str) -> None:
    open_store(db_url).close()
    store = open_store(db_url)  # opening again migrates nothing
    assert store.schema_version() == 3
    store.close()
    assert query(db_url, "SELECT version, description FROM schema_version ORDER BY version") == [
        (1, "events, devices, statuses"),
        (2, "events.id (insert order), forward_cursors, dead_letters"),
        (3, "lost (ranges a device no longer holds)"),
    ]
    if db_url.startswith("sqlite"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            conn.execute("INSERT INTO schema_version VALUES (7, 'future', 'now')")
    else:
        import psycopg

        with psycopg.connect(db_url) as conn:
            conn.execute("INSERT INTO schema_version VALUES (7, 'future', 'now')")
    with pytest.raises(StoreError, match="schema version 7, newer than this edgeline's 3"):
        open_store(db_url)


def test_gaps_lists_missing_seqs_apart_from_evicted_ones(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = "2026-01-01T00:00:00.000Z"
    store = open_store(db_url)
    batch = Batch()
    for seq in (1, 2, 5, 9, 10):
        batch.events.append(make_event_row(json.loads(event(seq)), now))
    report = {"v": 1, "device": "dev-1", "stream": "s1", "seq": 11, "sensor": "outbox",
              "kind": "health", "severity": "warning", "state": "evicted", "reason": "cap",
              "evicted": 4, "ranges": [[3, 3], [12, 14]]}  # fmt: skip
    batch.events.append(make_event_row(report, now))
    batch.events.append(make_event_row(json.loads(event(3, device="dev-2")), now))
    batch.statuses.append(status_row("dev-1", {"state": "online", "ts": now}, now))
    written = store.write(batch)
    assert (written.events, written.duplicates, written.statuses) == (7, 0, 1)
    assert store.write(batch).duplicates == 7  # all of it again: nothing new
    store.close()

    assert main(["sink", "gaps", "--db", db_url, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        {"device": "dev-1", "stream": "s1", "events": 6, "last_seq": 11,
         "missing": [[4, 4], [6, 8]], "evicted": [[3, 3], [12, 14]], "lost": []},
        {"device": "dev-2", "stream": "s1", "events": 1, "last_seq": 3,
         "missing": [[1, 2]], "evicted": [], "lost": []},
    ]  # fmt: skip
    assert main(["sink", "gaps", "--db", db_url]) == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        "dev-1 s1: 6 events to seq 11; missing 4, 6-8; evicted 3, 12-14; lost none"
    )


# --- edge sink as a process: kill -9, shared subscriptions ------------------------------------


class SinkProcess:
    """``edge sink --db URL ...`` as its own process; ready once it says it subscribed."""

    def __init__(self, broker: str, db: str, *options: str) -> None:
        self.argv = [sys.executable, "-m", "edge.cli", "sink", "--broker", broker, "--db", db,
                     *options]  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("subscribed to", 30)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.output.append(line)
            self.lines.put(line)

    def expect(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.argv}: no {text!r}; said {self.output}") from None
            if text in line:
                return line

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no flush, no acknowledgement, no DISCONNECT
        self.process.wait(10)

    def stop(self) -> int:
        """SIGTERM; the number of events it stored (its last line says)."""
        self.process.send_signal(signal.SIGTERM)
        line = self.expect("edge sink: stored", 30)
        assert self.process.wait(30) == 0, self.output
        return int(line.split("stored ")[1].split()[0])

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()


class Publisher(threading.Thread):
    """A device's stream: ``count`` QoS 1 events at ``rate`` per second (the workload's
    pace, so that a sink can be killed while it is still arriving)."""

    def __init__(self, url: str, count: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.url, self.count, self.rate = url, count, rate
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            start = time.monotonic()
            for first in range(1, self.count + 1, 50):
                last = min(first + 49, self.count)
                publish_many(self.url, [(TOPIC, event(seq)) for seq in range(first, last + 1)])
                pause = start + last / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # the publishing rate, not a wait for a condition
        except BaseException as exc:
            self.error = exc

    def finish(self) -> None:
        self.join(60)
        assert not self.is_alive() and self.error is None, self.error


def count(url: str) -> int:
    return int(query(url, "SELECT COUNT(*) FROM events")[0][0])


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_sink_killed_mid_stream_loses_nothing_with_its_session(
    mosquitto: Mosquitto, db_url: str, sinks: list[SinkProcess], protocol: str
) -> None:
    # MQTT 5: clean start off and a session expiry; MQTT 3.1.1: clean session off.
    session = ("--client-id", "sink-a", "--protocol", protocol)
    total = 2000
    sinks.append(SinkProcess(mosquitto.url, db_url, *session))
    publisher = Publisher(mosquitto.url, total, rate=1000)
    publisher.start()
    wait_until(lambda: count(db_url) >= 400)
    sinks[0].kill()
    at_kill = count(db_url)
    assert at_kill < total, "the stream was over before the kill: nothing was tested"
    sinks.append(SinkProcess(mosquitto.url, db_url, *session))
    publisher.finish()
    wait_until(lambda: count(db_url) >= total)
    stored_after = sinks[1].stop()
    assert seqs(db_url) == list(range(1, total + 1))
    assert stored_after == total - at_kill


def test_shared_sinks_split_the_stream_and_one_killed_loses_nothing(
    mosquitto: Mosquitto, db_url: str, sinks: list[SinkProcess]
) -> None:
    total = 2000
    group = ("--share", "ingest")
    sinks.append(SinkProcess(mosquitto.url, db_url, "--client-id", "sink-a", *group))
    sinks.append(SinkProcess(mosquitto.url, db_url, "--client-id", "sink-b", *group))
    publisher = Publisher(mosquitto.url, total, rate=1000)
    publisher.start()
    wait_until(lambda: count(db_url) >= 400)
    sinks[0].kill()
    assert count(db_url) < total, "the stream was over before the kill: nothing was tested"
    sinks.append(SinkProcess(mosquitto.url, db_url, "--client-id", "sink-a", *group))
    publisher.finish()
    wait_until(lambda: count(db_url) >= total)
    by_b = sinks[1].stop()
    by_a_again = sinks[2].stop()
    assert seqs(db_url) == list(range(1, total + 1))
    assert 0 < by_b < total and by_a_again > 0, (by_b, by_a_again)


def test_a_shared_subscription_over_mqtt_3_1_1_is_refused_in_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["sink", "--broker", "mqtt://127.0.0.1:1", "--protocol", "3.1.1", "--share", "g"]
    assert main([*argv, "--client-id", "sink-a"]) == 2
    assert "shared subscriptions are an MQTT 5 feature" in capsys.readouterr().err
    with pytest.raises(UsageError, match="shared subscriptions are an MQTT 5 feature"):
        Sink("mqtt://127.0.0.1:1", protocol="3.1.1", client_id="sink-a", share="g")
