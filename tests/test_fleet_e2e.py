"""The cloud side end to end: a fleet of 20 simulated devices through a real Mosquitto into a
throwaway PostgreSQL, by two ``edge sink --share`` processes, through a sink killed with
``kill -9`` and a broker restarted mid-run; every seq of every device's stream is then in
``events`` exactly once, but for the ranges a device reported evicted.

Real parts: Mosquitto with persistence (autosaved every second, and saved on SIGTERM, as a
production broker runs), PostgreSQL from ``tests/postgres.py``, ``edge sink`` as two
processes (``--share ingest``, each with its ``--client-id``, both ``--fill-gaps``), and 20
devices in this process, each the unchanged runtime on simulated hardware on the real clock,
with its own outbox, its own command key (``keys/<device>.key``) and commands enabled.

What happens, each step waiting on a condition, never on a fixed time:

1. A forced gap: ``fleet-005`` starts alone and its first events reach the broker while no
   sink has subscribed, so the broker drops them (the device has their PUBACKs: delivered,
   as far as it knows). The sinks see the gap and ask them back with the signed ``replay``.
2. The two sinks start, then the other 19 devices; ``fleet-013`` has an outbox capped at
   100 events and its link behind a fault proxy, which is cut until the outbox evicts.
3. Sink A is killed with SIGKILL mid-stream. The broker keeps sink A's share of the events
   for its session while sink B stores its own.
4. ``fleet-013``'s link comes back, its outbox drains, its sampling ends (see below).
5. Mosquitto is stopped (SIGTERM: it saves its database) and started again on its port,
   sink A still down. The devices send again what was not acknowledged; sink B's session
   comes back with what was in flight to it, stored already and no longer acknowledgeable
   on the lost connection: stored again as duplicates, left as first stored. Mosquitto 2.0
   restores sessions and what waits for them, and plain subscriptions, but not shared ones
   (the second test pins this), so what the devices publish before sink B has subscribed
   again goes nowhere: the sinks ask that back too.
6. Sink A comes back under its ``--client-id`` to the share the broker kept for it, across
   the restart.
7. Sampling ends, every outbox drains, and the test waits until ``events`` holds each
   device's 1..last_seq less what its own reports name evicted; ``edge sink gaps`` then says
   nothing is missing or lost, and names the evicted ranges.

Why ``fleet-013`` ends before the restart: a device keeps delivered events for replay within
its cap, so at 50 events/s under a cap of 100 it holds the last two seconds only. What it
published into the restarted broker before the sinks subscribed again would be gone from it
by the time it is asked (after ``--grace``), answered "not held" and recorded lost: recorded,
not silent, but not what this test is about.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto, free_port
from edge.cli import main
from edge.clock import RealClock
from edge.cloud.sink import Sink
from edge.cloud.store import open_store
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.linkproxy import LinkProxy
from edge.sim.scenario import parse_scenario
from edge.uplink.replay import replay_range
from tests.brokers import need_mosquitto, publish_many, split_url
from tests.test_sink_store import TOPIC, SinkProcess, count, event, query
from tests.test_sink_watch import scrape
from tests.waiting import wait_until

FLEET = [f"fleet-{n:03d}" for n in range(1, 21)]
GAPPED = "fleet-005"  # starts before any sink: its first events go nowhere
EVICTING = "fleet-013"  # a small outbox, its link cut until it evicts
# Seconds a seq stays missing before the sinks ask it back: longer than the holes between
# the two sinks' commits last, and most often than sink A is down (its share waits in the
# broker; asked back, it would come twice).
GRACE = 8.0

DEVICE = """
[device]
id = "{name}"

[storage]
state_dir = "{state}"
status_interval = 0
{cap}

