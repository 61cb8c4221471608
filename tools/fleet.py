"""Fleet: what ``edge simulate --devices N`` costs, measured against a Mosquitto of its own.

    .venv/bin/python tools/fleet.py --devices 100,1000 --speed max --duration 60

For each N, one ``edge simulate --devices N --quiet`` in its own process against one fresh
Mosquitto (the broker's and the outboxes' files in a scratch directory, each run's removed
after it: with the default 64 MiB cap, an outbox reserves 8 MiB of disk): the wall time,
the process's CPU time and peak RSS (from the kernel when it ends), its most threads and
open files (sampled from /proc every 0.1 s), and from its summary the readings, the events
stored and what was missing upstream. One line per N, every figure as JSON with
``--json``; ``--checkout DIR`` measures another checkout's ``edge`` (a baseline).
Exit 0 when every run ended well with nothing missing, 1 otherwise (or no mosquitto).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: the checkout's packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.bench.mosquitto import BrokerUnavailable, Mosquitto
from edge.sim.fleet import FILES_BESIDE, FILES_PER_DEVICE

CHECKOUT = Path(__file__).resolve().parent.parent  # whose edge runs, unless --checkout
TOTALS = re.compile(
    r"^(?:(?P<fleet>fleet)|summary)[^:]*: .*?(?P<readings>\d+) readings;"
    r" (?P<stored>\d+) events stored"
    r".* upstream received (?P<got>\d+) distinct, \d+ duplicates, (?P<missing>\d+) missing",
    re.MULTILINE,
)


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tools/fleet.py", description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="10,100,300,1000", help="N, comma-separated")
    parser.add_argument("--speed", default="max", help="edge simulate --speed (max)")
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds (60)")
    parser.add_argument("--scenario", help="edge simulate --scenario (default: default)")
    parser.add_argument("--workdir", type=Path, help="keep the broker's and outboxes' files here")
    parser.add_argument(
        "--checkout", type=Path, help="run the edge of this checkout instead (a baseline)"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    try:
        args.counts = [int(n) for n in args.devices.split(",")]
    except ValueError:
        parser.error(f"--devices: expected numbers separated by commas, found {args.devices!r}")
    if not all(n > 0 for n in args.counts):
        parser.error("--devices: each N must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    allow_files(max(args.counts))  # the broker inherits it
    with tempfile.TemporaryDirectory(prefix="edge-fleet-") as scratch:
        work = args.workdir or Path(scratch)
        figures = []
        try:
            with Mosquitto(work / "mosquitto", log=False) as broker:
                for count in args.counts:
                    state = work / f"state-{count}"
                    figures.append(measure(args, count, broker.url, state))
                    print(line(figures[-1]), flush=True)
                    if not args.workdir:  # up to 8 MB of disk a device (its outbox's reserve)
                        shutil.rmtree(state, ignore_errors=True)
        except BrokerUnavailable as exc:
            print(f"tools/fleet.py: {exc}", file=sys.stderr)
            return 1
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if all(f["exit"] == 0 and f["missing"] == 0 for f in figures) else 1


def allow_files(devices: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = devices * FILES_PER_DEVICE + FILES_BESIDE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def measure(args: argparse.Namespace, count: int, broker: str, state: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "edge.cli", "simulate", "--devices", str(count),
               "--speed", args.speed, "--duration", str(args.duration), "--quiet",
               "--broker", broker, "--state-dir", str(state)]  # fmt: skip
    if args.scenario:
        command += ["--scenario", args.scenario]
    out = state.with_suffix(".out")
    state.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    env = dict(os.environ)  # this checkout's edge, or the one asked for, wherever run from
    paths = [str(args.checkout or CHECKOUT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
    with out.open("w") as stdout, out.with_suffix(".err").open("w") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env, cwd=state.parent)
    most = {"threads": 0, "files": 0}
    watching = threading.Thread(target=watch, args=(process.pid, most), daemon=True)
    watching.start()
    _, status, usage = os.wait4(process.pid, 0)  # the child's own CPU time and peak RSS
    wall = time.monotonic() - began
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    watching.join()
    found = [m.groupdict() for m in TOTALS.finditer(out.read_text(encoding="utf-8"))]
    fleet = [f for f in found if f["fleet"]]  # a fleet's line, or else each device's own
    totals = fleet or found
    if process.returncode != 0:  # what it said last, on stderr
        said = out.with_suffix(".err").read_text(encoding="utf-8", errors="replace").splitlines()
        print(f"edge simulate --devices {count}: exit {process.returncode}: {said[-1:]}")
    return {
        "devices": count,
        "speed": args.speed,
        "duration": args.duration,
        "exit": process.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "threads": most["threads"],
        "files": most["files"],
        "readings": sum(int(t["readings"]) for t in totals),
        "stored": sum(int(t["stored"]) for t in totals),
        "received": sum(int(t["got"]) for t in totals),
        "missing": sum(int(t["missing"]) for t in totals) if totals else -1,
    }


def watch(pid: int, most: dict[str, int]) -> None:
    """The most threads and open files the process had, looked at every 0.1 s."""
    while True:
        try:
            text = Path(f"/proc/{pid}/status").read_text()
            files = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return
        state = re.search(r"^State:\s+(\S)", text, re.MULTILINE)
        if state is None or state.group(1) == "Z":
            return
        threads = re.search(r"^Threads:\s+(\d+)", text, re.MULTILINE)
        most["threads"] = max(most["threads"], int(threads.group(1)) if threads else 0)
        most["files"] = max(most["files"], files)
        time.sleep(0.1)  # the sampling interval


def line(f: dict[str, Any]) -> str:
    return (
        f"{f['devices']} devices at {f['speed']}: {f['wall_s']} s wall, {f['cpu_s']} s CPU,"
        f" peak RSS {f['peak_rss_mb']} MB, {f['threads']} threads, {f['files']} files at most;"
        f" {f['readings']} readings, {f['stored']} events stored, {f['received']} received,"
        f" {f['missing']} missing; exit {f['exit']}"
    )


if __name__ == "__main__":
    sys.exit(main())
