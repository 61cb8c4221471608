"""A model file bound to a detector's feed: the checks a model must pass to run for a
detector (input shape and dtype, score output, threshold, weights against their sha256,
a trial run) and the bound model itself, with its preallocated input. Also the outcomes
of reloading a model and of running a candidate in shadow.

This module has no ``from __future__ import annotations``, like the detector's.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from models.loader import Model, TensorSpec

# Input dtypes the window or its features can be written into without losing their meaning.
_FLOAT_INPUTS = ("float16", "float32", "float64")


class ModelMismatch(ModelError, ValueError):
    """The model does not fit the detector's config: its inputs or outputs, their shapes, or a
    missing threshold. The message names what the model has and what the config asks for."""


class TamperedModel(ModelError, ValueError):
    """The model's weights do not hash to the ``weights_sha256`` its metadata claims."""


class NoCandidate(ModelError, LookupError):
    """``promote`` or ``drop`` was asked with no model running in shadow."""


@dataclass(frozen=True)
class ReloadResult:
    """The answer to :meth:`OnnxDetector.reload` or :meth:`OnnxDetector.shadow`.

    ``sha256`` is the digest of the file's bytes (``Model.sha256``), ``None`` when the file
    could not be read; ``name`` and ``version`` come from its metadata (name: else the file's
    stem) when it could be decoded. ``reason`` says what was done or why it was refused.
    """

    accepted: bool
    reason: str
    sha256: str | None = None
    name: str | None = None
    version: str | None = None


@dataclass(frozen=True)
class ShadowStats:
    """How a shadow (candidate) model compares with the active one since it started.

    ``windows`` counts windows both models scored (a NaN score from either is not counted);
    ``active_alarms`` and ``candidate_alarms`` count those each scored above its own
    threshold; ``agreements`` those where both were above, or both not above, their thresholds.
    """

    candidate: str
    candidate_version: str | None
    windows: int
    active_alarms: int
    candidate_alarms: int
    agreements: int

    @property
    def agreement(self) -> float | None:
        """Fraction of windows the two models agreed on; ``None`` before the first window."""
        return self.agreements / self.windows if self.windows else None

    def as_fields(self) -> dict[str, object]:
        """The stats as JSON-serialisable event fields."""
        return {
            "candidate": self.candidate,
            "candidate_version": self.candidate_version,
            "windows": self.windows,
            "active_alarms": self.active_alarms,
            "candidate_alarms": self.candidate_alarms,
            "agreement": self.agreement,
        }


class BoundModel:
    """A model bound to one detector: its preallocated input, score output and threshold."""

    def __init__(
        self,
        *,
        model: "Model",
        input_name: str,
        dtype: str,
        shape: tuple[int, ...],
        output: str,
        threshold: float,
        name: str,
        version: str | None,
    ) -> None:
        import numpy as np

        self.model = model
        self.output = output
        self.threshold = threshold
        self.name = name
        self.version = version
        self.trial_score = math.nan
        # The model's input, allocated once: each window is written into it in place.
        self.batch = np.zeros(shape, dtype=dtype)
        self.flat = self.batch.reshape(-1)  # a view of the same memory
        self.feeds = {input_name: self.batch}
        self._run: Callable[[], dict[str, Any]] | None = None  # bound after the trial run

    def score(self, fed: "npt.NDArray[np.generic]") -> float:
        """The model's score of a window's feed: written in place, run, reduced."""
        import numpy as np

        np.copyto(self.flat, fed, casting="same_kind")
        if self._run is None:  # checked once (the trial run checked these very arrays)
            self._run = self.model.bind(self.feeds)
        return reduce_score(self._run()[self.output])


class Tally:
    """Shadow-mode counters, updated once per window both models scored."""

    def __init__(self) -> None:
        self.windows = 0
        self.active_alarms = 0
        self.candidate_alarms = 0
        self.agreements = 0

    def add(self, active_above: bool, candidate_above: bool) -> None:
        self.windows += 1
        self.active_alarms += active_above
        self.candidate_alarms += candidate_above
        self.agreements += active_above == candidate_above


def trial_run(bound: BoundModel, feed: "npt.NDArray[np.generic]") -> float:
    """Score ``feed`` once: a graph that cannot run on the shape it will get, or a score
    output with no element, is refused now, not at the first window."""
    import numpy as np

    from models.loader import ModelInputError, ModelRunError

    name = bound.model.path.name
    np.copyto(bound.flat, feed, casting="same_kind")
    try:
        out = bound.model.run(bound.feeds)[bound.output]
    except (ModelRunError, ModelInputError) as exc:
        raise ModelMismatch(
            f"{name} fails on an input of shape {list(bound.batch.shape)}: {exc}"
        ) from exc
    if out.size == 0:
        raise ModelMismatch(
            f"output {bound.output!r} of {name} is empty (shape {list(out.shape)}): "
            f"it cannot hold a score"
        )
    return reduce_score(out)


def reduce_score(out: "npt.NDArray[Any]") -> float:
    # A score is usually one element: item() costs a fifth of a numpy reduction.
    return float(out.item()) if out.size == 1 else float(out.max())


def check_weights(file: Path, sha256: str, max_bytes: int) -> None:
    """Refuse a file whose weights do not hash to its metadata's ``weights_sha256``.

    The check decodes the bytes whose digest is ``sha256`` (the loaded model's): a file
    replaced between loading and checking is refused rather than checked in its stead.
    """
    import hashlib

    from models.loader import ModelFileError, read_model_file
    from models.metadata import WEIGHTS_KEY, WeightsCheck, model_weights_digest
    from models.onnx_reader import parse_model

    data = read_model_file(file, max_bytes)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelFileError(f"{file.name} changed while it was being loaded; try again")
    onnx = parse_model(data)
    expected = onnx.metadata.get(WEIGHTS_KEY)
    if expected is None:
        return  # nothing to check against: a model not written by edge model train
    check = WeightsCheck(expected, model_weights_digest(onnx, file.name))
    if not check.ok:
        raise TamperedModel(
            f"{file.name}: {WEIGHTS_KEY} mismatch, the weights were altered or corrupted: "
            f"the metadata says {check.expected}, the weights hash to {check.actual}"
        )


def identify(file: Path, max_bytes: int) -> tuple[str | None, str | None, str | None]:
    """sha256, name and version of a refused file, as far as it can be read."""
    import hashlib

    from models.loader import read_model_file
    from models.onnx_reader import parse_model

    try:
        data = read_model_file(file, max_bytes)
    except ModelError:  # not there, unreadable, or too large to read
        return None, None, None
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        metadata = parse_model(data).metadata
    except ModelError:
        return sha256, None, None
    return sha256, metadata.get("name") or file.stem, metadata.get("version")


def choose_input(model: "Model", name: str | None) -> "TensorSpec":
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


def choose_output(model: "Model", name: str | None) -> str:
    names = [spec.name for spec in model.outputs]
    if name is None:
        return names[0]
    if name not in names:
        raise ModelMismatch(
            f"{model.path.name} has no output named {name!r}; its outputs are: "
            f"{', '.join(str(spec) for spec in model.outputs)}"
        )
    return name


def model_threshold(model: "Model", override: float | None) -> float:
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


def feed_shape(spec: "TensorSpec", count: int, feed: str, file_name: str) -> tuple[int, ...]:
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
