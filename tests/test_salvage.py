"""A corrupt outbox is moved aside, never deleted, and what can be read is salvaged.

Real files, corrupted the ways SD cards corrupt them: pages overwritten with garbage, the
file cut short, a header that is not SQLite's, a WAL holding the newest commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.clock import VirtualClock
from edge.events import Draft, Event
from edge.outbox.store import FILENAME, Outbox
from tests.test_end_to_end import Rig

DEVICE = "pi-sd"
PAGE = 4096


def draft(n: int, severity: str = "info", kind: str = "telemetry") -> Draft:
    return Draft("s", kind, severity, n, 100.0 + n, 1_767_225_600.0 + n, True, {"pad": "x" * 300})  # type: ignore[arg-type]


def filled(directory: Path, count: int = 2000, acked: int = 0) -> tuple[str, list[Event]]:
    """An outbox of ``count`` events (the first ``acked`` delivered), closed cleanly."""
    with Outbox.open(directory, DEVICE) as box:
        events = box.commit([draft(n) for n in range(count)])
        box.ack([e.seq for e in events[:acked]])
        return box.stream, events


def root_page(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(
            conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[
                0
            ]
        )
    finally:
        conn.close()


def leaf_pages(path: Path, table: str) -> list[int]:
    """The leaf pages of a table's b-tree (needs the dbstat table, else a guess)."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        ).fetchall()
        return [int(r[0]) for r in rows]
    except sqlite3.Error:
        return []
    finally:
        conn.close()


