#!/usr/bin/env python3
"""The project's benchmark, from a checkout: the same as ``edge bench``.

    .venv/bin/python tools/bench.py [--smoke] [--json FILE] [--only NAME,...] [--dir DIR]

Starts its own Mosquitto on a free loopback port, runs every figure (see edge/bench/),
prints the figures and the budgets (docs/performance.md) as Markdown tables, and writes
JSON if asked.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's packages

from edge.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
