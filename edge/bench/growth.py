"""Figure 7: how cost grows with the work.

- sensors: 1, 10, 100 and 1,000 simulated sensors at 1 Hz, each with a threshold rule and
  every reading sent as telemetry (N readings and N events a second), each count in its own
  process: CPU %, readings/s, events/s, and CPU per reading, which should stay flat.
- outbox depth: the outbox holds 0, 1e5 and 1e6 events (a backlog of telemetry) while new
  events flow through it as the recorder and uplink move them: each round commits 100 new
  events with the deletion of the previous 100 in one transaction and claims the next 100.
  Events/s and CPU per event should not depend on the depth.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.bench import measure
from edge.bench.child import run_child
from edge.bench.rig import DEVICE, RigSpec
from edge.events import Draft
from edge.outbox.store import Outbox

BATCH = 100
INFO = 2  # the priority of the flowing events: ahead of the telemetry backlog


def sensors_case(url: str, workdir: Path, count: int, warmup: float, duration: float) -> Any:
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        spec = RigSpec(
            state_dir=str(Path(scratch) / "state"),
            broker=url,
            sensors=count,
            interval=1.0,
            telemetry=True,
            threshold=True,
        )
        options = {"spec": asdict(spec), "warmup": warmup, "duration": duration}
        result = run_child("load", options, timeout=warmup + duration + 120)
    keep = ("cpu_percent", "cpu_us_per_reading", "readings_per_s", "events_per_s", "acked_per_s")
    return {"sensors": count, **{key: result[key] for key in keep}, "jitter": result["jitter"]}


def flow(outbox: Outbox, seconds: float) -> dict[str, float]:
    """Move events through the outbox for ``seconds``: commit + delete, claim."""
    template = measure.drafts(BATCH, kind="state")  # kind "state", severity info: priority 2
    cursor = {INFO: outbox.last_seq}
    acked: list[int] = []
    moved = 0
    meter = measure.CpuMeter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch: list[Draft] = template
        outbox.commit(batch, acked)
        claimed = outbox.claim(BATCH, after=cursor)
        for event in claimed:
            cursor[event.priority] = event.seq
        acked = [event.seq for event in claimed]
        moved += len(batch)
    wall = time.monotonic() - meter.wall0
    return {
        "events_per_s": moved / wall,
        "cpu_us_per_event": 1e6 * meter.cpu_seconds() / moved if moved else math.nan,
    }


def depth_cases(workdir: Path, depths: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    found = []
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        state = str(Path(scratch) / "state")
        stored = 0
        for depth in depths:
            fill_s = measure.fill_outbox(state, DEVICE, depth - stored) if depth > stored else 0.0
            stored = depth
            with Outbox.open(state, DEVICE) as outbox:  # durability full, the default
                pending = outbox.stats().pending
                found.append({"depth": depth, "pending": pending, "fill_s": fill_s,
                              **flow(outbox, seconds)})  # fmt: skip
    return found


def run(
    url: str, workdir: Path, *, sensors: tuple[int, ...], depths: tuple[int, ...],
    warmup: float, duration: float, depth_seconds: float,
) -> dict[str, Any]:  # fmt: skip
    by_sensors = [sensors_case(url, workdir, n, warmup, duration) for n in sensors]
    by_depth = depth_cases(workdir, depths, depth_seconds)
    shallow, deep = by_depth[0], by_depth[-1]
    marginal = marginal_costs(by_sensors)
    return {
        "sensors": by_sensors,
        "marginal_us_per_reading": marginal,
        # the last step's cost per added reading over the step before (the first step, from
        # one sensor, is mostly noise): linear is 1.0
        "marginal_growth": (
            marginal[-1]["us"] / marginal[-2]["us"] if len(marginal) >= 2 else math.nan
        ),
        "depth": by_depth,
        "deep_vs_empty_events_per_s": deep["events_per_s"] / shallow["events_per_s"],
        # the cost: CPU per event at the deepest outbox over the empty one's; flat is 1.0
        "deep_vs_empty_cpu_per_event": deep["cpu_us_per_event"] / shallow["cpu_us_per_event"],
    }


def marginal_costs(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CPU per added reading between consecutive sensor counts (one core's microseconds):
    the fixed cost of an idle runtime drops out, and a linear cost gives equal steps."""
    steps = []
    for low, high in itertools.pairwise(cases):
        extra = high["readings_per_s"] - low["readings_per_s"]
        cpu = (high["cpu_percent"] - low["cpu_percent"]) / 100  # core-seconds per second
        steps.append(
            {
                "from": low["sensors"],
                "to": high["sensors"],
                "us": 1e6 * cpu / extra if extra else math.nan,
            }
        )
    return steps
