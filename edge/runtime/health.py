"""How the device is doing, read in one place: the figures the heartbeat status, the status
file and the Prometheus metrics share, so that the three agree.

:meth:`Health.figures` takes one reading (:class:`Figures`): the sampling loop's counters
and lateness, each sensor's counts, the outbox's stats, the link's counters, and this
process's CPU time, resident memory and bytes written. Rates are a reader's own
(:class:`Window`): the heartbeat's cover the last heartbeat interval, the status file's its
own; Prometheus takes the counters and computes rates itself.

All time is the runtime's clock, so a simulation reports what a device doing the same work
would: its CPU seconds and bytes per simulated second. Process figures come from procfs
(no disk I/O); bytes written are ``write_bytes`` less ``cancelled_write_bytes`` of
``/proc/self/io``: what this process sent, or will send, to the block layer, counted from
:meth:`Health.start` (the interpreter's own start-up writes are not the runtime's). The
filesystem's journal, written by the kernel's own thread, and the card's internal write
amplification come on top; see docs/integrations.md for what the card life estimate
assumes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.clock import Clock
from edge.outbox.stats import OutboxStats
from edge.outbox.store import Outbox
from edge.runtime.scheduler import Scheduler
from edge.runtime.sensing import SensorRunner
from edge.uplink.link import UplinkStats

SECONDS_PER_DAY = 86_400.0
# card_tbw_per_gb is terabytes per gigabyte: 10^12 / 10^9 bytes written per byte of card.
BYTES_PER_TB_PER_GB = 1_000.0


def cpu_seconds() -> float:
    """CPU time (user + system) of every thread of this process, to the nanosecond
    (CLOCK_PROCESS_CPUTIME_ID: os.times() counts in 10 ms ticks, too coarse for a quiet
    device's minute)."""
    return time.process_time()


def rss_bytes() -> int | None:
    """Resident memory now (not the peak getrusage keeps); None without procfs."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def written_bytes() -> int | None:
    """Bytes this process sent, or will send, to the block layer (``write_bytes`` less
    ``cancelled_write_bytes``: a file truncated or replaced before writeback never reaches
    the disk); None where the kernel keeps no I/O accounting."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            fields = dict(line.split(": ", 1) for line in io if ": " in line)
        return int(fields["write_bytes"]) - int(fields.get("cancelled_write_bytes", 0))
    except (OSError, KeyError, ValueError):
        return None


def filesystem_bytes(path: str) -> int | None:
    """The size of the filesystem holding ``path``: the card's size, near enough, when no
    ``card_bytes`` is configured (a Pi's root partition fills its card)."""
    try:
        vfs = os.statvfs(path)
    except OSError:
        return None
    return vfs.f_blocks * vfs.f_frsize or None


@dataclass(frozen=True)
class SensorFigures:
    readings: int
    faults: int
    degraded: bool
    times_back: int = 0  # readings whose time was before an earlier one's


@dataclass(frozen=True)
class Figures:
    """One reading of the device's health. Counters count from the runtime's start."""

    taken: float  # the runtime clock's monotonic time when read
    uptime_s: float  # on the runtime's clock, since start
    polls: int  # periodic tasks the sampling loop ran: sensor polls mostly
    skipped_polls: int  # whole intervals an overrunning task skipped
    lateness_p99_s: float  # of the last 4,096 polls
    lateness_sum_s: float
    sensors: Mapping[str, SensorFigures]
    outbox: OutboxStats
    queued: int  # drafts in memory, waiting for the next group commit
    link: UplinkStats
    cpu_seconds: float
    rss_bytes: int | None
    written_bytes: int | None
    card_bytes: int | None
    card_tbw_per_gb: float

    @property
    def readings(self) -> int:
        return sum(s.readings for s in self.sensors.values())

    @property
    def write_bytes_per_day(self) -> float | None:
        """Bytes written, extrapolated from the average since start to a day."""
        if self.written_bytes is None or self.uptime_s <= 0:
            return None
        return self.written_bytes / self.uptime_s * SECONDS_PER_DAY

    @property
    def card_endurance_bytes(self) -> float | None:
        """Bytes the card takes before it wears out, by its size and ``card_tbw_per_gb``."""
        if self.card_bytes is None:
            return None
        return round(self.card_bytes * self.card_tbw_per_gb * BYTES_PER_TB_PER_GB)

    @property
    def card_life_days(self) -> float | None:
        """Days a new card lasts at this process's write rate; None when either is unknown
        or nothing was written yet (no rate to extrapolate)."""
        endurance, per_day = self.card_endurance_bytes, self.write_bytes_per_day
        if endurance is None or not per_day:
            return None
        return endurance / per_day


@dataclass(frozen=True)
class Rates:
    """Per-second figures over one reader's window; None for an empty window."""

    loop_rate_hz: float | None
    readings_per_s: float | None
    cpu_percent: float | None  # of one core


@dataclass(frozen=True)
class _Mark:
    """Where a reader's window starts: the counters the rates are taken over."""

    taken: float
    polls: int
    readings: int
    cpu_seconds: float


class Window:
    """A reader's rates: each call covers the time since its previous call (the first,
    since the runtime started). One reader, one thread."""

    def __init__(self) -> None:
        self._last: _Mark | None = None

    def rates(self, figures: Figures) -> Rates:
        now = _Mark(figures.taken, figures.polls, figures.readings, figures.cpu_seconds)
        before = self._last or _Mark(figures.taken - figures.uptime_s, 0, 0, 0.0)
        self._last = now
        elapsed = now.taken - before.taken
        if elapsed <= 0:
            return Rates(None, None, None)
        return Rates(
            loop_rate_hz=(now.polls - before.polls) / elapsed,
            readings_per_s=(now.readings - before.readings) / elapsed,
            cpu_percent=100.0 * (now.cpu_seconds - before.cpu_seconds) / elapsed,
        )


class Health:
    """Reads the figures of one runtime (:class:`Figures`).

    ``figures`` runs on any thread but the sampling one: it takes the outbox's lock, which
    a group commit holds while it waits on the disk. It reads the loop's and the sensors'
    counters without locks (plain integers the sampling thread alone writes).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        scheduler: Scheduler,
        sensors: Mapping[str, SensorRunner],
        outbox: Outbox,
        queued: Callable[[], int],
        link: Callable[[], UplinkStats],
        card_bytes: int | None,
        card_tbw_per_gb: float,
    ) -> None:
        self.clock = clock
        self.scheduler = scheduler
        self.sensors = sensors
        self.outbox = outbox
        self._queued = queued
        self._link = link
        self.card_bytes = card_bytes
        self.card_tbw_per_gb = card_tbw_per_gb
        self.start()

    def start(self) -> None:
        """Count from now: uptime, CPU time and bytes written (the runtime's start)."""
        self._started = self.clock.monotonic()
        self._cpu0 = cpu_seconds()
        self._written0 = written_bytes()

    def figures(self) -> Figures:
        jitter = self.scheduler.jitter()
        sensors = {
            sensor_id: SensorFigures(
                runner.readings, runner.faults, runner.degraded, runner.times_back
            )
            for sensor_id, runner in list(self.sensors.items())
        }
        stats = self.outbox.stats()
        written = written_bytes()
        now = self.clock.monotonic()
        return Figures(
            taken=now,
            uptime_s=max(0.0, now - self._started),
            polls=jitter.polls,
            skipped_polls=jitter.skipped,
            lateness_p99_s=jitter.p99,
            lateness_sum_s=jitter.mean * jitter.polls,
            sensors=sensors,
            outbox=stats,
            queued=self._queued(),
            link=dataclasses.replace(self._link()),  # a copy: the link thread updates it
            cpu_seconds=max(0.0, cpu_seconds() - self._cpu0),
            rss_bytes=rss_bytes(),
            written_bytes=(  # never below 0: a file written before start, truncated since
                None
                if written is None or self._written0 is None
                else max(0, written - self._written0)
            ),
            card_bytes=self.card_bytes,
            card_tbw_per_gb=self.card_tbw_per_gb,
        )


def health_json(figures: Figures, rates: Rates) -> dict[str, Any]:
    """The ``health`` object of the heartbeat status and of ``status.json``: flat, units in
    the names, null for what is not known (no procfs, no card size, an empty window)."""

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    stats, link = figures.outbox, figures.link
    per_day = figures.write_bytes_per_day
    return {
        "uptime_s": round(figures.uptime_s, 3),
        "loop_rate_hz": rounded(rates.loop_rate_hz, 3),
        "readings_per_s": rounded(rates.readings_per_s, 3),
        "lateness_p99_ms": round(figures.lateness_p99_s * 1000, 3),
        "skipped_polls": figures.skipped_polls,
        "degraded_sensors": sorted(k for k, s in figures.sensors.items() if s.degraded),
        "outbox_pending": stats.pending,
        "outbox_oldest_age_s": rounded(stats.oldest_age_s, 3),
        "outbox_queued": figures.queued,
        "outbox_evicted": stats.evicted,
        "link_state": link.state,
        "link_connects": link.connects,
        "link_failovers": link.failovers,
        "cpu_percent": rounded(rates.cpu_percent, 2),
        "rss_bytes": figures.rss_bytes,
        "disk_written_bytes": figures.written_bytes,
        "disk_write_bytes_per_day": None if per_day is None else round(per_day),
        "card_bytes": figures.card_bytes,
        "card_tbw_per_gb": figures.card_tbw_per_gb,
        "card_life_days": rounded(figures.card_life_days, 1),
    }
