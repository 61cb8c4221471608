"""Anomaly detection with an ONNX model: windows of readings in, an anomaly score out.

An ``onnx`` detector collects a sensor's readings in a :class:`~models.windows.Window`
(scalars, or vectors of ``width`` such as x, y, z), and every ``hop`` readings once the window
is full it feeds the model either the raw window or the window's features
(:mod:`models.features`). The model's output is the anomaly score (the largest element when
the output has several); the score is the measure of an :class:`~models.alarm.Alarm` with an
upper limit at the threshold, so the detector fires once, clears once, and honours
``hysteresis`` and ``min_duration`` exactly as the rule detectors do.

Everything that can be wrong with a model for this config (no such file, a graph the backend
cannot run, an input shape the window or features do not fill, no threshold) is refused when
the detector is built, never at the first window. The threshold comes from the model's
``metadata_props`` (key ``threshold``, written when the model was calibrated) unless the config
overrides it.

Importing this module is cheap: numpy, the window and feature code and the model backend are
imported when a detector is built. This module has no ``from __future__ import annotations``:
the config validator reads real types from the fields of :class:`OnnxParams`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from models.alarm import Alarm, AlarmState, Limits
from models.detection import Detection
from models.errors import ModelError, ParamsError
from models.params import check_fields

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from models.features import FeatureSpec
    from models.loader import Model, TensorSpec

    FloatArray = npt.NDArray[np.float64]

__all__ = ["ModelMismatch", "OnnxDetector", "OnnxParams"]

# Input dtypes the window or its features can be written into without losing their meaning.
_FLOAT_INPUTS = ("float16", "float32", "float64")


class ModelMismatch(ModelError, ValueError):
    """The model does not fit the detector's config: its inputs or outputs, their shapes, or a
    missing threshold. The message names what the model has and what the config asks for."""


@dataclass(frozen=True)
class OnnxParams:
    """Parameters of an ``onnx`` detector."""

    model: str = field(metadata={"doc": "path to the .onnx model file"})
    window: int = field(
        metadata={"min": 1, "max": 1_000_000, "doc": "readings in each window fed to the model"}
    )
    backend: Literal["auto", "onnxruntime", "numpy"] = field(
        default="auto",
        metadata={"doc": "runtime for the model; auto prefers onnxruntime when installed"},
    )
    hop: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "max": 1_000_000,
            "doc": "readings between windows (default: window, windows do not overlap)",
        },
    )
    features: str | None = field(
        default=None,
        metadata={
            "doc": "comma-separated features fed to the model, e.g. rms,crest,band:80-100 "
            "(default: the raw window)"
        },
    )
    rate: float | None = field(
        default=None,
        metadata={
            "min": 0.0,
            "doc": "sample rate in Hz for band and slope features (default: from the times)",
        },
    )
    width: int = field(
        default=1,
        metadata={"min": 1, "max": 64, "doc": "values per reading (3 for x, y, z vectors)"},
    )
    input: str | None = field(
        default=None, metadata={"doc": "model input to feed (default: its only input)"}
    )
    output: str | None = field(
        default=None,
        metadata={"doc": "model output holding the anomaly score (default: its first output)"},
    )
    threshold: float | None = field(
        default=None,
        metadata={"doc": "alarm when the score exceeds this (default: the model's metadata)"},
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far below threshold the score must come to clear"},
    )
    min_duration: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "seconds the score must stay above threshold to fire"},
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.model.strip():
            raise ParamsError("model must name an .onnx file, got an empty path")
        if self.hop is not None and self.hop > self.window:
            # A hop past the window would skip readings between windows.
            raise ParamsError(f"hop ({self.hop}) must not exceed window ({self.window})")
        if self.rate is not None and not self.rate > 0:
            raise ParamsError(f"rate must be positive, got {self.rate}")
        spec = self.feature_spec()
        if spec is not None and self.rate is not None:
            spec.check_rate(self.rate)

    def feature_spec(self) -> "FeatureSpec | None":
        """The parsed ``features``, ``None`` when the raw window is fed."""
        if self.features is None:
            return None
        from models.features import FeatureSpec  # numpy: only when features are configured

        return FeatureSpec.parse(self.features)


class OnnxDetector:
    """Score windows of readings with an ONNX model; see the module docstring.

    ``observe`` takes one reading (a float, or a sequence of ``width`` floats) and
    ``observe_block`` a block of them (a sensor FIFO's worth); a reading with a non-finite
    value is ignored. ``kind`` is ``anomaly``; ``value`` is the score (a window has no single
    reading to report); ``fields`` carry ``score``, ``threshold``, ``model`` (the metadata
    ``name``, else the file's stem), ``model_version`` (metadata ``version``, else ``None``),
    ``state`` (``active`` or ``clear``) and ``duration``.

    Raises at build: :class:`ParamsError` for bad params, the :class:`~models.errors.ModelError`
    subclasses of :func:`models.load` for a file that cannot be loaded, and
    :class:`ModelMismatch` for a model that does not fit the config.
    """

    def __init__(self, params: OnnxParams) -> None:
        import numpy as np

        from models.loader import load
        from models.windows import Window

        self.params = params
        self._spec = params.feature_spec()
        self.model: Model = load(params.model, params.backend)
        model = self.model
        self._input = _choose_input(model, params.input)
        self._output = _choose_output(model, params.output)
        self.threshold = _threshold(model, params.threshold)
        self.model_name = model.metadata.get("name") or Path(params.model).stem
        self.model_version = model.metadata.get("version")

        width = None if params.width == 1 else params.width
        self._window: Window = Window(params.window, params.hop, width=width)
        count = self._values_fed()
        shape = _feed_shape(self._input, count, self._describe_feed(count), model.path.name)
        # The model's input, allocated once: each window is written into it in place.
        self._batch = np.zeros(shape, dtype=self._input.dtype)
        self._flat = self._batch.reshape(-1)  # a view of the same memory
        self._feeds = {self._input.name: self._batch}
        self._alarm = Alarm(Limits(self.threshold, None, params.hysteresis), params.min_duration)
        self._score: float | None = None
        self._trial_run()

    @property
    def state(self) -> AlarmState:
        """``normal``, ``pending`` (above threshold, waiting for ``min_duration``) or ``active``."""
        return self._alarm.state

    @property
    def score(self) -> float | None:
        """The last window's score, ``None`` before the first full window."""
        return self._score

    @property
    def accepts_vectors(self) -> bool:
        """Whether readings are (x, y, z)-like vectors: the runtime passes them whole."""
        return self.params.width > 1

    def observe(self, t: float, value: float | Sequence[float]) -> Detection | None:
        reading = self._reading(value)
        if reading is None:
            return None
        window = self._window.push(t, reading)
        if window is None:
            return None
        return self._judge(window, self._window.times)

    def observe_block(self, times: "npt.ArrayLike", samples: "npt.ArrayLike") -> list[Detection]:
        """Take a block of readings at once; return the detections of the windows it completed.

        ``times`` has one timestamp per sample, not decreasing; ``samples`` has shape ``(n,)``
        for scalars or ``(n, width)`` for vectors. Equivalent to calling :meth:`observe` on each
        sample in turn, at the cost of a few slice copies instead of ``n`` pushes.
        """
        import numpy as np

        t = np.asarray(times, dtype=np.float64)
        x = np.asarray(samples, dtype=np.float64)
        if self.params.width == 1 and x.ndim == 2 and x.shape[1:] == (1,):
            x = x[:, 0]
        if x.ndim >= 1 and len(x) == len(t) and len(t):
            finite = np.isfinite(x) if x.ndim == 1 else np.isfinite(x).all(axis=1)
            if not finite.all():
                t, x = t[finite], x[finite]
        batch = self._window.push_block(t, x)
        found: list[Detection] = []
        for values, stamps in zip(batch.values, batch.times, strict=True):
            detection = self._judge(values, stamps)
            if detection is not None:
                found.append(detection)
        return found

    # -- per window --------------------------------------------------------------------------

    def _judge(self, values: "FloatArray", times: "FloatArray") -> Detection | None:
        score = self._run(values, times)
        self._score = score
        if math.isnan(score):
            return None  # an Alarm is never fed NaN; the next window is judged afresh
        change = self._alarm.update(float(times[-1]), score)
        if change is None:
            return None
        payload: dict[str, object] = {
            "score": score,
            "threshold": self.threshold,
            "model": self.model_name,
            "model_version": self.model_version,
            "state": change.state,
            "duration": change.duration,
        }
        severity = self.params.severity if change.state == "active" else "info"
        return Detection(kind="anomaly", severity=severity, value=score, fields=payload)

    def _run(self, values: "FloatArray", times: "FloatArray") -> float:
        import numpy as np

        if self._spec is None:
            # The window is a contiguous view: reshape(-1) is free, copyto casts into place.
            np.copyto(self._flat, values.reshape(-1), casting="same_kind")
        else:
            from models.features import features

            np.copyto(
                self._flat,
                features(values, self._spec, self.params.rate, times=times),
                casting="same_kind",
            )
        out = self.model.run(self._feeds)[self._output]
        # A score is usually one element: item() costs a fifth of a numpy reduction.
        return float(out.item()) if out.size == 1 else float(out.max())

    def _reading(self, value: float | Sequence[float]) -> float | Sequence[float] | None:
        """The reading to push, ``None`` to ignore it (a non-finite value); refuses a reading
        of the wrong width (numpy would broadcast one number over every axis)."""
        width = self.params.width
        if width == 1:
            if isinstance(value, Sequence):
                raise ValueError(f"expected one number per reading (width 1), got {value!r}")
            number = float(value)
            return number if math.isfinite(number) else None
        if isinstance(value, int | float) or not hasattr(value, "__len__") or len(value) != width:
            raise ValueError(f"expected {width} numbers per reading (width {width}), got {value!r}")
        return value if all(math.isfinite(v) for v in value) else None

    # -- at build ----------------------------------------------------------------------------

    def _values_fed(self) -> int:
        width = self.params.width
        if self._spec is None:
            return self.params.window * width
        return len(self._spec) * width

    def _describe_feed(self, count: int) -> str:
        p = self.params
        per = f" x width {p.width}" if p.width > 1 else ""
        if self._spec is None:
            return f"the raw window: {p.window} readings{per} = {count} values"
        return f"features '{self._spec}': {len(self._spec)} features{per} = {count} values"

    def _trial_run(self) -> None:
        """Run the model once on the zeroed input: a graph that cannot run on the shape it
        will get, or a score output with no element, is refused now, not at the first window."""
        from models.loader import ModelRunError

        try:
            out = self.model.run(self._feeds)[self._output]
        except ModelRunError as exc:
            raise ModelMismatch(
                f"{self.model.path.name} fails on an input of shape {list(self._batch.shape)}: "
                f"{exc}"
            ) from exc
        if out.size == 0:
            raise ModelMismatch(
                f"output {self._output!r} of {self.model.path.name} is empty "
                f"(shape {list(out.shape)}): it cannot hold a score"
            )


def _choose_input(model: "Model", name: str | None) -> "TensorSpec":
    inputs = model.inputs
    names = ", ".join(str(spec) for spec in inputs) or "none"
    if name is not None and name not in [spec.name for spec in inputs]:
        raise ModelMismatch(
            f"{model.path.name} has no input named {name!r}; its inputs are: {names}"
        )
    if len(inputs) != 1:
        # Only one input can be fed from a window; any other would have no value.
        raise ModelMismatch(
            f"{model.path.name} needs {len(inputs)} inputs ({names}); "
            f"an onnx detector feeds exactly one"
        )
    chosen = inputs[0]
    if chosen.dtype not in _FLOAT_INPUTS:
        raise ModelMismatch(
            f"input {chosen} of {model.path.name} is not a float tensor: "
            f"a window or its features cannot be fed to it"
        )
    return chosen


def _choose_output(model: "Model", name: str | None) -> str:
    names = [spec.name for spec in model.outputs]
    if name is None:
        return names[0]
    if name not in names:
        raise ModelMismatch(
            f"{model.path.name} has no output named {name!r}; its outputs are: "
            f"{', '.join(str(spec) for spec in model.outputs)}"
        )
    return name


def _threshold(model: "Model", override: float | None) -> float:
    if override is not None:
        return override
    text = model.metadata.get("threshold")
    if text is None:
        raise ModelMismatch(
            f"{model.path.name} has no 'threshold' in its metadata; set threshold in the "
            f"detector's config, or calibrate the model (edge model train writes one)"
        )
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ModelMismatch(
            f"{model.path.name} has threshold {text!r} in its metadata, not a finite number; "
            f"set threshold in the detector's config"
        )
    return value


def _feed_shape(spec: "TensorSpec", count: int, feed: str, file_name: str) -> tuple[int, ...]:
    """The shape ``count`` values take to fit ``spec``: batch 1, then the model's own dims.

    The first dimension is the batch (1 or any size). At most one later dimension may be of
    any size; it takes what the fixed ones leave, as numpy's ``reshape(-1)`` does. A model
    that declares no shape gets ``[1, count]``.
    """
    if spec.shape is None:
        return (1, count)
    shape = spec.shape
    batch_ok = len(shape) >= 2 and (shape[0] == 1 or not isinstance(shape[0], int))
    free = [i for i, d in enumerate(shape[1:], start=1) if not isinstance(d, int)]
    fixed = math.prod(d for d in shape[1:] if isinstance(d, int))
    fits = len(free) == 0 and fixed == count
    if len(free) == 1 and fixed > 0 and count % fixed == 0:
        fits = True
    if not (batch_ok and fits):
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        raise ModelMismatch(
            f"input {spec.name!r} of {file_name} has shape [{dims}], but the detector feeds "
            f"{feed} (shape [1, {count}]); the model needs a batch dimension of 1 and "
            f"{count} values after it: change window, width or features, or use a model "
            f"trained on this input"
        )
    rest = (d if isinstance(d, int) else count // fixed for d in shape[1:])
    return (1, *rest)
