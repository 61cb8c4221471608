"""The benchmark: edgeline's speed and footprint, side by side with what a user would
otherwise write, every figure in one run (``edge bench``, ``tools/bench.py``).

One module per figure group; ``run`` starts a Mosquitto of its own on a free loopback port,
runs the figures asked for, checks the performance budgets (docs/performance.md) and
returns everything as one JSON-ready dict. ``smoke`` runs every figure on tiny sizes in
seconds: it keeps the benchmark working in the test suite, and its figures mean nothing.

Importing this package is cheap; the figures import what they need when they run.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

FIGURES = (
    "throughput", "latency", "drain", "steady", "wear", "models", "growth", "link", "ingest",
)  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does: the full run, or the smoke run."""

    events: int = 50_000
    naive_events: int = 5_000
    rounds: int = 3
    latency_rates: tuple[int, ...] = (100, 1000)
    latency_windows: tuple[int, ...] = (0, 100)
    latency_seconds: float = 5.0
    warmup: float = 2.0
    backlog: int = 100_000
    after_drain: float = 3.0
    steady_seconds: float = 20.0
    wear_seconds: float = 20.0
    calls: int = 20_000
    adaptive_readings: int = 100_000
    adaptive_early: int = 10_000
    sensors: tuple[int, ...] = (1, 10, 100, 1000)
    growth_seconds: float = 5.0
    depths: tuple[int, ...] = (0, 100_000, 1_000_000)
    depth_seconds: float = 3.0
    link_readings: int = 200_000
    link_blocks: int = 4_000  # of 250 samples: a million
    ingest_devices: int = 1_000
    ingest_seconds: float = 600.0  # simulated, per device: ~315,000 events from 1,000 devices


SMOKE = Sizes(
    events=2_000,
    naive_events=200,
    rounds=1,
    latency_windows=(0,),
    latency_seconds=0.6,
    warmup=0.3,
    backlog=2_000,
    after_drain=0.3,
    steady_seconds=0.6,
    wear_seconds=0.6,
    calls=200,
    adaptive_readings=2_000,
    adaptive_early=200,
    sensors=(1, 10, 100),
    growth_seconds=1.1,  # sensors poll at 1 Hz: at least one round of polls
    depths=(0, 1_000, 5_000),
    depth_seconds=0.3,
    link_readings=2_000,
    link_blocks=20,
    ingest_devices=3,
    ingest_seconds=20.0,
)


class BenchError(RuntimeError):
    """The benchmark could not run (an unknown figure); no Mosquitto is BrokerUnavailable."""


def run(
    *,
    smoke: bool = False,
    only: tuple[str, ...] = FIGURES,
    directory: str | None = None,
    log: TextIO | None = None,
) -> dict[str, Any]:
    """Run the figures named in ``only``; return figures, budgets and the machine."""
    from edge.bench import measure, report
    from edge.bench.mosquitto import Mosquitto

    unknown = [name for name in only if name not in FIGURES]
    if unknown:
        raise BenchError(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(FIGURES)}")
    sizes = SMOKE if smoke else Sizes()
    out = log or sys.stderr
    machine = measure.machine()
    workdir = Path(tempfile.mkdtemp(prefix="edgeline-bench-", dir=directory))
    figures: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    started = time.monotonic()
    try:
        with Mosquitto(workdir / "mosquitto", log=False) as broker:
            steps = _steps(broker.url, broker.pid, workdir, sizes)
            for name in FIGURES:
                if name not in only:
                    continue
                print(f"edge bench: {name} ...", file=out, flush=True)
                began = time.monotonic()
                figures[name] = steps[name]()
                seconds[name] = round(time.monotonic() - began, 1)
                print(f"edge bench: {name} done in {seconds[name]:.1f} s", file=out, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    verdicts = report.verdicts(figures)
    return {
        "mode": "smoke" if smoke else "full",
        "machine": machine,
        "load_average_after": measure.load_average(),
        "seconds": {"total": round(time.monotonic() - started, 1), **seconds},
        "figures": figures,
        "budgets": [v.as_json() for v in verdicts],
        "table": report.table(figures, verdicts),
    }


def _steps(
    url: str, broker_pid: int | None, workdir: Path, s: Sizes
) -> dict[str, Callable[[], Any]]:
    from edge.bench import detectors, drain, growth, ingest, latency, link, steady, throughput, wear

    return {
        "throughput": lambda: throughput.run(
            url, workdir, events=s.events, naive_events=s.naive_events, rounds=s.rounds
        ),
        "latency": lambda: latency.run(
            url,
            workdir,
            rates=s.latency_rates,
            windows=s.latency_windows,
            warmup=min(s.warmup, 1.0),
            duration=s.latency_seconds,
        ),
        "drain": lambda: drain.run(url, workdir, backlog=s.backlog, after=s.after_drain),
        "steady": lambda: steady.run(url, workdir, warmup=s.warmup, duration=s.steady_seconds),
        "wear": lambda: wear.run(url, workdir, warmup=s.warmup, duration=s.wear_seconds),
        "models": lambda: detectors.run(
            workdir, calls=s.calls, readings=s.adaptive_readings, early=s.adaptive_early
        ),
        "growth": lambda: growth.run(
            url,
            workdir,
            sensors=s.sensors,
            depths=s.depths,
            warmup=s.warmup,
            duration=s.growth_seconds,
            depth_seconds=s.depth_seconds,
        ),
        "link": lambda: link.run(workdir, readings=s.link_readings, blocks=s.link_blocks),
        "ingest": lambda: ingest.run(
            url, broker_pid, workdir, devices=s.ingest_devices, duration=s.ingest_seconds
        ),
    }


__all__ = ["FIGURES", "SMOKE", "BenchError", "Sizes", "run"]
