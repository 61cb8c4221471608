"""``Outbox.stats`` as someone inspecting a device's outbox sees it: the caps the runtime runs
with (recorded in the file), and an age for the oldest pending event whenever one is."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.clock import VirtualClock
from edge.events import Draft
from edge.outbox.limits import OutboxLimits
from edge.outbox.store import FILENAME, Outbox
from tests.test_outbox_migrations import DEVICE as OLD_DEVICE
from tests.test_outbox_migrations import write_v1

DEVICE = "pi-stats"
WALL0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def draft(mono: float, *, synced: bool = True, wall: float | None = None) -> Draft:
    return Draft("s", "telemetry", "info", 1, mono, WALL0 + mono if wall is None else wall, synced)


def meta(state: Path, key: str) -> str | None:
    conn = sqlite3.connect(state / FILENAME)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


# -- the caps, recorded ------------------------------------------------------------------

LIMITS = OutboxLimits(
    max_bytes=256 * 1024, max_events=5000, critical_reserve=0.2, ttl={1: 60.0, 3: 3600.0}
)


def test_opening_to_run_records_the_caps_that_inspection_then_shows(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE, limits=LIMITS) as box:
        box.append(draft(1.0))
    assert json.loads(meta(tmp_path, "limits") or "") == {
        "max_bytes": 262144,
        "max_events": 5000,
        "critical_reserve": 0.2,
        "ttl": {"warning": 60.0, "telemetry": 3600.0},
        "keep_delivered": True,
    }
    with Outbox.open_existing(tmp_path) as box:
        assert box.limits == LIMITS and box.limits_known
        assert box.stats().max_bytes == 262144
    # Given caps (a config's) win over the recorded ones; inspecting never writes.
    mine = OutboxLimits(max_bytes=1024 * 1024)
    with Outbox.open_existing(tmp_path, limits=mine) as box:
        assert box.stats().max_bytes == 1024 * 1024
    assert OutboxLimits.from_json(meta(tmp_path, "limits") or "") == LIMITS


def test_the_record_follows_the_caps_of_the_last_run(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE, limits=LIMITS):
        pass
    with Outbox.open(tmp_path, DEVICE, limits=OutboxLimits(max_bytes=512 * 1024)):
        pass  # the config changed between runs
    with Outbox.open_existing(tmp_path) as box:
        assert box.stats().max_bytes == 512 * 1024
    with Outbox.open(tmp_path, DEVICE, limits=OutboxLimits()):  # and now has no cap
        pass
    with Outbox.open_existing(tmp_path) as box:
        assert box.limits_known and box.stats().max_bytes == 0


def test_an_outbox_that_recorded_no_caps_says_it_does_not_know(tmp_path: Path) -> None:
    write_v1(tmp_path / FILENAME)  # as edgeline 0.1 left it: no 'limits' in meta
    with Outbox.open_existing(tmp_path, clock=VirtualClock()) as box:
        assert not box.limits_known
        stats = box.stats()
    assert stats.max_bytes is None and stats.as_json()["max_bytes"] is None
    assert "max_bytes            unknown (" in stats.as_text()
    assert meta(tmp_path, "limits") is None  # upgraded in place, but nothing invented
    with Outbox.open(tmp_path, OLD_DEVICE, limits=LIMITS):  # the new runtime starts on it
        pass
    with Outbox.open_existing(tmp_path) as box:
        assert box.stats().max_bytes == LIMITS.max_bytes


def test_a_damaged_record_reads_as_unknown(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE, limits=LIMITS):
        pass
    conn = sqlite3.connect(tmp_path / FILENAME)
    conn.execute("UPDATE meta SET value = '{\"max_bytes\": 1}' WHERE key = 'limits'")
    conn.commit()
    conn.close()
    with Outbox.open_existing(tmp_path) as box:
        assert not box.limits_known and box.stats().max_bytes is None


ttls = st.dictionaries(st.sampled_from([1, 2, 3]), st.floats(1.0, 1e9), max_size=3)


@given(
    st.builds(
        OutboxLimits,
        max_bytes=st.integers(0, 2**40),
        max_events=st.integers(0, 10**9),
        critical_reserve=st.floats(0.0, 0.99),
        ttl=ttls,
        keep_delivered=st.booleans(),
    )
)
def test_limits_round_trip_through_their_record(limits: OutboxLimits) -> None:
    assert OutboxLimits.from_json(limits.to_json()) == limits


@given(st.text(max_size=60) | st.just('{"max_bytes": 1, "ttl": {"critical": 5}}'))
def test_a_record_that_is_not_limits_raises_only_what_the_reader_catches(text: str) -> None:
    try:
        limits = OutboxLimits.from_json(text)
    except (ValueError, KeyError, TypeError, AttributeError):  # what _recorded_limits catches
        return
    assert isinstance(limits, OutboxLimits)


# -- the oldest pending event's age ------------------------------------------------------


def test_the_age_in_this_boot_is_on_the_monotonic_clock(tmp_path: Path) -> None:
    clock = VirtualClock(start_monotonic=100.0, synced=False)
    with Outbox.open(tmp_path, DEVICE, clock=clock) as box:
        box.append(draft(100.0, synced=False))
        clock.advance(42.0)
        stats = box.stats()
    assert (stats.oldest_age_s, stats.oldest_age_basis) == (pytest.approx(42.0), "monotonic")
    assert "oldest_age_s         42.0 (on the monotonic clock of the boot that stored it)" in (
        stats.as_text().splitlines()
    )


def test_across_boots_with_synchronised_clocks_the_age_comes_from_the_timestamp(
    tmp_path: Path,
) -> None:
    with Outbox.open(tmp_path, DEVICE, epoch="boot-1") as box:
        box.append(draft(5.0, wall=WALL0))
    later = VirtualClock(start_wall=WALL0 + 3600.0, synced=True)
    with Outbox.open_existing(tmp_path, clock=later) as box:
        stats = box.stats()
    assert (stats.oldest_age_s, stats.oldest_age_basis) == (pytest.approx(3600.0), "wall clock")


@pytest.mark.parametrize(
    ("stored", "reader"),
    [
        # Stored before the clock synced, in a boot that is over: its ts says nothing.
        (("boot-1", False), VirtualClock(synced=True)),
        # Stored synced, but this clock is not (yet): today's wall time is not known.
        (("boot-1", True), VirtualClock(synced=False)),
        # A simulation's clock: its timestamps are simulated time, whatever this clock says.
        (("virtual-0123", True), VirtualClock(start_wall=WALL0 + 9e6, synced=True)),
    ],
    ids=["stored-unsynced", "reader-unsynced", "simulated"],
)
def test_otherwise_the_age_is_a_lower_bound_not_nothing(
    tmp_path: Path, stored: tuple[str, bool], reader: VirtualClock
) -> None:
    epoch, synced = stored
    with Outbox.open(tmp_path, DEVICE, epoch=epoch) as box:
        for mono in (10.0, 40.0, 130.0):
            box.append(draft(mono, synced=synced))
        box.ack([1])  # the oldest pending is now seq 2, stored at 40
    with Outbox.open_existing(tmp_path, clock=reader) as box:
        stats = box.stats()
    # Before: None whenever the clocks could not say (the case of every simulate run).
    assert (stats.oldest_age_s, stats.oldest_age_basis) == (pytest.approx(90.0), "at least")
    assert stats.as_json()["oldest_age_s"] == 90.0
    assert "(at least: its age when the last event of its boot or simulation was stored)" in (
        stats.as_text()
    )


def test_nothing_pending_has_no_age(tmp_path: Path) -> None:
    with Outbox.open(tmp_path, DEVICE) as box:
        box.ack([box.append(draft(1.0)).seq])
        stats = box.stats()
    assert (stats.oldest_age_s, stats.oldest_age_basis) == (None, None)
    assert "oldest_age_s         - (nothing pending)" in stats.as_text().splitlines()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    boots=st.lists(st.integers(1, 12), min_size=2, max_size=4),
    delivered=st.sets(st.integers(2, 48), max_size=30),
)
def test_the_lower_bound_is_the_last_stored_event_of_the_oldest_ones_boot(
    boots: list[int], delivered: set[int]
) -> None:
    """Boots follow one another in seq order; delivered events are deleted, leaving gaps the
    bisection must step over. The bound is exactly what a full scan finds."""
    with tempfile.TemporaryDirectory() as directory:
        state = Path(directory)
        monos: dict[int, tuple[str, float]] = {}
        limits = OutboxLimits(keep_delivered=False)
        for boot, count in enumerate(boots):
            epoch = f"boot-{boot}"
            with Outbox.open(state, DEVICE, epoch=epoch, durability="normal", limits=limits) as box:
                for i in range(count):
                    mono = 1000.0 * boot + 7.0 * i
                    monos[box.append(draft(mono, synced=False)).seq] = (epoch, mono)
                box.ack([seq for seq in delivered if seq in monos and seq > 1])
        held = {seq: em for seq, em in monos.items() if seq == 1 or seq not in delivered}
        expected = max(mono for epoch, mono in held.values() if epoch == "boot-0")
        with Outbox.open_existing(state, clock=VirtualClock(synced=False)) as box:
            stats = box.stats()
        assert stats.oldest_age_basis == "at least"
        assert stats.oldest_age_s == pytest.approx(expected)  # seq 1 was stored at 0.0
