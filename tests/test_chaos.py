"""The chaos suite (issue 6): the delivery guarantee of DESIGN.md under real faults.

A real Mosquitto, real outbox files, ``edge simulate`` as its own process (killed with
SIGKILL and restarted on the same state directory), a TCP fault proxy on its link, and an
independent witness subscriber started first with a persistent session. Every case ends
the same way (tools/chaos_harness.py, ``ChaosRig.finish``): the backlog drains, SIGTERM
stops the runtime cleanly, a last short run drains what was left, and the witness must
hold every seq 1..last_seq but those reported evicted, each with one payload, first
receipts in seq order within each priority, from one device and stream.

Faults are drawn from a seeded RNG: ``EDGELINE_CHAOS_SEED`` replays a run (the seed is in
every failure message) and ``EDGELINE_CHAOS_ROUNDS`` multiplies the random faults for a
longer local run; CI runs one round, about two minutes in all. tools/soak.py is the long
version. Every case that runs the runtime is marked ``slow``: a quick local run leaves them
out with ``-m 'not slow and not hardware'``.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.events import PRIORITY_CRITICAL, priority_of
from tests.brokers import need_mosquitto
from tools.chaos_device import TELEMETRY, Load
from tools.chaos_harness import ChaosReport, ChaosRig, fault_plan
from tools.chaos_witness import Arrival, Witness

SEED = int(os.environ.get("EDGELINE_CHAOS_SEED", "6"))
ROUNDS = int(os.environ.get("EDGELINE_CHAOS_ROUNDS", "1"))
INFLIGHT = 20  # the uplink's default in-flight window, which the chaos config keeps

Rig = Callable[..., ChaosRig]

pytestmark = pytest.mark.timeout(150 * ROUNDS)  # more rounds, more time


@pytest.fixture
def chaos(tmp_path: Path) -> Iterator[Rig]:
    """Factory: ``chaos(load=..., persistence=...)`` starts a ChaosRig, closed after."""
    need_mosquitto()
    rigs: list[ChaosRig] = []

    def make(**options: Any) -> ChaosRig:
        rig = ChaosRig(tmp_path / f"rig{len(rigs)}", seed=SEED, **options)
        rigs.append(rig)
        rig.start()
        rig.wait_for_events(20)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            rig.close()


def assert_held(report: ChaosReport) -> None:
    print(report.summary())
    assert report.ok, report.explain()


def first_receipts(arrivals: list[Arrival]) -> dict[int, tuple[Arrival, dict[str, Any]]]:
    """seq -> (first arrival, body)."""
    found: dict[int, tuple[Arrival, dict[str, Any]]] = {}
    for arrival in arrivals:
        body = arrival.body() if "/events/" in arrival.topic else None
        if body is not None and isinstance(body.get("seq"), int):
            found.setdefault(body["seq"], (arrival, body))
    return found


def seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# -- everything at once, at random -------------------------------------------------------------


@pytest.mark.slow
def test_random_broker_stops_kills_and_link_faults_lose_nothing(chaos: Rig) -> None:
    # A cap that the longest outages (a blackhole lasts until keepalive notices) overflow.
    rig = chaos(load=Load(storage={"max_bytes": 256 * 1024}))
    kinds = {"broker": 1, "kill": 2, "kill-in-outage": 1, "cut": 1, "blackhole": 1, "slow": 1}
    plan = fault_plan(rig.rng, {kind: count * ROUNDS for kind, count in kinds.items()})
    for kind in plan:
        time.sleep(rig.rng.uniform(0.5, 2.0))  # sampling and sending go on between faults
        rig.random_fault(kind)
    report = rig.finish()
    assert_held(report)
    assert report.kills == 3 * ROUNDS and report.integrity_checks == 3 * ROUNDS
    assert report.delivery.distinct > 1000


# -- item 3: crash safety ------------------------------------------------------------------


@pytest.mark.slow
def test_kill9_at_random_moments_leaves_an_intact_outbox_that_resumes(chaos: Rig) -> None:
    # 500 events/s: group commits and publishes never stop, so random kills land mid-commit
    # and mid-publish. After each: integrity_check on what SIGKILL left, same stream,
    # last_seq never back, every seq the witness has is on disk (durable before published).
    rig = chaos(load=Load(rate=500.0))
    for _ in range(8 * ROUNDS):
        time.sleep(rig.rng.uniform(0.8, 2.0))
        rig.kill(rig.rng.uniform(0.0, 0.5))
    report = rig.finish()
    assert_held(report)
    assert report.integrity_checks == 8 * ROUNDS


@pytest.mark.slow
def test_kill9_inside_a_large_group_commit_leaves_an_intact_outbox(chaos: Rig) -> None:
    # Two seconds of events per group commit (two transactions of 1000): each kill waits
    # for the commit's first write to the WAL and lands while the rest is being written.
    # Between kills, more than a commit window: the first write seen is a group commit,
    # not the start-up's. Kills go on until two of them left the WAL with frames of an
    # unfinished transaction (which SQLite must drop on recovery), at most eight.
    rig = chaos(load=Load(rate=1000.0, alarm_cycles=0.2, commit_window_ms=2000))
    while rig.kills < 8 * ROUNDS and rig.torn_commits < 2 * ROUNDS:
        time.sleep(rig.rng.uniform(2.5, 3.0))
        rig.kill(0.0, mid_commit=True)
    report = rig.finish()
    assert_held(report)
    assert rig.torn_commits >= 1, report.explain()
    assert sum("mid-commit" in line for line in report.timeline) == rig.kills, report.explain()


@pytest.mark.slow
def test_kill9_resends_at_most_the_window_and_one_commit_of_acks(chaos: Rig) -> None:
    # What a kill -9 makes the device send again: the events in flight (the window) and
    # those the broker acknowledged since the last group commit, whose deletions the kill
    # lost: at most a commit window's worth at the sending rate (README, "Delivery
    # guarantee"). A long commit window makes the second term large enough to see.
    rate, window_s = 200.0, 1.0
    rig = chaos(load=Load(rate=rate, alarm_cycles=0.25, commit_window_ms=int(window_s * 1000)))
    for _ in range(3):
        time.sleep(rig.rng.uniform(1.5, 2.5))
        rig.kill(0.2)
    report = rig.finish(resend_bound=INFLIGHT + int(1.5 * rate * window_s))
    assert_held(report)


# -- item 4: outages -------------------------------------------------------------------------


@pytest.mark.slow
def test_broker_restarts_without_persistence_lose_nothing_of_the_devices(chaos: Rig) -> None:
    # A broker without persistence forgets what it acknowledged but had not delivered:
    # the broker's loss, excused by the check only for seqs stored before it stopped. The
    # device resumes by itself and everything it stored since reaches the witness.
    rig = chaos(persistence=False)
    for _ in range(2 * ROUNDS):
        time.sleep(rig.rng.uniform(0.5, 1.5))
        rig.broker_outage(rig.rng.uniform(1.0, 3.0))
    report = rig.finish(resend_bound=INFLIGHT)
    assert_held(report)
    assert report.delivery.lost_by_broker <= 2 * INFLIGHT * ROUNDS


@pytest.mark.slow
def test_after_an_outage_the_backlog_drains_sampling_keeps_its_rate_critical_goes_first(
    chaos: Rig,
) -> None:
    load = Load(rate=100.0, alarm_cycles=2.0)
    rig = chaos(load=load)
    time.sleep(1.0)
    before = rig.sample()
    rig.proxy.cut()
    rig.note("link cut")
    time.sleep(5.0)
    at_restore = rig.sample()
    assert before is not None and at_restore is not None
    rig.proxy.delay(0.04)  # a slow link: 20 in flight per 80 ms round trip
    rig.proxy.restore()
    rig.note("link back, slow")
    rig.recovered("cut")
    assert rig.wait_drained(60), "the backlog did not drain"
    after = rig.sample()
    rig.proxy.delay(0)
    assert after is not None
    report = rig.finish(resend_bound=INFLIGHT)
    assert_held(report)
    first = first_receipts(rig.witness.arrivals())

    # Sampling kept its rate during the outage and during the drain: telemetry's own
    # timestamps (simulated time) say how many readings each simulated second had.
    nominal = 1 / load.telemetry_interval
    for name, low, high in (
        ("outage", before.last_seq, at_restore.last_seq),
        ("drain", at_restore.last_seq, after.last_seq),
    ):
        stamps = sorted(
            seconds(body["ts"])
            for seq, (_, body) in first.items()
            if low < seq <= high and body["sensor"] == TELEMETRY
        )
        assert len(stamps) > 20, (name, len(stamps))
        rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
        assert rate > 0.9 * nominal, f"{name}: {rate:.2f} readings/s, nominal {nominal:.2f}"

    # A critical event made after the link came back overtook the older telemetry.
    backlog_telemetry = [
        arrival.index
        for seq, (arrival, body) in first.items()
        if seq <= at_restore.last_seq and body["kind"] == "telemetry"
    ]
    later_critical = [
        arrival.index
        for seq, (arrival, body) in first.items()
        if seq > at_restore.last_seq
        and priority_of(body["kind"], body["severity"]) == PRIORITY_CRITICAL
    ]
    assert later_critical, "no critical event was made during the drain"
    assert min(later_critical) < max(backlog_telemetry), report.explain()
    assert report.drain_rates, "the drain was not measured"


@pytest.mark.slow
def test_simulate_booted_while_its_broker_is_down_delivers_once_it_is_up(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", executable=need_mosquitto(), persistence=True)
    with broker:  # the witness's persistent session, kept across the broker's absence
        witness = Witness(broker.host, broker.port, prefix="edgeline", device="sim-01",
                          client_id="boot-witness").start()  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "simulate", "--speed", "20", "--duration", "3600",
         "--quiet", "--broker", broker.url, "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.5)  # it runs, storing events, with nothing to send them to
        assert process.poll() is None, process.communicate()
        with broker:
            assert witness.wait_until(lambda a: 1 in _seqs(a), 30)
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=30)
    finally:
        witness.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err


def _seqs(arrivals: list[Arrival]) -> set[int]:
    return set(first_receipts(arrivals))


# -- eviction and metered links (the outbox's cap and the uplink's rate limit) --------------


@pytest.mark.slow
def test_a_small_cap_evicts_telemetry_first_and_reports_every_evicted_seq(chaos: Rig) -> None:
    rig = chaos(load=Load(rate=200.0, storage={"max_bytes": 192 * 1024}))
    rig.cut(8.0)  # ~1600 events, more than the cap holds
    end = rig.sample()  # the last seq of this runtime (the last drain run starts afresh)
    assert end is not None
    report = rig.finish(resend_bound=INFLIGHT)
    assert_held(report)  # every seq arrived or is named in a health event's ranges
    assert report.delivery.evicted > 0, "the cap forced no eviction"
    first = first_receipts(rig.witness.arrivals())
    health = [body for _, body in first.values() if body["kind"] == "health"]
    assert any(body.get("reason") == "cap" for body in health), health
    # Telemetry went first: no alarm event is missing. Within one runtime, each
    # threshold's events alternate active, clear, active... in seq order; an evicted one
    # would break the alternation.
    for threshold in (28.0, 32.0):
        states = [
            body["state"]
            for seq, (_, body) in sorted(first.items())
            if seq <= end.last_seq
            and body["kind"] == "threshold"
            and body.get("threshold") == threshold
        ]
        assert len(states) > 8, (threshold, states)
        assert all(a != b for a, b in itertools.pairwise(states)), (threshold, states)


@pytest.mark.slow
def test_a_metered_link_drains_no_faster_than_max_rate(chaos: Rig) -> None:
    # max_rate is in events per second of the runtime's clock, which simulate scales.
    load = Load(rate=50.0)
    load = Load(rate=50.0, uplink={"max_rate": 200.0 / load.speed})  # 200 real events/s
    rig = chaos(load=load)
    rig.cut(5.0)  # ~250 events of backlog
    back = rig.recoveries[-1]
    report = rig.finish(resend_bound=INFLIGHT)
    assert_held(report)
    # Everything sent while the backlog drained (new events too), per second.
    first = first_receipts(rig.witness.arrivals())
    backlog = [a.at for seq, (a, _) in first.items() if seq <= back.last_seq and a.at >= back.at]
    assert len(backlog) > 100, len(backlog)
    start, end = min(backlog), max(backlog)
    sent = sum(1 for a, _ in first.values() if start <= a.at <= end)
    assert sent / (end - start) < 200.0 * 1.2, f"{sent} events in {end - start:.2f} s"


def test_fault_plans_are_seeded() -> None:
    kinds = {"broker": 2, "kill": 3, "cut": 1}
    one = fault_plan(random.Random(SEED), kinds)
    assert one == fault_plan(random.Random(SEED), kinds)
    assert sorted(one) == sorted(k for k, n in kinds.items() for _ in range(n))
