"""The long fuzz campaign: every ``fuzz``-marked property in ``tests/`` with many cases each.

The test suite runs the same properties with hypothesis's usual number of cases; this runs
them with ``--examples`` cases each (default 100,000) and prints, per target, the cases tried
and whether any failed. A failure prints hypothesis's minimal example, as in a test run.

    .venv/bin/python tools/fuzz.py                   # every target, 100,000 cases each
    .venv/bin/python tools/fuzz.py --examples 2000 -k commands
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# hypothesis's statistics: "tests/fuzz/test_x.py::test_y:" then "- during generate phase
# (1.2 seconds):" and "- 1000 passing, 0 failing, and 0 invalid test cases"
TARGET = re.compile(r"^(?P<test>\S+::\S+):\s*$")
PASSING = re.compile(r"(?P<passing>\d+) passing, (?P<failing>\d+) failing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000, help="cases per target")
    parser.add_argument("-k", dest="keyword", help="only targets matching (pytest -k)")
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "EDGELINE_HYPOTHESIS_PROFILE": "fuzz",
        "EDGELINE_FUZZ_EXAMPLES": str(args.examples),
    }
    command = [
        sys.executable, "-m", "pytest", "-m", "fuzz", "-p", "no:cacheprovider", "-q",
        "--hypothesis-show-statistics", "--timeout=0", "tests",
    ]  # fmt: skip
    if args.keyword:
        command += ["-k", args.keyword]
    started = time.monotonic()
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    totals = cases(run.stdout)
    width = max((len(name) for name in totals), default=10)
    for name, (passing, failing) in totals.items():
        print(f"{name:<{width}}  {passing:>9,} cases  {failing} failed")
    print(f"{len(totals)} targets, {sum(p for p, _ in totals.values()):,} cases, "
          f"{time.monotonic() - started:.0f} s; pytest exit {run.returncode}")  # fmt: skip
    if run.returncode != 0:
        print(run.stdout[-20_000:], run.stderr[-5_000:], sep="\n", file=sys.stderr)
    if not totals:
        print("no fuzz targets ran", file=sys.stderr)
        return 1
    return run.returncode


def cases(output: str) -> dict[str, tuple[int, int]]:
    """Cases tried per target, from hypothesis's statistics (summed over its phases)."""
    totals: dict[str, tuple[int, int]] = {}
    current: str | None = None
    for line in output.splitlines():
        if match := TARGET.match(line.strip()):
            current = match["test"]
            totals.setdefault(current, (0, 0))
        elif current and (match := PASSING.search(line)):
            passing, failing = totals[current]
            totals[current] = (passing + int(match["passing"]), failing + int(match["failing"]))
    return totals


if __name__ == "__main__":
    sys.exit(main())
