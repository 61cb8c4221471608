"""What a fleet's run prints instead of lines for each device: a live line and the totals.

:class:`Totals` adds the devices up into one ``fleet:`` line (readings, events by kind,
what arrived upstream, the worst jitter, power cuts, outboxes not drained) and keeps the
devices that lack something (events missing upstream, an outbox not drained), for the
session to name. :func:`live_line` is the fleet's status line in real-time runs, read from
counters only (the caller's thread; nothing waits on a device).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edge.cloud.sink import StreamState
from edge.sim.console import Console
from edge.sim.simulator import DeviceRun


@dataclass
class Totals:
    """The devices of a fleet, added up one at a time."""

    devices: int = 0
    streams: set[str] = field(default_factory=set)
    readings: int = 0
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    distinct: int = 0
    duplicates: int = 0
    missing: int = 0
    again: int = 0  # sent again from the outboxes
    polls: int = 0
    worst_jitter: float = 0.0  # the worst device's p99, seconds
    crashes: int = 0
    undrained: int = 0
    lacking: list[DeviceRun] = field(default_factory=list)

    def add(self, run: DeviceRun, console: Console, received: StreamState, again: int) -> None:
        missing = len(received.missing(run.last_seq, first=run.first_seq))
        self.devices += 1
        self.streams.add(run.stream)
        self.readings += console.readings
        self.kinds.update(console.events)
        self.distinct += len(received.seqs)
        self.duplicates += received.duplicates
        self.missing += missing
        self.again += again
        self.polls += run.polls
        self.worst_jitter = max(self.worst_jitter, run.jitter_p99)
        self.crashes += run.crashes
        self.undrained += not run.drained
        if missing or not run.drained:
            self.lacking.append(run)

    def line(self) -> str:
        kinds = ", ".join(f"{n} {k}/{sev}" for (k, sev), n in sorted(self.kinds.items()))
        again = f" ({self.again} sent again from the outbox)" if self.again else ""
        crashes = f"; {self.crashes} power cut(s)" if self.crashes else ""
        undrained = f"; {self.undrained} outboxes not drained (events stay stored)"
        return (
            f"fleet: {self.devices} devices, {len(self.streams)} streams; {self.readings}"
            f" readings; {sum(self.kinds.values())} events stored ({kinds or 'none'}); upstream"
            f" received {self.distinct} distinct, {self.duplicates} duplicates, {self.missing}"
            f" missing{again}; sampling jitter p99 {self.worst_jitter * 1000:.2f} ms at worst"
            f" over {self.polls} polls{crashes}{undrained if self.undrained else ''}"
        )


def live_line(
    runs: Sequence[DeviceRun], consoles: Mapping[str, Console], devices: int, every: float,
    last: dict[str, int],
) -> str:  # fmt: skip
    """Devices started and online, readings/s over the last ``every`` seconds (``last``
    keeps the count between calls), events, outbox depth."""
    readings = sum(consoles[run.scenario.config.device.id].readings for run in runs)
    events = online = depth = 0
    for run in runs:
        runtime = run.runtime
        events += runtime.outbox.last_seq
        depth += runtime.outbox.last_seq - runtime.uplink.stats.acked + runtime.recorder.queued
        online += runtime.uplink.online
    rate = (readings - last.get("readings", 0)) / every
    last["readings"] = readings
    return (
        f"live: {len(runs)}/{devices} devices started, {online} online; {rate:.1f} readings/s,"
        f" {events} events, outbox ~{depth} pending"
    )
