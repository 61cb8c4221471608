"""Small measuring tools shared by the figures: percentiles, CPU, memory, disk writes,
realistic drafts, and the machine the figures were taken on."""

from __future__ import annotations

import math
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from edge.events import Draft

WALL_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z: drafts' timestamps, as a device would


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def proc_status_mb(key: str) -> float:
    """A memory line of /proc/self/status (``VmRSS``, ``VmHWM``) in MB (10^6 bytes)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return math.nan


def proc_io() -> dict[str, int]:
    """/proc/self/io: ``write_bytes`` (sent to the block layer), ``wchar`` (written by
    write() calls, cache or not), ...; empty where the kernel does not keep them."""
    try:
        with open("/proc/self/io", encoding="ascii") as io:
            return {k: int(v) for k, v in (line.split(": ") for line in io if ": " in line)}
    except OSError:
        return {}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far; 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (a PostgreSQL server and its backends)."""
    total = process_cpu(pid)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                total += process_cpu(int(entry))
    return total


class CpuMeter:
    """CPU time of this process (every thread) over a wall interval."""

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    def percent(self) -> float:
        """CPU % of one core since the meter was made."""
        wall = time.monotonic() - self.wall0
        return 100.0 * (time.process_time() - self.cpu0) / wall if wall > 0 else math.nan

    def cpu_seconds(self) -> float:
        return time.process_time() - self.cpu0


def drafts(count: int, *, sensors: int = 20, seed: int = 0, kind: str = "telemetry") -> list[Draft]:
    """Drafts like a device's telemetry: sensor ids, readings with decimals, 10 Hz stamps."""
    rng = random.Random(seed)
    made = []
    for i in range(count):
        t = i / 10.0
        value = round(21.0 + rng.gauss(0.0, 0.5), 4)
        sensor = f"s{i % sensors:03d}"
        made.append(Draft(sensor, kind, "info", value, 1000.0 + t, WALL_START + t, True))
    return made


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith(("model name", "Model")):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor() or platform.machine(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "executable": sys.executable,
        "load_average": load_average(),
    }


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def fill_outbox(state_dir: str, device: str, count: int, *, batch: int = 10_000) -> float:
    """Store ``count`` telemetry events in the outbox of ``device`` (a backlog, as an outage
    leaves one), through ``Outbox.commit`` in large transactions; return the seconds taken."""
    from edge.outbox.store import Outbox

    started = time.monotonic()
    with Outbox.open(state_dir, device, durability="normal") as outbox:
        done = 0
        while done < count:
            size = min(batch, count - done)
            outbox.commit(drafts(size, seed=done))
            done += size
    return time.monotonic() - started
