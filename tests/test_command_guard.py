"""The replay guard, kept in the state directory: restarts and unsynchronised clocks."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from edge.uplink.command_guard import SEEN, Replayed, ReplayGuard
from edge.uplink.commands import Checker, CommandRefused, Policy, sign

KEY = b"g" * 32
DEVICE = "press-07"
NOW = 1_790_000_000.0
EPOCH = 0.0  # an unsynchronised Pi's idea of the time after boot


def signed(request_id: str, ts: str) -> bytes:
    sig = sign(KEY, DEVICE, "model", request_id, ts, {})
    return json.dumps({"id": request_id, "ts": ts, "args": {}, "sig": sig}).encode()


def checker(state: Path) -> Checker:
    return Checker(DEVICE, Policy(KEY, max_age=300.0), ReplayGuard(state))


def test_a_command_accepted_before_a_restart_is_refused_after_it(tmp_path: Path) -> None:
    captured = signed("promote-1", "2026-09-21T14:13:20.000Z")
    assert checker(tmp_path).check("model", captured, now=NOW, synced=True).id == "promote-1"
    with pytest.raises(CommandRefused, match="replayed"):  # a new process, the same state
        checker(tmp_path).check("model", captured, now=NOW + 10, synced=True)
    mode = stat.S_IMODE((tmp_path / "commands.json").stat().st_mode)
    assert mode == 0o600


def test_with_the_clock_unsynchronised_a_command_must_be_newer_than_the_last(
    tmp_path: Path,
) -> None:
    first = signed("a", "2026-09-21T14:13:20.000Z")
    assert checker(tmp_path).check("model", first, now=EPOCH, synced=False).id == "a"
    # Captured and replayed under a new id is impossible (the sig covers it); replayed
    # as-is after max_age and a restart, with no clock to judge its age:
    with pytest.raises(CommandRefused, match="replayed"):
        checker(tmp_path).check("model", first, now=EPOCH + 1000, synced=False)
    older = signed("b", "2026-09-21T14:13:19.000Z")  # captured earlier, never sent
    with pytest.raises(CommandRefused, match="not newer than the last accepted"):
        checker(tmp_path).check("model", older, now=EPOCH + 1000, synced=False)
    newer = signed("c", "2026-09-21T14:13:21.000Z")
    assert checker(tmp_path).check("model", newer, now=EPOCH + 1000, synced=False).id == "c"


def test_forgotten_ids_raise_a_floor_so_memory_stays_bounded() -> None:
    guard = ReplayGuard(None)
    for i in range(SEEN + 5):
        guard.accept(f"id-{i}", 1000.0 + i)
    assert len(guard.ids) == SEEN and guard.floor == 1004.0
    with pytest.raises(Replayed):
        guard.check("id-0", 1000.0, synced=True, now=1000.0, max_age=300.0)


def test_a_command_that_cannot_be_recorded_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    guard = checker(state)
    (state / "commands.json").mkdir()  # the rename cannot replace a directory
    with pytest.raises(CommandRefused, match="cannot record it against replay"):
        guard.check("model", signed("x", "2026-09-21T14:13:20.000Z"), now=NOW, synced=True)
    # Nothing of it stays: not the id, nor a newest date a later command must beat.
    assert "x" not in guard.guard.ids and guard.guard.newest is None


def test_a_damaged_guard_file_starts_afresh_and_the_age_check_still_holds(
    tmp_path: Path,
) -> None:
    (tmp_path / "commands.json").write_text("{not json")
    old = signed("o", "2026-09-21T13:00:00.000Z")
    with pytest.raises(CommandRefused, match="stale"):
        checker(tmp_path).check("model", old, now=NOW, synced=True)


def test_the_guard_never_writes_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    state = tmp_path / "state"
    state.mkdir()
    (state / ".commands.json.tmp").symlink_to(victim)
    checker(state).check("model", signed("s", "2026-09-21T14:13:20.000Z"), now=NOW, synced=True)
    assert victim.read_text() == "untouched"
    assert json.loads((state / "commands.json").read_text())["ids"] == {"s": NOW}
