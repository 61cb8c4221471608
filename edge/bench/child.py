"""The runtime cases, each run in a fresh interpreter: ``python -m edge.bench.child CASE JSON``.

A fresh process per case keeps its CPU time, memory and disk writes its own (no onnxruntime
left over from another case, no threads of another case), and makes start-up time real.
The result is printed as one JSON line after ``RESULT_MARK``.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.bench import measure

if TYPE_CHECKING:  # imported by the cases that run the rig: ``imports`` must start bare
    from edge.bench.rig import Rig

RESULT_MARK = "BENCH-RESULT "


class ChildFailed(RuntimeError):
    """A case's process failed or printed no result."""


def run_child(case: str, options: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter and return its result."""
    options = {**options, "spawned": time.monotonic()}  # start-up is timed from here
    command = [sys.executable, "-m", "edge.bench.child", case, json.dumps(options)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ChildFailed(f"bench case {case} did not finish within {timeout:g} s") from exc
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            result: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
            return result
    raise ChildFailed(
        f"bench case {case} exited {done.returncode} without a result:\n{done.stderr[-3000:]}"
    )


def _rig(options: dict[str, Any], *, trace: bool = False) -> Rig:
    from edge.bench.rig import Rig, RigSpec

    return Rig(RigSpec(**options["spec"]), trace=trace)


def _jitter(lates: list[float]) -> dict[str, float]:
    return {
        "polls": len(lates),
        "p50_ms": measure.percentile(lates, 0.5) * 1000,
        "p99_ms": measure.percentile(lates, 0.99) * 1000,
        "max_ms": max(lates, default=math.nan) * 1000,
    }


def case_load(options: dict[str, Any]) -> dict[str, Any]:
    """Run the rig: start-up time, then CPU, memory, readings, events and disk writes over a
    measured interval after a warm-up."""
    rig = _rig(options)
    rig.start()
    deadline = time.monotonic() + 30.0
    while rig.watcher.first_reading is None and time.monotonic() < deadline:
        time.sleep(0.001)
    first = rig.watcher.first_reading
    time.sleep(options["warmup"])
    if options.get("checkpoint"):  # start from an empty WAL: the warm-up's pages are not ours
        rig.runtime.outbox.checkpoint()
    readings0, events0 = rig.watcher.readings, rig.watcher.committed_events
    acked0, io0, skipped0 = rig.runtime.uplink.stats.acked, measure.proc_io(), rig.skipped()
    commits0 = rig.runtime.recorder.commits
    meter = measure.CpuMeter()
    time.sleep(options["duration"])
    cpu, wall = meter.cpu_seconds(), time.monotonic() - meter.wall0
    readings = rig.watcher.readings - readings0
    events = rig.watcher.committed_events - events0
    acked = rig.runtime.uplink.stats.acked - acked0
    if options.get("checkpoint"):
        # What was sampled is committed (a run shorter than the bulk window commits nothing
        # by itself), then copied into the database file, which the WAL defers.
        rig.runtime.recorder.flush()
        rig.runtime.outbox.checkpoint()
        events = rig.watcher.committed_events - events0
    commits = rig.runtime.recorder.commits - commits0
    io1 = measure.proc_io()
    rss, hwm = measure.proc_status_mb("VmRSS"), measure.proc_status_mb("VmHWM")
    lates = rig.lateness.between(meter.wall0, meter.wall0 + wall)
    skipped = rig.skipped() - skipped0
    rig.close()
    written = {k: io1[k] - io0[k] for k in ("write_bytes", "wchar") if k in io0 and k in io1}
    return {
        "start_to_first_reading_s": None if first is None else first - options["spawned"],
        "wall_s": wall,
        "cpu_percent": 100.0 * cpu / wall,
        "cpu_us_per_reading": 1e6 * cpu / readings if readings else math.nan,
        "readings": readings,
        "readings_per_s": readings / wall,
        "events": events,
        "events_per_s": events / wall,
        "acked_per_s": acked / wall,
        "commits": commits,
        "rss_mb": rss,
        "peak_rss_mb": hwm,
        "imported": {name: name in sys.modules for name in ("numpy", "onnxruntime")},
        "written": written,
        "jitter": _jitter(lates),
        "skipped_polls": skipped,
    }


def case_latency(options: dict[str, Any]) -> dict[str, Any]:
    """Run the rig with telemetry and return each measured event's reading and commit times
    (monotonic, comparable with the listener process's) by seq, and which were critical."""
    rig = _rig(options, trace=True)
    rig.start()
    time.sleep(options["warmup"])
    start = time.monotonic()
    time.sleep(options["duration"])
    end = time.monotonic()
    rig.close(drain=10.0)
    watcher = rig.watcher
    traces = []
    for seq, sensor, ts, stored in watcher.stored:
        read = watcher.read_at.get((sensor, ts))
        if read is not None and start <= read < end:
            traces.append((seq, read, stored))
    critical = sorted(seq for seq, _, _ in traces if seq in watcher.critical)
    return {"traces": traces, "critical": critical, "wall_s": end - start}


def case_drain(options: dict[str, Any]) -> dict[str, Any]:
    """Leave ``backlog`` events in the outbox, start the rig with the broker up, and time
    the drain while the sampling loop goes on; then sample a while longer as the baseline."""
    backlog = int(options["backlog"])
    fill_s = measure.fill_outbox(options["spec"]["state_dir"], "bench", backlog)
    rig = _rig(options)
    meter = measure.CpuMeter()
    rig.start()
    uplink = rig.runtime.uplink
    deadline = time.monotonic() + options["timeout"]
    while uplink.stats.acked < backlog and time.monotonic() < deadline:
        time.sleep(0.002)
    drained = time.monotonic()
    drain_s, drain_cpu = drained - meter.wall0, meter.percent()
    acked = uplink.stats.acked
    skipped_during = rig.skipped()
    time.sleep(options["after"])
    settled = time.monotonic()
    rig.close()
    return {
        "backlog": backlog,
        "fill_s": fill_s,
        "acked": acked,
        "drain_s": drain_s,
        "events_per_s": min(acked, backlog) / drain_s,
        "cpu_percent": drain_cpu,
        "jitter_draining": _jitter(rig.lateness.between(meter.wall0, drained)),
        "jitter_after": _jitter(rig.lateness.between(drained, settled)),
        "skipped_polls_draining": skipped_during,
        "skipped_polls_after": rig.skipped() - skipped_during,
    }


def case_imports(options: dict[str, Any]) -> dict[str, Any]:
    """How a fresh interpreter's resident set grows as each module is imported, in order."""
    import importlib

    growth = {"python": measure.proc_status_mb("VmRSS")}
    before = growth["python"]
    for name in options["modules"]:
        importlib.import_module(name)
        now = measure.proc_status_mb("VmRSS")
        growth[name] = now - before
        before = now
    growth["total"] = before
    return growth


def case_fleet(options: dict[str, Any]) -> dict[str, Any]:
    """``devices`` simulated devices (the default scenario, virtual clocks) publish for
    ``duration`` simulated seconds and drain their outboxes; what they published."""
    from edge.sim.scenario import load_scenario
    from edge.sim.simulator import Simulator

    overrides = {"storage": {"state_dir": options["state_dir"]},
                 "uplink": {"broker": options["broker"]}}  # fmt: skip
    scenario = load_scenario(None, overrides=overrides)
    meter = measure.CpuMeter()
    runs = Simulator(
        scenario, speed=None, duration=float(options["duration"]), devices=int(options["devices"])
    ).run(drain_timeout=600.0)
    return {
        "devices": len(runs),
        "events": sum(run.last_seq - run.first_seq + 1 for run in runs),
        "drained": sum(run.drained for run in runs),
        "seconds": time.monotonic() - meter.wall0,
        "cpu_seconds": meter.cpu_seconds(),
        "peak_rss_mb": measure.proc_status_mb("VmHWM"),
    }


CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "load": case_load,
    "latency": case_latency,
    "drain": case_drain,
    "imports": case_imports,
    "fleet": case_fleet,
}


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    case, options = argv[0], json.loads(argv[1])
    result = CASES[case](options)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
