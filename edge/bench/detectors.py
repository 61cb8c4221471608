"""Figure 6: what detectors cost. ONNX per window against a bare ``session.run``, the numpy
fallback against onnxruntime, and the streaming ``adaptive`` detector per reading.

Models are real .onnx files made on the spot (a PCA reconstruction model from
``models.training``, which needs the ``onnx`` package of the ``train`` extra). Each timing
is the best of several repeats of many calls, the usual way to time small calls on a
machine with neighbours.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

WINDOW = 32  # readings per window: the model's input is the raw window


def unavailable(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def make_model(path: Path, inputs: int, seed: int = 0) -> Path:
    """A PCA reconstruction model over windows of ``inputs`` readings (float32 [1, inputs]),
    fitted on smooth noisy windows around 21 degC; raises ImportError without ``onnx``."""
    import numpy as np

    from models import training

    rng = np.random.default_rng(seed)
    t = np.arange(inputs)
    phase = rng.uniform(0, 2 * np.pi, size=(2000, 1))
    x = 21.0 + np.sin(t / 8.0 + phase) + 0.05 * rng.normal(size=(2000, inputs))
    trained = training.train(x, components=3, fpr=1e-3)
    metadata = {"name": "bench", "version": "1", "threshold": str(trained.calibration.threshold)}
    training.export_onnx(trained.model, path, metadata)
    return path


def best_per_call(call: Callable[[], object], calls: int, repeats: int = 5) -> float:
    """Seconds per call: the best of ``repeats`` runs of ``calls`` calls."""
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter() - started) / calls)
    return best


def onnx_figures(model_path: Path, calls: int) -> dict[str, Any]:
    """Per window: the detector against a bare onnxruntime session on the same input."""
    import numpy as np

    from models import load
    from models.onnx_detector import OnnxDetector, OnnxParams

    try:
        import onnxruntime as ort
    except ImportError:
        return unavailable("onnxruntime is not installed")
    rng = np.random.default_rng(1)
    window = (21.0 + 0.1 * rng.normal(size=WINDOW)).astype(np.float64)
    times = np.arange(WINDOW, dtype=np.float64) * 0.1
    fed = window.astype(np.float32).reshape(1, WINDOW)

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    bare = best_per_call(lambda: session.run(None, {name: fed}), calls)

    params = OnnxParams(model=str(model_path), window=WINDOW, backend="onnxruntime")
    detector = OnnxDetector(params)
    clock = [0.0]

    def one_window() -> None:  # the public per-window path: a window's block of readings
        clock[0] += WINDOW * 0.1
        detector.observe_block(times + clock[0], window)

    block = best_per_call(one_window, calls)

    streamed = OnnxDetector(params)
    values = [float(v) for v in window]
    t = [0.0]

    def readings() -> None:  # the runtime's path: one reading at a time
        for value in values:
            t[0] += 0.1
            streamed.observe(t[0], value)

    stream = best_per_call(readings, max(1, calls // 10))

    bound = getattr(detector, "_active", None)  # the detector's own model call, if exposed
    score = getattr(bound, "score", None)
    call = None if score is None else best_per_call(lambda: score(window), calls)

    checked = load(model_path, "onnxruntime")
    inputs = {checked.inputs[0].name: fed}
    run = best_per_call(lambda: checked.run(inputs), calls)
    return {
        "available": True,
        "window": WINDOW,
        "bare_session_run_us": bare * 1e6,
        "detector_model_call_us": None if call is None else call * 1e6,
        "detector_model_call_vs_bare": None if call is None else call / bare,
        "detector_window_us": block * 1e6,
        "detector_window_vs_bare": block / bare,
        "detector_streamed_window_us": stream * 1e6,
        "detector_streamed_per_reading_us": stream * 1e6 / WINDOW,
        "model_run_us": run * 1e6,
        "model_run_vs_bare": run / bare,
    }


def backend_figures(model_path: Path, calls: int) -> dict[str, Any]:
    """``models.load(...).run`` on the numpy fallback against onnxruntime, same model."""
    import numpy as np

    from models import BackendUnavailable, load

    fed = {"features": np.full((1, WINDOW), 21.0, np.float32)}
    found: dict[str, Any] = {}
    for backend in ("onnxruntime", "numpy"):
        try:
            model = load(model_path, backend)
        except BackendUnavailable as exc:
            found[f"{backend}_us"] = None
            found[f"{backend}_reason"] = str(exc)
            continue
        found[f"{backend}_us"] = best_per_call(_runner(model, fed), calls) * 1e6
    ort_us, numpy_us = found.get("onnxruntime_us"), found.get("numpy_us")
    found["numpy_vs_onnxruntime"] = numpy_us / ort_us if ort_us and numpy_us else None
    return found


def _runner(model: Any, inputs: dict[str, Any]) -> Callable[[], object]:
    return lambda: model.run(inputs)


def nab_like(count: int, seed: int = 0) -> npt.NDArray[np.float64]:
    """A series shaped like NAB's machine metrics: a daily cycle of 5-minute samples,
    noise, a few spikes and a level shift."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(count)
    series = 50 + 10 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 1.5, count)
    spikes = rng.choice(count, size=max(1, count // 5000), replace=False)
    series[spikes] += rng.choice([-1, 1], size=len(spikes)) * 25
    series[count // 2 :] += 8.0
    return series


def adaptive_figures(readings: int, early: int) -> dict[str, Any]:
    """The ``adaptive`` detector, built through the registry with its default params."""
    from models import DETECTOR_TYPES

    kind = DETECTOR_TYPES.get("adaptive")
    if kind is None:
        return unavailable("no 'adaptive' detector type in models.DETECTOR_TYPES")
    try:
        params = kind.params()
    except (TypeError, ValueError) as exc:
        return unavailable(f"adaptive has no default params: {exc}")
    values = [float(v) for v in nab_like(readings)]
    times = [300.0 * i for i in range(readings)]  # 5-minute samples, NAB's cadence

    detector = kind.build(params)
    detections = 0
    started = time.perf_counter()
    for t, value in zip(times, values, strict=True):
        if detector.observe(t, value) is not None:
            detections += 1
    per_reading = (time.perf_counter() - started) / readings

    tracemalloc.start()
    try:
        traced = kind.build(params)
        base = tracemalloc.get_traced_memory()[0]
        for t, value in zip(times[:early], values[:early], strict=True):
            traced.observe(t, value)
        after_early = tracemalloc.get_traced_memory()
        for t, value in zip(times[early:], values[early:], strict=True):
            traced.observe(t, value)
        after_all = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {
        "available": True,
        "readings": readings,
        "detections": detections,
        "us_per_reading": per_reading * 1e6,
        f"kib_after_{early}": (after_early[0] - base) / 1024,
        f"kib_after_{readings}": (after_all[0] - base) / 1024,
        "peak_kib": (after_all[1] - base) / 1024,
        "early": early,
        "growth_kib": (after_all[0] - after_early[0]) / 1024,
    }


def run(workdir: Path, *, calls: int, readings: int, early: int) -> dict[str, Any]:
    result: dict[str, Any] = {"adaptive": adaptive_figures(readings, early)}
    try:
        model = make_model(workdir / "bench-window.onnx", WINDOW)
    except ImportError as exc:
        reason = f"cannot make a model without the onnx package (the train extra): {exc}"
        result["onnx"] = unavailable(reason)
        result["backends"] = unavailable(reason)
        return result
    result["onnx"] = onnx_figures(model, calls)
    result["backends"] = backend_figures(model, calls)
    return result
