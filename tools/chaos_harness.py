"""Chaos harness: a real Mosquitto, a TCP fault proxy, `edge simulate` as a separate process
and an independent witness subscriber; faults on demand; the delivery guarantee checked.

    broker (Mosquitto, real files) <── LinkProxy (cut, blackhole, delay) <── edge simulate
          └──> Witness (persistent session, started first)                 (state dir on disk)

``ChaosRig`` is a context manager. Its faults: ``broker_outage`` (stop and start, with or
without persistence), ``kill`` (SIGKILL the runtime, check the outbox on disk, restart it on
the same state directory), ``kill_in_outage`` (a device that dies and boots while the broker
is down), ``cut``, ``blackhole`` and ``slow`` on the link. ``finish`` ends the faults, lets
the backlog drain, stops the runtime with SIGTERM, lets a last run drain what was left and
checks the witness's arrivals against the outbox (``chaos_witness.check_delivery``).

The device's side (its load, its process, what a kill leaves on disk) is in
tools/chaos_device.py; the witness and the check in tools/chaos_witness.py. The broker is
``edge.bench.mosquitto.Mosquitto``, the launcher the tests and ``edge bench`` use too; without
mosquitto installed, ``ChaosRig`` raises its ``BrokerUnavailable``.
tests/test_chaos.py runs short seeded versions in CI; tools/soak.py runs a long one.
"""

from __future__ import annotations

import random
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from edge.bench.mosquitto import BrokerUnavailable, Mosquitto
from edge.outbox.store import FILENAME, Outbox
from edge.sim.linkproxy import LinkProxy
from tools.chaos_device import (
    DEVICE,
    PREFIX,
    DiskCheck,
    EdgeProcess,
    Load,
    inspect_outbox,
    outbox_stats,
    pending_seqs,
    wait_for_a_write,
)
from tools.chaos_witness import Arrival, Delivery, Witness, check_delivery, evictions


@dataclass(frozen=True)
class Sample:
    """The outbox as the monitor saw it."""

    at: float  # time.monotonic()
    last_seq: int
    pending: int


@dataclass
class Recovery:
    """A fault's end: when, and the outbox's last seq then (to measure the drain after)."""

    kind: str
    at: float
    last_seq: int
    broker_restarted: bool