[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 1.0

[commands]
enabled = true
key_file = "{key}"

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = {interval}
telemetry = true
"""


class Device:
    """One simulated device: the runtime ``edge simulate`` runs, on the real clock (a signed
    command is dated by the sink's clock, and the device judges its age by its own), with
    its own state directory and command key, and ``proxy`` between it and the broker when
    its link is to be cut."""

    def __init__(
        self, root: Path, name: str, broker: str, keys: Path, *, capped: bool = False
    ) -> None:
        self.name = name
        key = keys / f"{name}.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        self.proxy = LinkProxy(*split_url(broker)).start() if capped else None
        text = DEVICE.format(
            name=name,
            state=root / name,
            cap="max_events = 100" if capped else "",
            broker=self.proxy.url if self.proxy else broker,
            key=key,
            interval=0.02 if capped else 0.1,
        )
        scenario = parse_scenario(text, f"{name}.toml", overrides={})
        clock = RealClock(assume_synced=True)
        self.hardware = SimulatedHardware(scenario, clock)
        self.runtime = Runtime(scenario.config, hardware=self.hardware.hardware, clock=clock)
        self.started = False

    def start(self) -> None:
        self.runtime.start()
        self.started = True

    def end_sampling(self) -> int:
        """Stop sampling, wait until the broker has every event; the last seq."""
        self.runtime.scheduler.stop()
        assert self.runtime.sampling_done(30)
        assert self.runtime.drain(60), f"{self.name}: outbox not drained"
        return self.runtime.outbox.last_seq

    def close(self) -> None:
        self.runtime.close(timeout=2)
        self.hardware.close()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Mosquitto with persistence: autosaved every second, saved on SIGTERM."""
    with Mosquitto(
        tmp_path / "broker",
        executable=need_mosquitto(),
        persistence=True,
        extra=["autosave_interval 1"],
    ) as running:
        yield running


@pytest.fixture
def fleet(tmp_path: Path, broker: Mosquitto) -> Iterator[dict[str, Device]]:
    keys = tmp_path / "keys"
    keys.mkdir()
    devices: dict[str, Device] = {}
    try:
        for name in FLEET:
            devices[name] = Device(tmp_path / "state", name, broker.url, keys,
                                   capped=name == EVICTING)  # fmt: skip
        yield devices
    finally:
        for device in devices.values():
            with contextlib.suppress(Exception):
                device.close()


def stored(db: str, device: str) -> list[int]:
    rows = query(db, f"SELECT seq FROM events WHERE device = '{device}' ORDER BY seq")
    return [int(row[0]) for row in rows]


def per_device(db: str) -> dict[str, int]:
    return {str(d): int(n) for d, n in query(db, "SELECT device, COUNT(*) FROM events GROUP BY 1")}


def reported_evicted(db: str, device: str) -> set[int]:
    """The seqs the device's own outbox reports (stored as events) name evicted."""
    seqs: set[int] = set()
    for (payload,) in query(db, f"SELECT payload FROM events WHERE device = '{device}'"
                                " AND sensor = 'outbox' AND kind = 'health'"):  # fmt: skip
        body = json.loads(payload)
        if body.get("state") == "evicted":
            seqs |= seqs_in(body["ranges"])
    return seqs


def gaps_json(db: str, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """``edge sink gaps --db URL --json``: one object per stream."""
    capsys.readouterr()
    assert main(["sink", "gaps", "--db", db, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def seqs_in(ranges: list[list[int]]) -> set[int]:
    return {seq for first, last in ranges for seq in range(first, last + 1)}


def sink_figures(sink: SinkProcess) -> dict[str, int]:
    """SIGTERM, then the figures of its last two lines: stored, duplicates, asked, answered,
    lost."""
    sink.stop()
    text = "".join(sink.output) + sink.expect("gaps back", 30)
    stored_line = re.search(r"stored (\d+) events \((\d+) duplicates\)", text)
    asked_line = re.search(r"asked (\d+) gaps back, (\d+) answered, (\d+) seqs lost", text)
    assert stored_line and asked_line, sink.output
    names = ("stored", "duplicates", "asked", "answered", "lost")
    return dict(zip(names, map(int, stored_line.groups() + asked_line.groups()), strict=True))


@pytest.mark.timeout(300)
def test_a_fleet_through_a_killed_sink_and_a_broker_restart_lands_exactly_once(
    tmp_path: Path,
    broker: Mosquitto,
    fleet: dict[str, Device],
    sinks: list[SinkProcess],
    postgres_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    db = postgres_url
    sink_options = ["--share", "ingest", "--fill-gaps", "--keys", str(tmp_path / "keys"),
                    "--grace", f"{GRACE:g}", "--asks", "10"]  # fmt: skip

    ports: dict[str, int] = {}  # each sink's metrics port, by client id

    def sink(client_id: str) -> SinkProcess:
        ports[client_id] = port = free_port()
        options = ["--client-id", client_id, "--metrics-port", str(port), *sink_options]
        sinks.append(SinkProcess(broker.url, db, *options))
        return sinks[-1]

    def duplicates() -> float:
        return sum(scrape(port)[0]["edgeline_sink_duplicates_total"] for port in ports.values())

    def grows_by(rows: int) -> None:
        target = count(db) + rows
        wait_until(lambda: count(db) >= target, timeout=60)

    # 1. The forced gap: events the broker acknowledged with no sink subscribed.
    gapped = fleet[GAPPED]
    gapped.start()
    wait_until(lambda: gapped.runtime.uplink.stats.acked >= 10, timeout=30)
    withheld = gapped.runtime.uplink.stats.acked  # seqs 1..withheld, at the least

    # 2. Two shared sinks, then the rest of the fleet.
    sink_a, sink_b = sink("sink-a"), sink("sink-b")
    for device in fleet.values():
        if not device.started:
            device.start()
    wait_until(lambda: bool(stored(db, GAPPED)), timeout=30)
    assert stored(db, GAPPED)[0] > withheld, "no gap: the withheld events reached a sink"
    grows_by(500)

    # The evicting device's link is cut (restored below, once its outbox has evicted).
    evicting = fleet[EVICTING]
    assert evicting.proxy is not None
    evicting.proxy.cut()

    # 3. kill -9 one sink mid-stream: the broker keeps its share for its session.
    sink_a.kill()
    grows_by(250)

    # 4. The evicting device's link is back; it drains, and stops sampling.
    wait_until(lambda: evicting.runtime.outbox.stats().evicted >= 50, timeout=60)
    evicting.proxy.restore()
    last = {EVICTING: evicting.end_sampling()}

    # 5. The broker restarts with its database, mid-stream, sink A still down.
    broker.stop()
    assert (broker.workdir / "mosquitto.db").exists()
    broker.start()
    grows_by(250)
    # Missing now: sink A's share, kept for its session, and what the devices published
    # before sink B had subscribed again.
    missing_before_a = sum(len(seqs_in(g["missing"])) for g in gaps_json(db, capsys))

    # 6. Sink A comes back under its id, to what the broker kept for it across the restart.
    sink_a = sink("sink-a")
    grows_by(250)

    # 7. Sampling ends; every outbox drains; every seq lands (asked back where need be).
    for name, device in fleet.items():
        if name != EVICTING:
            last[name] = device.end_sampling()
    evicted_count = evicting.runtime.outbox.stats().evicted
    expected = {name: last[name] - (evicted_count if name == EVICTING else 0) for name in FLEET}
    try:
        wait_until(lambda: per_device(db) == expected, timeout=120)
    except AssertionError:
        found = per_device(db)
        off = {n: (found.get(n), expected[n]) for n in FLEET if found.get(n) != expected[n]}
        gaps = [g for g in gaps_json(db, capsys) if g["device"] in off]
        raise AssertionError(f"(stored, expected) by device: {off}; gaps: {gaps}") from None

    # 8. A redelivery asked by hand: one device publishes ten stored events again. The sinks
    # take them as duplicates; the table does not change (checked below).
    again = fleet[FLEET[0]]
    before = duplicates()
    replayed = replay_range(again.runtime.outbox, again.runtime.config.uplink, first=1, last=10)
    assert replayed.acked == 10
    wait_until(lambda: duplicates() >= before + 10, timeout=30)

    figures_b, figures_a = sink_figures(sink_b), sink_figures(sink_a)

    # Every seq of every stream exactly once, but the evicted ones, which the device named.
    evicted = reported_evicted(db, EVICTING)
    assert len(evicted) == evicted_count > 0
    for name, device in fleet.items():
        want = sorted(set(range(1, last[name] + 1)) - (evicted if name == EVICTING else set()))
        assert stored(db, name) == want, name
        assert query(db, f"SELECT DISTINCT stream FROM events WHERE device = '{name}'") == [
            (device.runtime.outbox.stream,)
        ]
    assert query(db, "SELECT COUNT(*), COUNT(DISTINCT (device, stream, seq)) FROM events") == [
        (sum(expected.values()), sum(expected.values()))
    ]
    # edge sink gaps: nothing missing, nothing lost; the evicted ranges named as such.
    gaps = {g["device"]: g for g in gaps_json(db, capsys)}
    assert set(gaps) == set(FLEET)
    assert all(g["missing"] == [] and g["lost"] == [] for g in gaps.values()), gaps
    assert {name for name, g in gaps.items() if g["evicted"]} == {EVICTING}
    assert seqs_in(gaps[EVICTING]["evicted"]) == evicted
    # The forced gap was asked back and filled; redeliveries were absorbed as duplicates.
    assert stored(db, GAPPED)[:withheld] == list(range(1, withheld + 1))
    assert figures_a["answered"] + figures_b["answered"] >= 1, (figures_a, figures_b)
    assert figures_a["duplicates"] + figures_b["duplicates"] >= 10, (figures_a, figures_b)
    assert figures_a["stored"] > 0 and figures_b["stored"] > 0

    with capsys.disabled():
        rows = sum(expected.values())
        both = Counter(figures_a) + Counter(figures_b)
        print(f"\nfleet e2e: {rows} rows from {len(FLEET)} devices; withheld from the broker"
              f" {withheld} (asked back); evicted {evicted_count}; missing when sink A came"
              f" back {missing_before_a}; sinks after their restarts: stored"
              f" {both['stored']}, duplicates {both['duplicates']}, asked {both['asked']},"
              f" answered {both['answered']}, lost {both['lost']}")  # fmt: skip


def test_a_restarted_mosquitto_keeps_what_waits_for_shared_sinks_but_not_their_subscription(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """What the fleet test relies on, pinned: Mosquitto 2.0 saves and restores the messages
    a persistent session has waiting, shared or not, and the plain subscriptions, but not
    the shared ones: until a shared sink subscribes again, its group gets nothing."""
    shared_db = f"sqlite:///{tmp_path / 'shared.db'}"
    plain_db = f"sqlite:///{tmp_path / 'plain.db'}"

    def sinks() -> list[Sink]:
        return [
            Sink(broker.url, protocol="5", client_id="sink-a", share="ingest",
                 store=open_store(shared_db), track=False),
            Sink(broker.url, protocol="5", client_id="sink-b", share="ingest",
                 store=open_store(shared_db), track=False),
            Sink(broker.url, protocol="5", client_id="plain", store=open_store(plain_db),
                 track=False),
        ]  # fmt: skip

    def close(running: list[Sink]) -> None:
        for sink in running:
            sink.close()  # a clean DISCONNECT: the sessions stay (one week's expiry)
            assert sink.writer is not None
            sink.writer.store.close()

    def publish(seqs: range) -> None:
        publish_many(broker.url, [(TOPIC, event(seq)) for seq in seqs])

    close([sink.start() for sink in sinks()])  # the sessions and their subscriptions
    publish(range(1, 21))  # waiting for the sessions: sink-a's share, sink-b's, plain's
    broker.stop()
    broker.start()
    publish(range(21, 31))  # no sink connected: only the plain subscription came back
    running = [sink.start() for sink in sinks()]
    try:
        publish(range(31, 41))  # subscribed again: to every sink
        wait_until(lambda: count(plain_db) == 40 and count(shared_db) == 30)
    finally:
        close(running)
    shared = [int(row[0]) for row in query(shared_db, "SELECT seq FROM events ORDER BY seq")]
    assert shared == [*range(1, 21), *range(31, 41)]
