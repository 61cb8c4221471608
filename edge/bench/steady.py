"""Figure 4: steady state, 20 simulated sensors at 10 Hz with threshold rules, real clock.

Each case runs in a fresh interpreter: start to first reading is measured from the moment
the benchmark launches it, CPU over an interval after a warm-up, memory as its resident set.
The second case adds the shipped ONNX detector: ``vibration`` on a simulated MPU-6050 at
4 Hz, configured as its model card says, with the default ``backend = "auto"`` (the numpy
backend for a model this small); the third runs that same detector on onnxruntime. What the
resident set is made of is measured too: the growth of a fresh interpreter's RSS as each
module the runtime needs is imported, in order.
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

# What a runtime process imports, in the order the RSS breakdown adds them (sqlite-utils is
# not among them: the outbox uses sqlite3 alone, and only the cloud extra installs it).
IMPORTS = (
    "paho.mqtt.client",
    "numpy",
    "gpiozero",
    "edge.runtime.runtime",
    "edge.sim.hardware",
    "onnxruntime",  # only with a model that runs on it
)

# The cases after the threshold rules alone: key -> the vibration detector's backend.
ONNX_CASES = {"onnx": "auto", "onnx_onnxruntime": "onnxruntime"}


def one(url: str, workdir: Path, *, vibration: str | None, warmup: float, duration: float) -> Any:
    with tempfile.TemporaryDirectory(dir=workdir) as scratch:
        spec = RigSpec(
            state_dir=str(Path(scratch) / "state"),
            broker=url,
            sensors=SENSORS,
            interval=INTERVAL,
            vibration_backend=vibration,
        )
        options = {"spec": asdict(spec), "warmup": warmup, "duration": duration}
        return run_child("load", options, timeout=warmup + duration + 60)


def run(url: str, workdir: Path, *, warmup: float, duration: float) -> dict[str, Any]:
    result: dict[str, Any] = {
        "sensors": SENSORS,
        "hz": 1 / INTERVAL,
        "threshold": one(url, workdir, vibration=None, warmup=warmup, duration=duration),
        "rss_by_import_mb": run_child("imports", {"modules": list(IMPORTS)}, timeout=60),
    }
    for key, backend in ONNX_CASES.items():
        if backend == "onnxruntime" and not _onnxruntime_installed():
            result[key] = None
            continue
        result[key] = one(url, workdir, vibration=backend, warmup=warmup, duration=duration)
    return result


def _onnxruntime_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None
