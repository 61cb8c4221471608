"""Figure 5: flash wear, bytes written per event at 100 events/s, per durability level.

Ten simulated sensors at 10 Hz send every reading as telemetry (100 events/s), with the
default group commit (telemetry waits up to the 1 s bulk window). Each durability level
runs in its own process, whose /proc/self/io counts ``write_bytes`` (bytes sent to the block
device: SQLite's WAL, its checkpoints and the database) and ``wchar`` (bytes passed to
write(), page cache or not). The measured interval starts from an empty WAL and ends with
a flush (what was sampled is committed) and a checkpoint: at 100 events per commit the WAL
takes over a minute to reach SQLite's own checkpoint, so without it a short run would leave
out the copy of every page into the database file, about half of what a steady state
writes.
Where ``write_bytes`` stays 0 (some container file systems) the figure falls back to
``wchar`` and says so.
"""

from __future__ import annotations

import math
import tempfile
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.bench.child import run_child
from edge.bench.rig import RigSpec
from edge.config.device import Durability


def levels() -> tuple[str, ...]:
    """The durability levels the config accepts today."""
    return tuple(str(level) for level in typing.get_args(Durability))


def one(url: str, workdir: Path, durability: str, warmup: float, duration: float) -> Any:
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        spec = RigSpec(
            state_dir=str(Path(scratch) / "state"),
            broker=url,
            sensors=10,
            interval=0.1,
            telemetry=True,
            threshold=False,
            durability=durability,
        )
        options = {
            "spec": asdict(spec),
            "warmup": warmup,
            "duration": duration,
            "checkpoint": True,
        }
        result = run_child("load", options, timeout=warmup + duration + 60)
    events = result["events"]
    written = result["written"]
    block = written.get("write_bytes")
    source = "write_bytes" if block else "wchar (write_bytes is 0 here: no block-layer count)"
    total = block if block else written.get("wchar", math.nan)
    return {
        "events": events,
        "events_per_s": result["events_per_s"],
        "bytes_per_event": total / events if events else math.nan,
        "wchar_per_event": written.get("wchar", math.nan) / events if events else math.nan,
        "commits": result["commits"],
        "events_per_commit": events / result["commits"] if result["commits"] else math.nan,
        "bytes_per_commit": total / result["commits"] if result["commits"] else math.nan,
        "source": source,
    }


def run(url: str, workdir: Path, *, warmup: float, duration: float) -> dict[str, Any]:
    return {"levels": {level: one(url, workdir, level, warmup, duration) for level in levels()}}
