"""``edge sink --fill-gaps``: the sink asks a running device back the seqs its database is
missing, with the signed ``replay`` command, and records what the device no longer holds.

Real parts: a Mosquitto, a device (an in-process Runtime on a VirtualClock, commands on, its
key in ``keys/cmd-01.key``), a sink storing into SQLite or PostgreSQL. The gap is real: the
device published its first events while no sink was subscribed, so the broker dropped them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.clock import VirtualClock
from edge.cloud.gaps import find_gaps, merge
from edge.cloud.metrics import MetricsServer
from edge.cloud.refill import MAX_BACKOFF, Ask, GapFiller, backoff, coalesce, track
from edge.cloud.sink import Sink
from edge.cloud.store import open_store
from edge.cloud.watch import StreamView, Watch
from edge.cloud.writer import WriterStats
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from tests.brokers import publish
from tests.test_commands_mqtt import DEVICE, KEY_HEX
from tests.test_replay_command import SCENARIO
from tests.test_sink_store import event, query
from tests.test_sink_watch import scrape
from tests.waiting import wait_until


@pytest.fixture
def device(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[Runtime, VirtualClock]]:
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / f"{DEVICE}.key"
    key.write_text(KEY_HEX + "\n")
    key.chmod(0o600)
    text = SCENARIO.format(state=tmp_path / "state", broker=mosquitto.url, key=key)
    scenario = parse_scenario(text, "refill.toml", overrides={})
    clock = VirtualClock()
    runtime = Runtime(scenario.config, hardware=SimulatedHardware(scenario, clock).hardware,
                      clock=clock)  # fmt: skip
    runtime.start()
    try:
        run(runtime, clock, 10)  # published with no sink subscribed: the broker drops them
        yield runtime, clock
    finally:
        runtime.close(timeout=2)


def run(runtime: Runtime, clock: VirtualClock, seconds: int) -> None:
    """``seconds`` more readings, each a telemetry event, all acknowledged by the broker."""
    probe = runtime.sensors["probe"]
    start = probe.readings
    for second in range(1, seconds + 1):
        clock.advance(1.0)
        wait_until(lambda: probe.readings >= start + second)  # noqa: B023 - waited for at once
    wait_until(lambda: runtime.outbox.stats().pending == 0)


def stored(url: str) -> list[int]:
    rows = query(url, f"SELECT seq FROM events WHERE device = '{DEVICE}' ORDER BY seq")
    return [int(row[0]) for row in rows]


def test_the_sink_asks_a_gap_back_and_records_what_the_device_no_longer_holds(
    device: tuple[Runtime, VirtualClock],
    mosquitto: Mosquitto,
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runtime, clock = device
    store = open_store(db_url)
    with Sink(mosquitto.url, protocol="5", store=store, track=False):
        run(runtime, clock, 5)
        last = runtime.outbox.last_seq
        wait_until(lambda: stored(db_url)[-1:] == [last])
        assert stored(db_url)[0] > 1  # a real gap: what came before the sink is not there
        publish(mosquitto.url, "edgeline/dev-x/events/telemetry/temp", event(1, device="dev-x"))
        publish(mosquitto.url, "edgeline/dev-x/events/telemetry/temp", event(3, device="dev-x"))
        with runtime.outbox._lock:  # as eviction would: seqs 3 and 4 are gone from the file
            runtime.outbox._conn.execute("DELETE FROM events WHERE seq IN (3, 4)")
            runtime.outbox._conn.commit()

        filler = GapFiller(db_url, mosquitto.url, tmp_path / "keys", grace=0.2, timeout=5.0,
                           wall=clock.wall)  # fmt: skip
        with filler:
            wait_until(lambda: stored(db_url) == [s for s in range(1, last + 1) if s not in (3, 4)])
            wait_until(lambda: filler.stats.lost == 2)
        assert filler.stats.no_key == {"dev-x"}  # its gap (seq 2) skipped, counted
        assert filler.stats.refused == 0
    store.close()

    # /metrics says what the filler did, as Prometheus reads it
    counted = open_store(db_url)
    view = StreamView(counted)
    view.load()
    with MetricsServer(Watch(WriterStats(), lambda: 0, view), port=0, filler=filler.stats) as at:
        values, types = scrape(at.port)
    counted.close()
    done = filler.stats
    assert done.asked >= 1 and done.answered >= 1
    assert values["edgeline_sink_replay_requests_total"] == done.asked
    assert values["edgeline_sink_replay_answered_total"] == done.answered
    assert values["edgeline_sink_replay_unanswered_total"] == done.unanswered
    assert values["edgeline_sink_lost_events_total"] == 2
    assert values["edgeline_sink_devices_without_key"] == 1
    assert types["edgeline_sink_lost_events"] == "counter"

    # each seq once, the lost range apart from missing and evicted
    assert query(db_url, f"SELECT COUNT(*), COUNT(DISTINCT seq) FROM events"
                         f" WHERE device = '{DEVICE}'") == [(last - 2, last - 2)]  # fmt: skip
    assert query(db_url, "SELECT device, first, last, reason FROM lost") == [
        (DEVICE, 3, 4, "not held")
    ]
    reader = open_store(db_url)
    gaps = {g.device: g for g in find_gaps(reader)}
    reader.close()
    assert (gaps[DEVICE].missing, gaps[DEVICE].lost, gaps[DEVICE].evicted) == ([], [(3, 4)], [])
    assert (gaps["dev-x"].missing, gaps["dev-x"].lost) == ([(2, 2)], [])
    assert main(["sink", "gaps", "--db", db_url]) == 0
    assert f"{DEVICE} {runtime.outbox.stream}: {last - 2} events to seq {last}; missing none;" \
        " evicted none; lost 3-4" in capsys.readouterr().out  # fmt: skip


def test_fill_gaps_needs_a_database_and_a_key_directory(tmp_path: Path) -> None:
    base = ["sink", "--broker", "mqtt://127.0.0.1:1", "--fill-gaps"]
    assert main(base) != 0
    assert main([*base, "--db", str(tmp_path / "e.db")]) != 0
    assert main([*base, "--db", str(tmp_path / "e.db"), "--keys", str(tmp_path / "no")]) != 0


# --- the bookkeeping ----------------------------------------------------------------------

runs = st.lists(st.tuples(st.integers(1, 200), st.integers(0, 30)), max_size=8).map(
    lambda pairs: merge([(a, a + n) for a, n in pairs])
)


def seqs_of(ranges: Any) -> set[int]:
    return {s for a, b in ranges for s in range(a, b + 1)}


@given(old=runs, missing=runs, attempts=st.integers(0, 5))
def test_track_covers_exactly_the_missing_seqs_and_keeps_each_asks_state(
    old: list[tuple[int, int]], missing: list[tuple[int, int]], attempts: int
) -> None:
    asks = [Ask(a, b, noticed=1.0, due=9.0, attempts=attempts) for a, b in old]
    now = track(asks, missing, now=5.0, grace=2.0)
    assert [(a.first, a.last) for a in now] == sorted((a.first, a.last) for a in now)
    covered = [s for a in now for s in range(a.first, a.last + 1)]
    assert len(covered) == len(set(covered)) and set(covered) == seqs_of(missing)
    for ask in now:
        if seqs_of([(ask.first, ask.last)]) <= seqs_of(old):  # what is left of an old ask
            assert (ask.noticed, ask.due, ask.attempts) == (1.0, 9.0, attempts)
        else:  # newly missing: due a grace period on
            assert (ask.noticed, ask.due, ask.attempts) == (5.0, 7.0, 0)
            assert not seqs_of([(ask.first, ask.last)]) & seqs_of(old)


@given(grace=st.floats(0.01, 100.0), attempts=st.integers(1, 200))
def test_backoff_doubles_up_to_its_cap(grace: float, attempts: int) -> None:
    assert backoff(attempts, grace) <= MAX_BACKOFF
    assert backoff(attempts + 1, grace) >= backoff(attempts, grace)
    if grace * 2.0 ** (attempts + 1) <= MAX_BACKOFF:
        assert backoff(attempts + 1, grace) == 2 * backoff(attempts, grace)


@given(missing=runs, bridge=st.integers(0, 50), span=st.integers(1, 400))
def test_coalesce_groups_close_holes_into_requests_no_wider_than_allowed(
    missing: list[tuple[int, int]], bridge: int, span: int
) -> None:
    asks = [Ask(a, b, noticed=0.0, due=0.0) for a, b in missing if b - a + 1 <= span]
    groups = coalesce(asks, bridge=bridge, span=span)
    assert [ask for group in groups for ask in group] == asks  # each ask once, in order
    for group in groups:
        assert group[-1].last - group[0].first + 1 <= span
        assert all(b.first - a.last - 1 <= bridge for a, b in itertools.pairwise(group))
    for before, after in itertools.pairwise(groups):  # a group ends only where it must
        gap = after[0].first - before[-1].last - 1
        assert gap > bridge or after[0].last - before[0].first + 1 > span
