"""Figure 4: steady state, 20 simulated sensors at 10 Hz with threshold rules, real clock.

Each case runs in a fresh interpreter: start to first reading is measured from the moment
the benchmark launches it, CPU over an interval after a warm-up, memory as its resident set.
The second case adds an ONNX detector (a 10-reading window, a PCA model) on one sensor.
What the resident set is made of is measured too: the growth of a fresh interpreter's RSS as
each module the runtime needs is imported, in order.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edge.bench.child import run_child
from edge.bench.rig import RigSpec

SENSORS = 20
INTERVAL = 0.1
ONNX_WINDOW = 10

# What a runtime process imports, in the order the RSS breakdown adds them (sqlite-utils is
# not among them: the outbox uses sqlite3 alone, and only the cloud extra installs it).
IMPORTS = (
    "paho.mqtt.client",
    "numpy",
    "gpiozero",
    "edge.runtime.runtime",
    "edge.sim.hardware",
    "onnxruntime",  # only with an ONNX detector
)


def one(url: str, workdir: Path, *, model: str | None, warmup: float, duration: float) -> Any:
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        spec = RigSpec(
            state_dir=str(Path(scratch) / "state"),
            broker=url,
            sensors=SENSORS,
            interval=INTERVAL,
            onnx_model=model,
            onnx_window=ONNX_WINDOW,
        )
        options = {"spec": asdict(spec), "warmup": warmup, "duration": duration}
        return run_child("load", options, timeout=warmup + duration + 60)


def run(
    url: str, workdir: Path, *, model: str | None, warmup: float, duration: float
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "sensors": SENSORS,
        "hz": 1 / INTERVAL,
        "threshold": one(url, workdir, model=None, warmup=warmup, duration=duration),
        "rss_by_import_mb": run_child("imports", {"modules": list(IMPORTS)}, timeout=60),
    }
    if model is None:
        result["onnx"] = None
    else:
        result["onnx"] = one(url, workdir, model=model, warmup=warmup, duration=duration)
    return result
