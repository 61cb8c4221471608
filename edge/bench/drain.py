"""Figure 3: backlog drain after an outage, while sampling goes on.

The outbox is left holding ``backlog`` telemetry events (as a long outage leaves it); then
the runtime starts with the broker up, sampling the steady-state rig (20 sensors at 10 Hz
with threshold rules). The drain rate is the backlog over the time to its last PUBACK;
sampling jitter is each poll's lateness behind its due time, while draining and after.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.bench.child import run_child
from edge.bench.rig import RigSpec


def run(url: str, workdir: Path, *, backlog: int, after: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        spec = RigSpec(state_dir=str(Path(scratch) / "state"), broker=url)
        options = {"spec": asdict(spec), "backlog": backlog, "after": after, "timeout": 300.0}
        return run_child("drain", options, timeout=600.0)