def smash(path: Path, pages: list[int], seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("r+b") as f:
        for page in pages:
            f.seek((page - 1) * PAGE)
            f.write(bytes(rng.getrandbits(8) for _ in range(PAGE)))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def corrupt_copies(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if ".corrupt-" in p.name)


def test_pages_overwritten_with_garbage_lose_only_their_rows(tmp_path: Path) -> None:
    stream, events = filled(tmp_path, 2000, acked=500)
    path = tmp_path / FILENAME
    leaves = leaf_pages(path, "events")
    assert len(leaves) > 50
    bad = leaves[20:23]  # three leaves in the delivered part... and some pending ones:
    bad += leaves[len(leaves) // 2 : len(leaves) // 2 + 2]
    smash(path, bad)
    smashed = digest(path)

    clock = VirtualClock()
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:
        salvage = box.salvage
        assert salvage is not None
        assert salvage.stream_kept and box.stream == stream
        assert box.last_seq == 2001  # the counter survived; the report took 2001
        assert salvage.first_seq == 2001
        # Moved aside, not deleted, and not modified.
        (moved,) = [p for p in corrupt_copies(tmp_path) if not p.name.endswith(("-wal", "-shm"))]
        assert str(moved) == salvage.moved_to and digest(moved) == smashed
        # Only the smashed pages' rows are gone; each salvaged row is byte-identical.
        stored = {e.seq: e for e in box.stored(1, 2000)}
        lost = 2000 - len(stored)
        assert 0 < lost <= 5 * 15  # ~11 rows a page
        original = {e.seq: e for e in events}
        assert all(original[seq].payload == e.payload for seq, e in stored.items())
        assert salvage.salvaged == len(stored)
        pending = {e.seq for e in box}
        assert {s for s in stored if s > 500} <= pending
        assert not {s for s in stored if s <= 500} & pending  # delivered stay delivered
        # The report: the new file's first event, critical, sent first.
        report = next(iter(box))
        body = report.body()
        assert (report.seq, report.priority) == (2001, 0)
        assert (body["sensor"], body["kind"], body["state"]) == ("outbox", "health", "salvaged")
        assert body["moved_to"] == str(moved) and body["salvaged"] == len(stored)
        assert box.describe()["state"] == "salvaged"
        assert box.append(draft(9)).seq == 2002
        stats = box.stats()
        assert stats.pending == len(pending) + 1
    # The new file is sound and opens without another salvage.
    with Outbox.open(tmp_path, DEVICE) as box:
        assert box.salvage is None and box.describe() == {"state": "ok"}
        assert len(corrupt_copies(tmp_path)) >= 1


def test_a_file_cut_short_keeps_what_its_first_part_holds(tmp_path: Path) -> None:
    stream, _ = filled(tmp_path, 2000)
    path = tmp_path / FILENAME
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)
    with Outbox.open(tmp_path, DEVICE) as box:
        salvage = box.salvage
        assert salvage is not None
        held = {e.seq for e in box.stored(1, 2000)}
        assert 0 < len(held) < 2000
        assert salvage.pending == len(held)
        if salvage.stream_kept:
            assert box.stream == stream and box.last_seq >= 2001
        else:  # the counter was in the lost half: a new stream, numbered after the rows
            assert box.stream != stream and salvage.first_seq > max(held)


def test_a_file_that_is_not_a_database_is_moved_aside_and_replaced(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(b"this is not a database, it is a shopping list" * 50)
    with Outbox.open(tmp_path, DEVICE) as box:
        salvage = box.salvage
        assert salvage is not None
        assert (salvage.salvaged, salvage.stream_kept, salvage.previous_stream) == (0, False, None)
        assert "not a database" in salvage.reason
        assert [e.body()["state"] for e in box] == ["salvaged"]
    (moved,) = corrupt_copies(tmp_path)
    assert moved.read_bytes().startswith(b"this is not a database")


def test_an_unreadable_counter_means_a_new_stream_after_the_salvaged_seqs(
    tmp_path: Path,
) -> None:
    stream, _ = filled(tmp_path, 500)
    path = tmp_path / FILENAME
    smash(path, [root_page(path, "meta")])
    with Outbox.open(tmp_path, DEVICE) as box:
        salvage = box.salvage
        assert salvage is not None and not salvage.stream_kept
        assert salvage.previous_stream == stream  # read from the salvaged payloads
        assert box.stream != stream
        assert salvage.pending == 500 and salvage.first_seq == 501
        # The salvaged events keep their identity (old stream, old seq) for consumers.
        old = [e for e in box if e.sensor == "s"]
        assert {e.body()["stream"] for e in old} == {stream}
        new = box.append(draft(1))
        assert new.seq == 502 and new.body()["stream"] == box.stream


def test_an_unreadable_pending_table_sends_everything_again(tmp_path: Path) -> None:
    filled(tmp_path, 300, acked=200)
    path = tmp_path / FILENAME
    smash(path, [root_page(path, "pending")])
    with Outbox.open(tmp_path, DEVICE) as box:
        salvage = box.salvage
        assert salvage is not None and salvage.stream_kept
        # Which were delivered is unknown: all are pending again (duplicates, not losses).
        assert salvage.pending == 300 and salvage.kept == 0


def test_the_newest_commits_in_the_wal_are_salvaged_too(tmp_path: Path) -> None:
    """A crash leaves commits in the WAL; the main file's pages then go bad."""
    live, crashed = tmp_path / "live", tmp_path / "crashed"
    box = Outbox.open(live, DEVICE)
    box._conn.execute("PRAGMA wal_autocheckpoint=0")  # everything below stays in the WAL
    first = box.commit([draft(n) for n in range(300)])
    box._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    later = box.commit([draft(n) for n in range(300, 400)])
    crashed.mkdir()
    for name in os.listdir(live):  # what a kill -9 leaves: the file and its WAL
        shutil.copy(live / name, crashed / name)
    box.close()
    assert (crashed / f"{FILENAME}-wal").stat().st_size > 0
    path = crashed / FILENAME
    smash(path, leaf_pages(path, "events")[:2])
    with Outbox.open(crashed, DEVICE) as salvaged:
        assert salvaged.salvage is not None
        held = {e.seq for e in salvaged.stored(1, 400)}
        assert {e.seq for e in later} <= held  # from the WAL
        assert len(held) > len(first) + len(later) - 2 * 15
    moved = [p.name for p in corrupt_copies(crashed)]
    assert any(name.endswith("-wal") for name in moved)  # the WAL went aside with it


def test_the_birth_message_says_the_outbox_was_salvaged(tmp_path: Path) -> None:
    (tmp_path / FILENAME).write_bytes(b"\0" * 100 + b"garbage" * 1000)
    with Outbox.open(tmp_path, DEVICE) as box:
        described = box.describe()
    assert described["state"] == "salvaged"
    assert json.loads(json.dumps(described)) == described  # goes in the birth JSON


@pytest.mark.parametrize("seed", range(5))
def test_random_damage_never_crashes_the_open(tmp_path: Path, seed: int) -> None:
    filled(tmp_path, 800, acked=300)
    path = tmp_path / FILENAME
    pages = path.stat().st_size // PAGE
    rng = random.Random(seed)
    smash(path, rng.sample(range(2, pages + 1), k=min(8, pages - 1)), seed)
    with Outbox.open(tmp_path, DEVICE) as box:
        # Whatever happened, the outbox works and reports itself.
        event = box.append(draft(1))
        assert event.seq == box.last_seq
        stats = box.stats()
        assert stats.pending >= 1
    with Outbox.open(tmp_path, DEVICE) as box:
        assert box.salvage is None


def test_the_runtime_reports_a_salvage_in_its_birth_and_upstream(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / FILENAME).write_bytes(b"SQLite format 3\0" + b"\xff" * 8000)  # a wrecked header
    subscriber = mqtt_subscriber(mosquitto.url, "edgeline/e2e-01/#")
    rig = Rig(state, mosquitto.url)
    try:
        rig.run_until(3.0)
        assert rig.runtime.drain(timeout=20.0)
        got = subscriber.wait_for(
            lambda ms: any(b'"salvaged"' in m.payload and "/events/" in m.topic for m in ms)
        )
        birth = next(json.loads(m.payload) for m in got if m.topic.endswith("/status"))
        assert birth["outbox"]["state"] == "salvaged"
        report = next(json.loads(m.payload) for m in got if "/events/health/" in m.topic)
        assert (report["sensor"], report["severity"], report["seq"]) == ("outbox", "critical", 1)
        assert report["moved_to"].startswith(str(state / FILENAME) + ".corrupt-")
    finally:
        rig.runtime.close()


@pytest.mark.parametrize("name", ["plain", "a#b", "what?", "100%", "x%20y", "p#q?r%s"])
def test_uri_characters_in_the_state_dir_do_not_break_the_check_or_the_salvage(
    tmp_path: Path, name: str
) -> None:
    directory = tmp_path / name
    stream, events = filled(directory, count=50)
    with Outbox.open(directory, DEVICE) as box:  # the read-only check runs on this path
        assert (box.stream, box.salvage) == (stream, None)
        assert [e.seq for e in box] == [e.seq for e in events]
    smash(directory / FILENAME, leaf_pages(directory / FILENAME, "events")[:1])
    with Outbox.open(directory, DEVICE) as box:  # and the salvage reads the moved file
        assert box.salvage is not None and box.salvage.salvaged > 0
    assert corrupt_copies(directory)[0].name.startswith(f"{FILENAME}.corrupt-")
