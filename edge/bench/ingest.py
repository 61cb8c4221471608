"""Figure 9: the cloud side's ingest, a fleet into PostgreSQL through the broker.

A fleet of simulated devices (the default scenario, each device its own id, stream and
state, on virtual clocks in one process) publishes while the sinks are away: the broker
queues every event for the sinks' persistent sessions, as it does during a sink outage.
Then ``sinks`` ``edge sink --share`` processes store the backlog into a throwaway
PostgreSQL cluster, and the figures are read back from the database:

- ingest events/s: the events over the time from the first row's ``received_at`` to the
  last one's (each sink's start-up is outside that window), and, more cautious, over the
  time from launching the sinks until the database held every event (polled);
- the sinks' CPU per event: their processes' CPU time, less what starting and subscribing
  took (measured on the same processes when their sessions were made);
- the same rows written by a bare ``INSERT`` loop (one statement per row, a commit per
  ``batch`` rows) and by the sink's own batched statement alone, into fresh tables of the
  same database: ingest as a ratio of each;
- the broker's and PostgreSQL's CPU per event while the sinks drained.

Without PostgreSQL's programs or psycopg the figure is skipped, with the reason.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edge.bench.child import run_child
from edge.bench.measure import process_cpu, process_tree_cpu

GROUP = "bench-ingest"


class SinkProcess:
    """``edge sink --db URL --client-id ID --share GROUP`` as its own process."""

    def __init__(self, broker: str, db: str, name: str, share: bool) -> None:
        argv = [sys.executable, "-m", "edge.cli", "sink", "--broker", broker, "--db", db,
                "--client-id", name, "--every", "0"]  # fmt: skip
        if share:
            argv += ["--share", GROUP]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self.said: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.said.append(line)
            self._lines.put(line)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                said = "".join(self.said[-20:])
                raise RuntimeError(f"edge sink: no {text!r} in {timeout:g} s:\n{said}") from None
            if text in line:
                return

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> float:
        """SIGTERM, after which it stores what it holds; its CPU seconds by then."""
        self.process.send_signal(signal.SIGTERM)
        self.wait_for("edge sink: stored", 60)
        spent = self.cpu()
        self.process.wait(30)
        return spent

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def run(
    broker: str,
    broker_pid: int | None,
    workdir: Path,
    *,
    devices: int,
    duration: float,
    sinks: int = 2,
    batch: int = 1000,
) -> dict[str, Any]:
    from edge.bench.postgres import INSTALL_HINT, PostgresCluster, find_postgres

    found = find_postgres()
    if found is None:
        return {"skipped": f"PostgreSQL is not installed ({INSTALL_HINT})"}
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return {"skipped": "psycopg is not installed (pip install 'edgeline[cloud]')"}
    with PostgresCluster(*found) as cluster:
        db = cluster.database()
        names = [f"{GROUP}-{i + 1}" for i in range(sinks)]
        startup = _make_sessions(broker, db, names, share=sinks > 1)
        options = {"broker": broker, "devices": devices, "duration": duration,
                   "state_dir": str(workdir / "fleet")}  # fmt: skip
        fleet = run_child("fleet", options, timeout=3600.0)
        servers = {"broker": broker_pid, "postgres": cluster.pid}
        drained = _drain(broker, db, names, fleet["events"], servers, share=sinks > 1)
        rows = _rows(db)  # what the sinks stored, read once for both baselines
        bare = _bare_inserts(db, rows, batch)
        bulk = _bulk_writes(db, rows, batch)
    # received_at has millisecond resolution: a handful of events may all share one
    seconds = max(drained["seconds"], 0.001)
    rate = fleet["events"] / seconds if drained["stored"] else None
    return {
        "devices": devices,
        "sinks": sinks,
        "fleet": fleet,
        "events": fleet["events"],
        "stored": drained["stored"],
        "ingest_per_s": rate,
        # from launching the sinks to the last row seen (start-up and polling included)
        "ingest_wall_per_s": fleet["events"] / drained["wall_seconds"],
        "sink_cpu_us": (drained["sink_cpu"] - startup * sinks) / fleet["events"] * 1e6,
        "broker_cpu_us": drained["broker_cpu"] / fleet["events"] * 1e6,
        "postgres_cpu_us": drained["postgres_cpu"] / fleet["events"] * 1e6,
        "bare_insert_per_s": bare,
        "bulk_insert_per_s": bulk,
        "ratio_to_bare": rate / bare if rate and bare else None,
        "ratio_to_bulk": rate / bulk if rate and bulk else None,
    }


def _make_sessions(broker: str, db: str, names: list[str], *, share: bool) -> float:
    """Start each sink once so the broker keeps a session for it; the CPU seconds one sink
    takes to start, subscribe and stop (the mean)."""
    started = [SinkProcess(broker, db, name, share) for name in names]
    try:
        for sink in started:
            sink.wait_for("subscribed to", 60)
        return sum(sink.stop() for sink in started) / len(started)
    finally:
        for sink in started:
            sink.close()


def _drain(
    broker: str,
    db: str,
    names: list[str],
    events: int,
    servers: dict[str, int | None],
    *,
    share: bool,
) -> dict[str, Any]:
    import psycopg

    def cpu() -> dict[str, float]:
        return {name: process_tree_cpu(pid) if pid else 0.0 for name, pid in servers.items()}

    before = cpu()
    began = time.monotonic()
    started = [SinkProcess(broker, db, name, share) for name in names]
    try:
        with psycopg.connect(db) as conn:
            deadline = time.monotonic() + max(600.0, events / 500)
            stored = 0
            while stored < events and time.monotonic() < deadline:
                time.sleep(0.2)  # polling the database's count, not waiting for a condition
                row = conn.execute("SELECT COUNT(*) FROM events").fetchone()
                stored = int(row[0]) if row else 0
            wall = time.monotonic() - began
            span = conn.execute(
                "SELECT EXTRACT(EPOCH FROM MAX(received_at::timestamptz)"
                " - MIN(received_at::timestamptz)) FROM events"
            ).fetchone()
        after = cpu()
        sink_cpu = sum(sink.stop() for sink in started)
    finally:
        for sink in started:
            sink.close()
    return {
        "stored": stored,
        "seconds": float(span[0]) if span and span[0] is not None else 0.0,
        "wall_seconds": wall,
        "sink_cpu": sink_cpu,
        "broker_cpu": after["broker"] - before["broker"],
        "postgres_cpu": after["postgres"] - before["postgres"],
    }


def _rows(db: str) -> list[tuple[Any, ...]]:
    import psycopg

    from edge.cloud.store import EVENT_COLUMNS

    with psycopg.connect(db) as conn:
        return list(conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY id"))


def _bare_inserts(db: str, rows: list[tuple[Any, ...]], batch: int) -> float | None:
    """Rows/s of the plainest loop a consumer could write: one INSERT ... ON CONFLICT DO
    NOTHING per row, a commit per ``batch`` rows, into a copy of the events table."""
    import psycopg

    from edge.cloud.store import EVENT_COLUMNS

    if not rows:
        return None
    marks = ", ".join(["%s"] * len(EVENT_COLUMNS.split(",")))
    sql = (
        f"INSERT INTO bare_events ({EVENT_COLUMNS}) VALUES ({marks})"
        " ON CONFLICT (device, stream, seq) DO NOTHING"
    )
    with psycopg.connect(db) as conn:
        conn.execute("CREATE TABLE bare_events (LIKE events INCLUDING ALL)")
        conn.commit()
        began = time.perf_counter()
        with conn.cursor() as cur:
            for at in range(0, len(rows), batch):
                for row in rows[at : at + batch]:
                    cur.execute(sql, row)
                conn.commit()
        took = time.perf_counter() - began
    return len(rows) / took


def _bulk_writes(db: str, rows: list[tuple[Any, ...]], batch: int) -> float | None:
    """Rows/s of the sink's own batched write (``Store.write``) alone, no MQTT, into a
    fresh schema of the same database."""
    import psycopg

    from edge.cloud.store import Batch, EventRow, open_store

    if not rows:
        return None
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA bulk")
    separator = "&" if "?" in db else "?"
    store = open_store(f"{db}{separator}options=-csearch_path%3Dbulk")
    try:
        batches = [
            Batch(events=[EventRow(*row) for row in rows[at : at + batch]])
            for at in range(0, len(rows), batch)
        ]
        began = time.perf_counter()
        for each in batches:
            store.write(each)
        took = time.perf_counter() - began
    finally:
        store.close()
    return len(rows) / took
