"""The outbox on real SQLite files: identity, numbering, ordering, transactions, clock fixes."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from edge.clock import VirtualClock
from edge.errors import OutboxError
from edge.events import Draft, format_ts, priority_of
from edge.outbox.inspect import tail
from edge.outbox.store import FILENAME, MIGRATIONS, Outbox, OutboxLimits
from models import Severity

DEVICE = "pi-kitchen"
WALL0 = 1_767_225_600.0


def draft(
    n: int = 0,
    *,
    severity: Severity = "info",
    kind: str = "state",
    synced: bool = True,
    mono: float | None = None,
    wall: float | None = None,
    fields: dict[str, Any] | None = None,
) -> Draft:
    return Draft(
        sensor="s",
        kind=kind,
        severity=severity,
        value=n,
        mono=100.0 + n if mono is None else mono,
        wall=WALL0 + n if wall is None else wall,
        synced=synced,
        fields=fields or {},
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox.open(tmp_path / "state", DEVICE) as box:
        yield box


def pending_seqs(box: Outbox) -> list[int]:
    return [e.seq for e in box.claim(limit=-1)]


# -- the file --------------------------------------------------------------------------


@pytest.mark.parametrize(("durability", "synchronous"), [("full", 2), ("normal", 1)])
def test_file_is_wal_and_synchronous_follows_durability(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    with Outbox.open(tmp_path, DEVICE, durability=durability) as box:
        # synchronous is per connection: ask the outbox's own one.
        conn = box._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == synchronous
        box.append(draft())
    # WAL is a property of the file: a fresh connection sees it too.
    other = sqlite3.connect(tmp_path / FILENAME)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    finally:
        other.close()


def test_close_is_idempotent(tmp_path: Path) -> None:
    box = Outbox.open(tmp_path, DEVICE)
    box.close()
    box.close()


# -- identity and numbering ------------------------------------------------------------------


def test_append_returns_the_stored_event_with_its_seq(outbox: Outbox) -> None:
    first = outbox.append(draft(1, severity="warning", kind="threshold"))
    second = outbox.append(draft(2))
    assert (first.seq, second.seq) == (1, 2)
    assert first.priority == 1 and first.kind == "threshold" and first.sensor == "s"
    body = first.body()
    assert body["seq"] == 1
    assert body["device"] == DEVICE
    assert body["stream"] == outbox.stream
    assert body["value"] == 1
    stored = outbox.claim(limit=-1)
    assert stored == [first, second]
    assert outbox.last_seq == 2


def test_stream_is_fixed_at_creation_and_seq_continues_after_restart(tmp_path: Path) -> None:
    with Outbox.open(tmp_path / "a", DEVICE) as box:
        stream = box.stream
        assert re.fullmatch(r"[0-9a-f]{16}", stream)
        assert [box.append(draft(i)).seq for i in range(3)] == [1, 2, 3]
    with Outbox.open(tmp_path / "a", DEVICE) as again:
        assert again.stream == stream
        assert again.last_seq == 3
        event = again.append(draft(9))
        assert event.seq == 4
        assert event.body()["stream"] == stream
    with Outbox.open(tmp_path / "b", DEVICE) as other:
        assert other.stream != stream
        assert other.append(draft()).seq == 1


def test_seq_is_never_reused_after_the_newest_events_are_acked(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        seqs = [box.append(draft(i)).seq for i in range(5)]
        box.ack(seqs[2:])  # the newest three
        assert box.append(draft()).seq == 6
        box.ack([1, 2, 6])
        assert pending_seqs(box) == []
    with Outbox.open(tmp_path, DEVICE) as box:
        assert box.last_seq == 6
        assert box.append(draft()).seq == 7


def test_another_devices_outbox_is_refused_naming_both(tmp_path: Path) -> None:
    Outbox.open(tmp_path, "pi-garage").close()
    with pytest.raises(OutboxError) as caught:
        Outbox.open(tmp_path, DEVICE)
    assert "pi-garage" in str(caught.value)
    assert DEVICE in str(caught.value)
    with Outbox.open(tmp_path, "pi-garage") as box:  # still usable by its owner
        assert box.device == "pi-garage"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        box.append(draft())
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox.open(tmp_path, DEVICE)


@pytest.mark.slow  # waits out the outbox's 10 s busy timeout
def test_a_locked_file_is_an_outbox_error_and_is_left_alone(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        box.append(draft())
    holder = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the file: not corruption
    try:
        with pytest.raises(OutboxError, match=str(tmp_path)):
            Outbox.open(tmp_path, DEVICE)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sorted(p.name for p in tmp_path.iterdir() if "corrupt" in p.name) == []


# -- claiming and acknowledging ------------------------------------------------------------


def test_claim_orders_by_priority_then_seq_and_skips_excluded(outbox: Outbox) -> None:
    kinds: list[tuple[Severity, str]] = [
        ("info", "telemetry"),  # 1 -> priority 3
        ("info", "state"),  # 2 -> 2
        ("critical", "threshold"),  # 3 -> 0
        ("warning", "anomaly"),  # 4 -> 1
        ("info", "telemetry"),  # 5 -> 3
        ("critical", "threshold"),  # 6 -> 0
        ("info", "health"),  # 7 -> 2
    ]
    for severity, kind in kinds:
        outbox.append(draft(severity=severity, kind=kind))
    assert pending_seqs(outbox) == [3, 6, 4, 2, 7, 1, 5]
    assert [e.priority for e in outbox.claim(limit=-1)] == [0, 0, 1, 2, 2, 3, 3]
    assert [e.seq for e in outbox.claim(limit=3)] == [3, 6, 4]
    assert [e.seq for e in outbox.claim(limit=3, exclude={3, 6, 2})] == [4, 7, 1]
    assert list(outbox) == outbox.claim(limit=-1)


def test_acked_events_are_kept_for_replay_but_never_claimed_again(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        for i in range(4):
            box.append(draft(i))
        box.ack([1, 3])
        assert pending_seqs(box) == [2, 4]
        assert [e.seq for e in box.stored(1, 4)] == [1, 2, 3, 4]
        assert [e.seq for e in tail(tmp_path, 10)] == [1, 2, 3, 4]
        assert [e.seq for e in tail(tmp_path, 10, pending_only=True)] == [2, 4]
        assert [e.seq for e in tail(tmp_path, 1)] == [4]
        stats = box.stats()
        assert (stats.pending, stats.kept, stats.delivered) == (2, 2, 2)


def test_without_keep_delivered_acked_events_are_deleted(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE, limits=OutboxLimits(keep_delivered=False)) as box:
        for i in range(4):
            box.append(draft(i))
        box.ack([1, 3])
        assert [e.seq for e in box.stored(1, 4)] == [2, 4]
        stats = box.stats()
        assert (stats.pending, stats.kept, stats.delivered) == (2, 0, 2)


def test_acked_events_never_come_back(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        for i in range(6):
            box.append(draft(i))
        box.ack([2, 4])
        assert pending_seqs(box) == [1, 3, 5, 6]
        box.ack([2])  # acked twice: no effect, not counted twice
        assert box.stats().delivered == 2
    with Outbox.open(tmp_path, DEVICE) as box:
        assert pending_seqs(box) == [1, 3, 5, 6]
        assert tail(tmp_path, 2, pending_only=True)[-1].seq == 6


def test_delivered_counts_only_the_events_an_ack_deleted(outbox: Outbox) -> None:
    for i in range(4):
        outbox.append(draft(i))
    outbox.ack([1])
    outbox.ack([1, 2, 99])  # 1 already gone, 99 never existed
    assert pending_seqs(outbox) == [3, 4]
    assert outbox.stats().delivered == 2


def test_commit_appends_and_acks_in_one_transaction(outbox: Outbox) -> None:
    for i in range(3):
        outbox.append(draft(i))
    events = outbox.commit([draft(10), draft(11, severity="critical")], acked=[1, 3])
    assert [e.seq for e in events] == [4, 5]
    assert pending_seqs(outbox) == [5, 2, 4]
    stats = outbox.stats()
    assert (stats.last_seq, stats.pending, stats.delivered) == (5, 3, 2)


def test_a_failing_commit_changes_nothing(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        for i in range(3):
            box.append(draft(i))
        # Make the delivery of seq 2 fail *after* the insert and seq 1's delivery ran.
        other = sqlite3.connect(tmp_path / FILENAME, isolation_level=None)
        other.execute(
            "CREATE TRIGGER keep_two BEFORE DELETE ON pending WHEN old.seq = 2"
            " BEGIN SELECT RAISE(ABORT, 'seq 2 is pinned'); END"
        )
        with pytest.raises(sqlite3.DatabaseError, match="pinned"):
            box.commit([draft(10)], acked=[1, 2])
        assert pending_seqs(box) == [1, 2, 3]
        assert box.last_seq == 3
        stats = box.stats()
        assert (stats.last_seq, stats.pending, stats.delivered) == (3, 3, 0)
        other.execute("DROP TRIGGER keep_two")
        other.close()
        assert box.append(draft(11)).seq == 4
    with Outbox.open(tmp_path, DEVICE) as box:
        assert pending_seqs(box) == [1, 2, 3, 4]


def test_stats_as_json(outbox: Outbox) -> None:
    outbox.append(draft(severity="critical"))
    outbox.append(draft(kind="telemetry"))
    outbox.append(draft(kind="telemetry"))
    outbox.ack([2])
    stats = outbox.stats().as_json()
    sizes = [e.size for e in _rows(outbox)]
    assert stats == {
        "stream": outbox.stream,
        "device": DEVICE,
        "last_seq": 3,
        "pending": 2,
        "pending_by_priority": {"critical": 1, "warning": 0, "info": 0, "telemetry": 1},
        "oldest_age_s": stats["oldest_age_s"],
        "delivered": 1,
        "kept": 1,
        "evicted": 0,
        "evicted_by_priority": {"critical": 0, "warning": 0, "info": 0, "telemetry": 0},
        "bytes": sum(sizes),
        "file_bytes": outbox.file_bytes(),
        "max_bytes": 0,
    }
    assert stats["oldest_age_s"] is not None and stats["oldest_age_s"] >= 0
    json.dumps(stats)


class _Row:
    def __init__(self, seq: int, size: int) -> None:
        self.seq, self.size = seq, size


def _rows(box: Outbox) -> list[_Row]:
    conn = sqlite3.connect(box.path)
    try:
        return [_Row(*r) for r in conn.execute("SELECT seq, size FROM events ORDER BY seq")]
    finally:
        conn.close()


def test_oldest_age_is_measured_on_the_clock_of_this_boot(tmp_path: Path) -> None:
    clock = VirtualClock()
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:
        assert box.stats().oldest_age_s is None
        box.append(draft(mono=clock.monotonic()))
        clock.advance(42.0)
        box.append(draft(mono=clock.monotonic()))
        assert box.stats().oldest_age_s == pytest.approx(42.0)
        box.ack([1])
        assert box.stats().oldest_age_s == pytest.approx(0.0)


# -- clock-sync correction -----------------------------------------------------------------


def test_correct_timestamps_restamps_unsynced_rows_of_this_epoch_only(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE, epoch="boot-1") as box:
        old = box.append(draft(1, synced=False, mono=5.0, wall=10.0))
    with Outbox.open(tmp_path, DEVICE, epoch="boot-2") as box:
        a = box.append(draft(2, synced=False, mono=50.0, wall=100.0))
        b = box.append(draft(3, synced=False, mono=60.5, wall=110.5))
        fine = box.append(draft(4, synced=True, mono=61.0, wall=WALL0))
        mono_now, wall_now = 70.0, WALL0 + 1000.0
        assert box.correct_timestamps(mono_now, wall_now) == 2
        rows = {e.seq: e.body() for e in box.claim(limit=-1)}

        for event, mono in ((a, 50.0), (b, 60.5)):
            body = rows[event.seq]
            assert body["synced"] is True
            assert body["ts_corrected"] is True
            assert body["ts"] == format_ts(wall_now - (mono_now - mono))
            # nothing else changed
            expected = {**event.body(), "ts": body["ts"], "synced": True, "ts_corrected": True}
            assert body == expected
        assert rows[b.seq]["ts"] == "2026-01-01T00:16:30.500Z"
        assert rows[old.seq] == old.body()  # another boot's monotonic time says nothing
        assert rows[fine.seq] == fine.body()
        assert box.correct_timestamps(mono_now + 5, wall_now + 5) == 0  # done once
        assert rows == {e.seq: e.body() for e in box.claim(limit=-1)}


def test_delivered_events_keep_the_payload_they_were_delivered_with(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE, epoch="boot-1") as box:
        sent = box.append(draft(1, synced=False, mono=5.0, wall=10.0))
        waiting = box.append(draft(2, synced=False, mono=6.0, wall=11.0))
        box.ack([sent.seq])
        assert box.correct_timestamps(100.0, WALL0) == 1
        stored = {e.seq: e for e in box.stored(1, 2)}
        assert stored[sent.seq].payload == sent.payload  # a replay sends what was sent
        assert stored[waiting.seq].body()["ts_corrected"] is True
        assert box.stats().bytes == sum(r.size for r in _rows(box))


# -- a property: the outbox behaves like a sorted dict of pending events ---------------------

SEVERITY_KINDS = st.tuples(
    st.sampled_from(["info", "warning", "critical"]),
    st.sampled_from(["telemetry", "state", "threshold", "health"]),
)


class OutboxModel(RuleBasedStateMachine):
    """Random appends, acks and restarts against a plain-dict reference model."""

    acked = Bundle("acked")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-model-"))
        self.box = Outbox.open(self.dir, DEVICE, durability="normal")
        self.stream = self.box.stream
        self.pending: dict[int, int] = {}  # seq -> priority
        self.last_seq = 0
        self.delivered = 0

    def teardown(self) -> None:
        self.box.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize()
    def empty(self) -> None:
        assert self.box.stats().last_seq == 0

    @rule(specs=st.lists(SEVERITY_KINDS, max_size=5), acks=st.data())
    def commit(self, specs: list[tuple[Severity, str]], acks: st.DataObject) -> None:
        chosen: list[int] = []
        if bool(self.pending) and acks.draw(st.booleans()):
            chosen = acks.draw(st.lists(st.sampled_from(sorted(self.pending)), unique=True))
        events = self.box.commit(
            [draft(severity=sev, kind=kind) for sev, kind in specs], acked=chosen
        )
        assert [e.seq for e in events] == list(
            range(self.last_seq + 1, self.last_seq + 1 + len(specs))
        )
        for event, (sev, kind) in zip(events, specs, strict=True):
            assert event.priority == priority_of(kind, sev)
            self.pending[event.seq] = event.priority
        self.last_seq += len(specs)
        for seq in chosen:
            del self.pending[seq]
        self.delivered += len(chosen)

    @precondition(lambda self: bool(self.pending))
    @rule(target=acked, data=st.data())
    def ack(self, data: st.DataObject) -> list[int]:
        chosen = data.draw(st.lists(st.sampled_from(sorted(self.pending)), min_size=1, unique=True))
        # Mixed in: seqs that are already gone or were never given; they count for nothing.
        gone = [s for s in range(1, self.last_seq + 3) if s not in self.pending]
        stale = data.draw(st.lists(st.sampled_from(gone), unique=True, max_size=3))
        self.box.ack(chosen + stale)
        for seq in chosen:
            del self.pending[seq]
        self.delivered += len(chosen)
        return chosen

    @rule(again=acked)
    def ack_again(self, again: list[int]) -> None:
        self.box.ack(again)  # already gone: changes nothing, counts nothing

    @rule()
    def reopen(self) -> None:
        self.box.close()
        self.box = Outbox.open(self.dir, DEVICE, durability="normal")
        assert self.box.stream == self.stream

    @rule(limit=st.integers(0, 6), data=st.data())
    def claim(self, limit: int, data: st.DataObject) -> None:
        exclude = set(data.draw(st.lists(st.sampled_from(sorted(self.pending) or [0]))))
        expected = [s for _, s in sorted((p, s) for s, p in self.pending.items())]
        expected = [s for s in expected if s not in exclude][:limit]
        assert [e.seq for e in self.box.claim(limit, exclude)] == expected

    @invariant()
    def matches_the_model(self) -> None:
        expected = sorted((p, s) for s, p in self.pending.items())
        assert [(e.priority, e.seq) for e in self.box.claim(limit=-1)] == expected
        stats = self.box.stats()
        assert stats.last_seq == self.last_seq == self.box.last_seq
        assert stats.pending == len(self.pending)
        by_priority: dict[int, int] = {}
        for p in self.pending.values():
            by_priority[p] = by_priority.get(p, 0) + 1
        assert stats.pending_by_priority == by_priority
        assert stats.delivered == self.delivered
        assert stats.kept == self.delivered  # no cap: every delivered event is kept
        assert stats.stream == self.stream
        assert stats.bytes == sum(r.size for r in _rows(self.box))


TestOutboxModel = OutboxModel.TestCase
TestOutboxModel.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


def test_has_pending_follows_appends_and_acks(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, "dev") as box:
        assert not box.has_pending()
        first = box.append(Draft("s", "telemetry", "info", 1.0, 1.0, 1.0, True))
        assert box.has_pending()
        box.ack([first.seq])
        assert not box.has_pending()


def test_the_outbox_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    with Outbox.open(state, "pi-modes") as box:
        box.append(Draft("s", "telemetry", "info", 1.0, 0.0, 0.0, False, {}))
        assert stat.S_IMODE(state.stat().st_mode) == 0o700  # a directory it made
        made = [p for p in state.iterdir() if p.name.startswith("outbox.")]
        assert {p.name for p in made} >= {"outbox.sqlite3", "outbox.sqlite3-wal",
                                          "outbox.sqlite3-shm"}  # fmt: skip
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in made} == {
            p.name: 0o600 for p in made
        }


def test_an_outbox_left_readable_by_others_is_made_private(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, "pi-modes") as box:
        box.append(Draft("s", "telemetry", "info", 1.0, 0.0, 0.0, False, {}))
    (tmp_path / "outbox.sqlite3").chmod(0o644)  # as an older edgeline left it
    os.chmod(tmp_path, 0o755)  # the user's own directory keeps its mode
    with Outbox.open(tmp_path, "pi-modes") as box:
        assert len(list(box)) == 1
        assert stat.S_IMODE((tmp_path / "outbox.sqlite3").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "outbox.sqlite3-wal").stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
