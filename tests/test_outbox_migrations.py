"""An outbox written by an older edgeline upgrades in place, losing nothing.

The version-1 file is built here with the exact statements edgeline 0.1 ran (frozen in this
test, not taken from ``MIGRATIONS``), rows and all, as a device would have left it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from edge.events import Draft
from edge.outbox.schema import row_size
from edge.outbox.store import FILENAME, SCHEMA_VERSION, Outbox

V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    sensor TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    synced INTEGER NOT NULL,
    mono REAL NOT NULL,
    epoch TEXT NOT NULL
);
CREATE INDEX events_by_priority ON events (priority, seq);
CREATE INDEX events_unsynced ON events (epoch) WHERE synced = 0;
"""

DEVICE = "pi-old"
STREAM = "0123456789abcdef"


def payload(seq: int, kind: str, severity: str) -> str:
    body = {
        "v": 1,
        "device": DEVICE,
        "stream": STREAM,
        "seq": seq,
        "ts": "2026-01-01T00:00:00.000Z",
        "sensor": "s",
        "kind": kind,
        "severity": severity,
        "value": seq,
        "synced": True,
    }
    return json.dumps(body, separators=(",", ":"))


def write_v1(path: Path) -> list[tuple[int, int, int]]:
    """A version-1 outbox: seqs 1..8 given, 3 and 6 delivered (deleted, as v1 did).
    Returns (seq, priority, bytes a version-2 outbox counts) of each row left."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    for statement in V1_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta VALUES (?, ?)",
        [
            ("stream", STREAM),
            ("device", DEVICE),
            ("last_seq", "8"),
            ("delivered", "2"),
            ("evicted", "0"),
        ],
    )
    kinds = {1: ("telemetry", "info"), 2: ("threshold", "critical"), 4: ("state", "info")}
    rows = []
    for seq in (1, 2, 4, 5, 7, 8):
        kind, severity = kinds.get(seq, ("telemetry", "info"))
        priority = {"critical": 0, "warning": 1}.get(severity, 3 if kind == "telemetry" else 2)
        text = payload(seq, kind, severity)
        rows.append((seq, priority, row_size(text, "s", kind, "boot-0")))
        conn.execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?)",
            (seq, priority, "s", kind, text, 1, float(seq), "boot-0"),
        )
    conn.execute("PRAGMA user_version = 1")
    conn.execute("COMMIT")
    conn.close()
    return rows


def test_a_version_1_outbox_upgrades_in_place(tmp_path: Path) -> None:
    rows = write_v1(tmp_path / FILENAME)
    with Outbox.open(tmp_path, DEVICE) as box:
        assert (box.stream, box.last_seq) == (STREAM, 8)
        # Every v1 row was pending: all still are, in (priority, seq) order.
        assert [(e.priority, e.seq) for e in box.claim(limit=-1)] == sorted(
            (p, s) for s, p, _ in rows
        )
        stats = box.stats()
        assert (stats.pending, stats.delivered, stats.kept, stats.evicted) == (6, 2, 0, 0)
        assert stats.bytes == sum(size for _, _, size in rows)  # counted as v2 counts
        # It works as a version-2 outbox from here on.
        box.ack([2, 5])
        assert box.append(box_draft()).seq == 9
        assert [e.seq for e in box.stored(1, 9)] == [1, 2, 4, 5, 7, 8, 9]
        assert box.stats().kept == 2
    conn = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "events_by_priority" not in indexes  # `pending` replaced it
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_inspecting_a_version_1_outbox_upgrades_it_too(tmp_path: Path) -> None:
    write_v1(tmp_path / FILENAME)
    with Outbox.open_existing(tmp_path) as box:
        assert box.stats().pending == 6
        assert [e.seq for e in box] == [2, 4, 1, 5, 7, 8]


def box_draft() -> Draft:
    return Draft("s", "telemetry", "info", 9, 9.0, 1_767_225_600.0, True)