@dataclass
class ChaosReport:
    """Everything a chaos run measured; ``problems`` empty means the guarantee held."""

    seed: int
    seconds: float
    uptime: float  # seconds the runtime ran
    delivery: Delivery
    kills: int
    outages: dict[str, int]
    max_backlog: int
    drain_rates: list[float]
    integrity_checks: int
    torn_commits: int
    problems: list[str]
    timeline: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        rates = sorted(self.drain_rates)
        return {
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "runtime_uptime": round(self.uptime, 1),
            **self.delivery.as_json(),
            "event_rate": round(self.delivery.last_seq / self.uptime, 1) if self.uptime else 0,
            "kills": self.kills,
            "outages": self.outages,
            "max_backlog": self.max_backlog,
            "drain_rate_median": round(rates[len(rates) // 2]) if rates else None,
            "drain_rate_min": round(rates[0]) if rates else None,
            "integrity_checks": self.integrity_checks,
            "kills_inside_a_commit": self.torn_commits,
            "problems": self.problems,
        }

    def summary(self) -> str:
        figures = self.as_json()
        return (
            f"seed {self.seed}: {figures['events']} events in {figures['seconds']} s"
            f" ({figures['event_rate']}/s while up), {self.kills} kill -9, outages {self.outages};"
            f" received {figures['distinct_received']} distinct, {figures['duplicates']}"
            f" duplicates ({figures['resent_by_device']} re-sent by the device, at most"
            f" {figures['most_resent_in_one_session']} in one session,"
            f" {figures['redelivered_by_broker']} redelivered by the broker), evicted"
            f" {figures['evicted']}, lost by a non-persistent broker"
            f" {figures['lost_by_broker']}, loss {figures['loss']}; max backlog"
            f" {self.max_backlog}, drain rate median {figures['drain_rate_median']}/s"
            f" (min {figures['drain_rate_min']}/s); {self.integrity_checks} outbox checks"
            f" after kill -9 ({self.torn_commits} inside a commit)"
            + ("" if self.ok else "\nPROBLEMS:\n  " + "\n  ".join(self.problems))
        )

    def explain(self) -> str:
        """For a failure message: the summary, then what happened when."""
        return self.summary() + "\ntimeline:\n  " + "\n  ".join(self.timeline)


class ChaosRig:
    """A broker, a proxy, a witness and the runtime, with faults on demand."""

    def __init__(
        self,
        workdir: Path | None = None,
        *,
        load: Load | None = None,
        seed: int = 0,
        persistence: bool = True,
        monitor_every: float = 0.25,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.load = load or Load()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="edgeline-chaos-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state_dir = self.workdir / "state"
        try:
            self.broker = Mosquitto(self.workdir / "mosquitto", persistence=persistence)
        except BrokerUnavailable:
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self.proxy = LinkProxy(self.broker.host, self.broker.port)
        self.witness = Witness(
            self.broker.host, self.broker.port, prefix=PREFIX, device=DEVICE,
            client_id=f"chaos-witness-{secrets.token_hex(4)}",
        )  # fmt: skip
        scenario = self.workdir / "chaos.toml"
        scenario.write_text(self.load.scenario(), encoding="utf-8")
        self.edge = EdgeProcess(scenario, self.state_dir, "", self.workdir / "edge.log")
        self.monitor_every = monitor_every
        self.samples: list[Sample] = []
        self.recoveries: list[Recovery] = []
        self.timeline: list[str] = []
        self.problems: list[str] = []
        self.kills = 0
        self.outages: dict[str, int] = {}
        self.integrity_checks = 0
        self.torn_commits = 0  # kills that left an unfinished transaction in the WAL
        self.broker_may_lose: set[int] = set()
        self.stream = ""
        self._last_disk_seq = 0
        self._t0 = time.monotonic()
        self._lock = threading.Lock()  # the monitor reads the outbox only while the edge runs
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> ChaosRig:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        self.broker.start()
        self.witness.start()  # first: it must see everything the device ever sends
        self.proxy.start()
        self.edge.broker = self.proxy.url
        self.edge.start()
        self.note(f"started: broker {self.broker.url}, proxy {self.proxy.url}, seed {self.seed}")
        self._monitor = threading.Thread(target=self._watch, name="chaos-monitor", daemon=True)
        self._monitor.start()

    def close(self) -> None:
        self._stop.set()
        if self._monitor is not None:
            self._monitor.join(5)
        self.edge.kill()
        self.witness.close()
        self.proxy.close()
        self.broker.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def note(self, text: str) -> None:
        self.timeline.append(f"{time.monotonic() - self._t0:7.2f} s  {text}")

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    # -- the outbox, seen from outside ------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(self.monitor_every):
            sample = self.sample()
            if sample is not None:
                self.samples.append(sample)

    def sample(self) -> Sample | None:
        """The outbox now (library read), or None until the runtime has it open: reading a
        killed runtime's outbox would recover its WAL before the runtime does."""
        with self._lock:
            if not self.edge.has_opened(self.state_dir / FILENAME):
                return None
            try:
                with Outbox.open_existing(self.state_dir) as outbox:
                    stats = outbox.stats()
            except Exception:  # being created, or busy: the next sample will do
                return None
        if not self.stream:
            self.stream = stats.stream
        return Sample(time.monotonic(), stats.last_seq, stats.pending)

    def wait_for_events(self, count: int, timeout: float = 30.0) -> None:
        """Wait until the witness has ``count`` distinct events (the runtime is sending)."""
        if not self.witness.wait_until(lambda a: len(_seqs(a)) >= count, timeout):
            raise AssertionError(f"the witness did not get {count} events in {timeout:g} s")

    def recovered(
        self, kind: str, *, broker_restarted: bool = False, last_seq: int | None = None
    ) -> None:
        """Mark the end of a fault now: the drain after it is measured from here."""
        sample = self.sample() if last_seq is None else None
        if sample is not None:
            self.samples.append(sample)  # the backlog peaks now
        last = sample.last_seq if sample else last_seq or self._last_disk_seq
        self.recoveries.append(Recovery(kind, time.monotonic(), last, broker_restarted))

    # -- faults -----------------------------------------------------------------------------

    def _count(self, kind: str) -> None:
        self.outages[kind] = self.outages.get(kind, 0) + 1

    def broker_outage(self, down: float, *, hold_device: bool = False) -> None:
        """Stop Mosquitto (SIGTERM: with persistence it saves its sessions) and start it.

        With ``hold_device`` (always without persistence) the device's link stays cut until
        the witness has subscribed again: the drain is then seen live, and measured.
        """
        persistent = self.broker.persistence
        hold_device = hold_device or not persistent
        self.note(
            f"broker stop for {down:.1f} s ({'' if persistent else 'no '}persistence"
            f"{', device held off until the witness is back' if hold_device else ''})"
        )
        subscribed = self.witness.subscriptions
        self.broker.stop()
        if hold_device:
            self.proxy.cut()
        if not persistent:
            # What the stopped broker acknowledged but had not passed on is gone with it:
            # that is the broker's loss, not the device's. The device stays off the new
            # broker until the witness has subscribed again, so nothing else is excused.
            at_stop = self.sample()
            received = self.witness.seqs()
            top = at_stop.last_seq if at_stop else self._last_disk_seq
            self.broker_may_lose |= {s for s in range(1, top + 1) if s not in received}
        time.sleep(down)
        self.broker.start()
        self.witness.wait_subscribed(subscribed + 1, 30)
        if hold_device:
            self.proxy.restore()
        self._count("broker")
        self.note("broker up")
        self.recovered("broker", broker_restarted=not hold_device)

    def cut(self, down: float) -> None:
        """The link drops: every connection closed, new ones reset."""
        self.note(f"link cut for {down:.1f} s")
        self.proxy.cut()
        time.sleep(down)
        self.proxy.restore()
        self._count("cut")
        self.recovered("cut")

    def blackhole(self, down: float) -> None:
        """The link goes silent: bytes vanish both ways; only keepalive notices."""
        self.note(f"link blackholed for {down:.1f} s")
        self.proxy.blackhole()
        time.sleep(down)
        self.proxy.restore()
        self._count("blackhole")
        self.recovered("blackhole")

    def slow(self, down: float, delay: float) -> None:
        """A slow link: every chunk arrives ``delay`` seconds late, both ways."""
        self.note(f"slow link ({delay * 1000:.0f} ms each way) for {down:.1f} s")
        self.proxy.delay(delay)
        time.sleep(down)
        self.proxy.delay(0)
        self._count("slow")

    def kill(self, down: float, *, mid_commit: bool = False, timeout: float = 10.0) -> None:
        """SIGKILL the runtime, check what it left on disk, restart it after ``down`` s.

        With ``mid_commit``, the kill waits for the next write to the outbox's WAL and lands
        right after it began: inside a group commit, most of whose pages are still to come.
        """
        wal = self.state_dir / f"{FILENAME}-wal"
        with self._lock:
            written = ""
            if mid_commit:
                written = wait_for_a_write(wal, timeout)
            self.edge.kill()
        self.kills += 1
        self.note(f"kill -9{written}; down {down:.1f} s")
        disk = self.check_disk()
        time.sleep(down)
        self.edge.start()
        self.recovered("kill", last_seq=disk.last_seq)

    def kill_in_outage(self, down: float) -> None:
        """The broker goes down, the runtime dies and boots again before it is back."""
        self.note(f"broker stop, kill -9 and restart inside it, {down:.1f} s")
        subscribed = self.witness.subscriptions
        self.broker.stop()
        time.sleep(down / 3)
        with self._lock:
            self.edge.kill()
        self.kills += 1
        disk = self.check_disk()
        time.sleep(down / 3)
        self.edge.start()
        time.sleep(down / 3)
        self.broker.start()
        self.witness.wait_subscribed(subscribed + 1, 30)
        self._count("broker")
        self.note("broker up")
        self.recovered("kill-in-outage", broker_restarted=True, last_seq=disk.last_seq)

    def check_disk(self) -> DiskCheck:
        """After a kill: the outbox is intact, kept its stream, lost no committed seq, and
        holds every seq the witness has seen (durable before published)."""
        disk = inspect_outbox(self.state_dir, self.workdir / "inspect")
        self.integrity_checks += 1
        self.torn_commits += disk.torn_frames > 0
        received = self.witness.seqs()
        problems = []
        if disk.integrity != "ok":
            problems.append(f"integrity_check after kill -9: {disk.integrity}")
        if self.stream and disk.stream != self.stream:
            problems.append(f"stream changed from {self.stream} to {disk.stream} at a kill")
        self.stream = self.stream or disk.stream
        if disk.last_seq < self._last_disk_seq:
            problems.append(f"last_seq went back from {self._last_disk_seq} to {disk.last_seq}")
        if disk.max_row_seq > disk.last_seq:
            problems.append(f"a row has seq {disk.max_row_seq} > last_seq {disk.last_seq}")
        if received and max(received) > disk.last_seq:
            problems.append(
                f"seq {max(received)} reached the broker but the outbox ends at {disk.last_seq}"
            )
        self._last_disk_seq = max(self._last_disk_seq, disk.last_seq)
        torn = (
            f", {disk.torn_frames} WAL frames of an unfinished commit" if disk.torn_frames else ""
        )
        self.note(
            f"  on disk: last_seq {disk.last_seq}, {disk.pending} pending{torn}, {disk.integrity}"
        )
        self.problems += problems
        return disk

    def random_fault(self, kind: str) -> None:
        """One fault of ``kind`` with a seeded random duration."""
        rng = self.rng
        keepalive = self.load.keepalive
        if kind == "broker":
            self.broker_outage(rng.uniform(1.0, 4.0), hold_device=rng.random() < 0.5)
        elif kind == "kill":
            self.kill(rng.uniform(0.2, 2.0))
        elif kind == "kill-in-outage":
            self.kill_in_outage(rng.uniform(2.0, 5.0))
        elif kind == "cut":
            self.cut(rng.uniform(1.0, 4.0))
        elif kind == "blackhole":
            # Shorter than the keepalive's detection, a blackhole the proxy heals would hand
            # TCP a stream with bytes missing, which no real link does.
            self.blackhole(rng.uniform(2.3, 3.0) * keepalive)
        elif kind == "slow":
            self.slow(rng.uniform(2.0, 4.0), rng.choice([0.02, 0.05, 0.2]))
        else:
            raise ValueError(f"unknown fault {kind!r}")

    # -- the end ----------------------------------------------------------------------------

    def finish(
        self, *, drain_timeout: float = 60.0, resend_bound: int | None = None
    ) -> ChaosReport:
        """End the faults, drain, stop with SIGTERM, drain what is left, check everything."""
        self.proxy.delay(0)
        self.proxy.restore()
        if not self.broker.running:
            self.broker.start()
        self.edge.start()
        caught_up = self.wait_drained(drain_timeout)
        self.note("backlog drained" if caught_up else "backlog NOT drained in time")
        if not caught_up:
            self.problems.append(f"the backlog did not drain within {drain_timeout:g} s")
        with self._lock:
            code = self.edge.terminate()
        self.note(f"SIGTERM: exit {code}")
        if code != 0:
            self.problems.append(f"the runtime exited {code} on SIGTERM")
        last = self.edge.drain_run(drain_timeout)
        self.note(f"drain run: exit {last.returncode}: {last.stdout.strip()[-300:]}")
        if last.returncode != 0 or "not drained" in last.stdout:
            self.problems.append(f"the last run did not drain: {last.stdout}{last.stderr}")
        stats = outbox_stats(self.state_dir)
        self.stream = self.stream or stats["stream"]
        if stats["stream"] != self.stream:
            self.problems.append(f"stream {stats['stream']} at the end, {self.stream} before")
        pending = pending_seqs(self.state_dir)
        last_seq = int(stats["last_seq"])
        expected = set(range(1, last_seq + 1)) - pending - self.broker_may_lose

        def complete(arrivals: list[Arrival]) -> bool:
            got = _seqs(arrivals)
            return expected <= got | _evicted(arrivals)

        self.witness.wait_until(complete, 30)
        arrivals = self.witness.arrivals()
        delivery = check_delivery(
            arrivals,
            device=DEVICE,
            stream=self.stream,
            last_seq=last_seq,
            pending=pending,
            broker_may_lose=self.broker_may_lose,
            resend_bound=resend_bound,
        )
        if stats.get("evicted", 0) != delivery.evicted:
            self.problems.append(
                f"the outbox says {stats.get('evicted')} evicted, health events name"
                f" {delivery.evicted}"
            )
        log = self.edge.log.read_text(encoding="utf-8", errors="replace") + last.stderr
        if "Traceback" in log:
            self.problems.append("a traceback in the runtime's output:\n" + _traceback(log))
        problems = [*self.problems, *delivery.problems]
        self.note(f"end: last_seq {last_seq}, pending {len(pending)}, {stats}")
        return ChaosReport(
            seed=self.seed,
            seconds=self.elapsed(),
            uptime=self.edge.uptime,
            delivery=delivery,
            kills=self.kills,
            outages=dict(self.outages),
            max_backlog=max((s.pending for s in self.samples), default=0),
            drain_rates=self.drain_rates(arrivals),
            integrity_checks=self.integrity_checks,
            torn_commits=self.torn_commits,
            problems=problems,
            timeline=self.timeline,
        )

    def wait_drained(self, timeout: float) -> bool:
        """Wait until the backlog is down to about what a second of sampling adds."""
        live = max(50, int(self.load.rate))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sample = self.sample()
            if sample is not None and sample.pending <= live:
                return True
            time.sleep(0.1)
        return False

    def drain_rates(self, arrivals: list[Arrival]) -> list[float]:
        """Events per second delivered while each backlog drained (first receipts from the
        first one after the recovery to the last of the backlog), where the backlog was
        worth measuring and the broker kept running (a restarted broker first delivers what
        it queued for the witness)."""
        first: dict[int, float] = {}
        for arrival in arrivals:
            body = arrival.body() if "/events/" in arrival.topic else None
            if body is not None and isinstance(body.get("seq"), int):
                first.setdefault(body["seq"], arrival.at)
        rates = []
        for recovery in self.recoveries:
            if recovery.broker_restarted:
                continue
            backlog = [
                at for seq, at in first.items() if seq <= recovery.last_seq and at >= recovery.at
            ]
            if len(backlog) < 100:
                continue
            span = max(backlog) - min(backlog)
            if span > 0:
                rates.append(len(backlog) / span)
        return rates


def _seqs(arrivals: list[Arrival]) -> set[int]:
    seqs = set()
    for arrival in arrivals:
        if "/events/" in arrival.topic:
            body = arrival.body()
            if body is not None and isinstance(body.get("seq"), int):
                seqs.add(body["seq"])
    return seqs


def _evicted(arrivals: list[Arrival]) -> set[int]:
    return evictions(arrivals)[0]


def _traceback(log: str) -> str:
    start = log.index("Traceback")
    return log[max(0, start - 200) : start + 2000]


def fault_plan(rng: random.Random, kinds: Mapping[str, int]) -> list[str]:
    """Each kind the given number of times, in a seeded random order."""
    plan = [kind for kind, count in kinds.items() for _ in range(count)]
    rng.shuffle(plan)
    return plan


__all__ = ["ChaosReport", "ChaosRig", "Load", "fault_plan"]
