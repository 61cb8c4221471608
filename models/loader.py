"""Open an ONNX model file and run it with onnxruntime or the numpy fallback behind one interface.

``load`` reads the file once: the bytes are hashed, decoded by :mod:`models.onnx_reader` (for
the metadata and the input and output specs, whichever backend runs), and handed to the backend
as bytes, so the model that runs is the one that was hashed. ``Model.run`` checks the inputs the
same way for both backends, so a wrong name or shape gets the same answer on every Pi.

Importing this module is cheap: numpy is imported when a model is loaded, onnxruntime only
when a model runs on it. ``backend="auto"`` runs small models on numpy and never imports
onnxruntime for them (:mod:`models.backend_choice` says where the line is and why).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from models.errors import ModelError, ParamsError
from models.onnx_reader import (
    NUMPY_DTYPES,
    ModelFormatError,
    ModelTooLarge,
    OnnxModel,
    ValueInfo,
    elem_type_name,
    parse_model,
)

if TYPE_CHECKING:
    import numpy.typing as npt

    from models.shapes import SizePlan

    Array = npt.NDArray[Any]

log = logging.getLogger(__name__)

__all__ = [
    "BackendUnavailable",
    "Model",
    "ModelFileError",
    "ModelFormatError",
    "ModelInputError",
    "ModelNotFoundError",
    "ModelRunError",
    "ModelTooLarge",
    "TensorSpec",
    "UnsupportedModel",
    "UnsupportedOperator",
    "load",
]

Backend = Literal["onnxruntime", "numpy"]
BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "numpy")
# The largest model file read by default: the shipped models are a few kB, a network for a
# device a few MB; a file past this is refused before it is read.
DEFAULT_MAX_BYTES = 64 << 20


class ModelFileError(ModelError, OSError):
    """The model file cannot be read (permissions, a directory, an I/O error)."""


class ModelNotFoundError(ModelFileError, FileNotFoundError):
    """No file at the model path."""


class BackendUnavailable(ModelError, ImportError):
    """The requested backend is not installed on this machine."""


class UnsupportedModel(ModelError, ValueError):
    """A valid ONNX model uses something the numpy backend does not implement."""


class UnsupportedOperator(UnsupportedModel):
    """The graph uses operators the numpy backend does not implement; ``.operators`` lists
    them as ``(op_type, node label)`` pairs."""

    def __init__(self, message: str, operators: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.operators = operators


class ModelInputError(ModelError, ValueError):
    """``Model.run`` got inputs that do not match the model's: names, rank, sizes or dtype."""


class ModelRunError(ModelError, RuntimeError):
    """The graph failed while running (a node's inputs turned out incompatible, say)."""


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output as the file declares it.

    ``dtype`` is a numpy dtype name (``"float32"``) or, for types numpy lacks, ONNX's name
    (``"bfloat16"``). ``shape`` is None when the file declares none; a dimension is an int, a
    symbolic name (``"batch"``, any size) or None (any size).
    """

    name: str
    dtype: str
    shape: tuple[int | str | None, ...] | None

    @classmethod
    def from_value_info(cls, info: ValueInfo) -> TensorSpec:
        return cls(info.name, elem_type_name(info.elem_type), info.shape)

    def __str__(self) -> str:
        if self.shape is None:
            return f"{self.name} ({self.dtype})"
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({self.dtype} [{dims}])"


class _Runner(Protocol):
    """What a backend provides: outputs by name from checked inputs."""

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]: ...


class Model:
    """A loaded ONNX model: ``run`` computes the graph's outputs by name.

    ``inputs`` are the inputs ``run`` needs (graph inputs without an initializer); ``metadata``
    is the file's ``metadata_props``; ``sha256`` is the hex digest of the file's bytes;
    ``backend`` is what runs it and ``reason`` why (asked for by name, or auto's reasoning).
    """

    def __init__(
        self,
        path: Path,
        sha256: str,
        backend: Backend,
        onnx: OnnxModel,
        runner: _Runner,
        reason: str = "",
    ) -> None:
        self.path = path
        self.sha256 = sha256
        self.backend: Backend = backend
        self.reason = reason  # why this backend: asked for by name, or auto's reasoning
        self.metadata: dict[str, str] = dict(onnx.metadata)
        initialized = {t.name for t in onnx.graph.initializers}
        self.inputs = tuple(
            TensorSpec.from_value_info(v) for v in onnx.graph.inputs if v.name not in initialized
        )
        self.outputs = tuple(TensorSpec.from_value_info(v) for v in onnx.graph.outputs)
        # Graph inputs backed by an initializer may be fed to override it, as onnxruntime allows.
        overridable = (v for v in onnx.graph.inputs if v.name in initialized)
        self._optional = {v.name: TensorSpec.from_value_info(v) for v in overridable}
        self._runner = runner

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, backend={self.backend!r})"

    def run(self, inputs: Mapping[str, Any]) -> dict[str, Array]:
        """Compute every graph output from ``inputs`` (name -> array-like).

        An input whose dtype differs but casts within its kind (float64 -> float32) is
        converted; anything else that does not match the declared name, rank, fixed sizes or
        dtype raises :class:`ModelInputError` naming the input and what was expected.
        """
        feeds = self._check_inputs(inputs)
        return self._runner.run(feeds)

    def bind(self, inputs: Mapping[str, Any]) -> Callable[[], dict[str, Array]]:
        """Check ``inputs`` once and return a run with no further checks.

        For a caller that writes each new input into the same arrays in place (a detector's
        preallocated window): the per-call checks of :meth:`run` would cost as much as a
        small model's inference. The arrays must keep their dtype and shape.
        """
        feeds = self._check_inputs(inputs)
        for name, array in feeds.items():
            if array is not inputs[name]:
                raise ModelInputError(
                    f"input {name!r} of {self.path.name} must be bound as an array of its exact"
                    " dtype, to be written in place"
                )
        runner = self._runner

        def run() -> dict[str, Array]:
            return runner.run(feeds)

        return run

    def _check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Array]:
        import numpy as np

        required = {spec.name: spec for spec in self.inputs}
        unknown = sorted(set(inputs) - set(required) - set(self._optional))
        if unknown:
            raise ModelInputError(
                f"{self.path.name} has no input named {', '.join(map(repr, unknown))}; "
                f"its inputs are: {self._describe_inputs()}"
            )
        missing = [name for name in required if name not in inputs]
        if missing:
            raise ModelInputError(
                f"{self.path.name} needs input {', '.join(map(repr, missing))}; "
                f"its inputs are: {self._describe_inputs()}"
            )
        feeds: dict[str, Array] = {}
        for name, value in inputs.items():
            spec = required.get(name) or self._optional[name]
            array = np.asarray(value)
            if spec.dtype in NUMPY_DTYPES.values() and array.dtype != spec.dtype:
                if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
                    raise ModelInputError(
                        f"input {name!r} of {self.path.name} is {spec.dtype}, got {array.dtype}"
                    )
                array = array.astype(spec.dtype)
            _check_shape(spec, array.shape, self.path.name)
            feeds[name] = array
        return feeds

    def _describe_inputs(self) -> str:
        return ", ".join(str(spec) for spec in self.inputs) or "none"


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], file_name: str) -> None:
    if spec.shape is None:
        return
    if len(shape) != len(spec.shape) or any(
        isinstance(want, int) and want != got for want, got in zip(spec.shape, shape, strict=True)
    ):
        raise ModelInputError(
            f"input {spec.name!r} of {file_name} has shape {list(shape)}, expected {spec}"
        )


def load(
    path: str | os.PathLike[str], backend: str = "auto", max_bytes: int = DEFAULT_MAX_BYTES
) -> Model:
    """Load the ONNX model at ``path`` with ``backend``: "onnxruntime", "numpy" or "auto".

    "auto" uses the numpy backend for a small model whose operators it all implements, without
    importing onnxruntime (a fixed ~35 MB of memory), and onnxruntime for a larger one or one
    with an operator numpy lacks, when it can be imported (32-bit ARM has no onnxruntime
    wheel); :mod:`models.backend_choice` draws the line. ``Model.backend`` says which runs it,
    ``Model.reason`` why. The numpy backend refuses, at load, any operator it does not
    implement (:class:`UnsupportedOperator`). A file over ``max_bytes`` is refused unread, and
    a model with a tensor over the limits of :mod:`models.shapes` is refused before any
    backend allocates it, whichever backend was asked for. Errors: :class:`ModelNotFoundError`,
    :class:`ModelFileError`, :class:`ModelFormatError` (not a readable ONNX model),
    :class:`ModelTooLarge` (over a limit), :class:`BackendUnavailable`,
    :class:`UnsupportedModel`; all are :class:`ModelError` and name the file.
    """
    from models.shapes import check_graph

    if backend not in BACKENDS:
        raise ParamsError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    path = Path(path)
    data = read_model_file(path, max_bytes)
    try:
        onnx = parse_model(data)
    except ModelFormatError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    sizes = check_graph(onnx, str(path))
    sha256 = hashlib.sha256(data).hexdigest()
    if backend == "auto":
        chosen, runner, reason = _auto(data, onnx, sizes, path)
    else:
        chosen, reason = _choose_backend(backend), f"{backend} asked for"
        runner = _runner(chosen, data, onnx, sizes, path)
    log.info("%s runs on %s (%s)", path.name, chosen, reason)
    return Model(path, sha256, chosen, onnx, runner, reason)


def _runner(backend: Backend, data: bytes, onnx: OnnxModel, sizes: SizePlan, path: Path) -> _Runner:
    if backend == "onnxruntime":
        return _SizeChecked(_OnnxruntimeRunner(data, path), sizes)
    return _numpy_graph(onnx, path)  # checks the size of each node as it runs


def _auto(
    data: bytes, onnx: OnnxModel, sizes: SizePlan, path: Path
) -> tuple[Backend, _Runner, str]:
    from models.backend_choice import auto_backend, model_cost

    chosen, reason = auto_backend(model_cost(onnx, sizes), _onnxruntime_installed)
    if chosen == "numpy":
        try:
            return chosen, _numpy_graph(onnx, path), reason
        except UnsupportedModel as exc:  # something else it lacks: an old opset, say
            if not _onnxruntime_installed():
                raise
            reason = f"auto: the numpy backend cannot run it ({exc})"
            chosen = "onnxruntime"
    return chosen, _runner(chosen, data, onnx, sizes, path), reason


def _onnxruntime_installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def read_model_file(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of the model file at ``path``, refused unread when over ``max_bytes``."""
    chunks: list[bytes] = []
    total = 0
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            # What stat says, plus one byte to see a file that grew (or a device file, size
            # 0), then on in 1 MiB steps: read(n) allocates n bytes before it reads.
            want = size + 1
            while size <= max_bytes and total <= max_bytes:
                chunk = file.read(min(want, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                want = 1 << 20
    except FileNotFoundError as exc:
        raise ModelNotFoundError(f"no model file at {path}") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
    if size > max_bytes or total > max_bytes:
        raise ModelTooLarge(
            f"{path}: the model file has {max(size, total):,} bytes or more, over the limit "
            f"of {max_bytes:,}"
        )
    return b"".join(chunks)


def _numpy_graph(onnx: OnnxModel, path: Path) -> _Runner:
    from models.numpy_backend import NumpyGraph

    try:
        return NumpyGraph(onnx, str(path))
    except ModelError:
        raise
    # numpy's own errors on what the checks above let through: still this file's fault.
    except (ValueError, TypeError, IndexError, ArithmeticError, MemoryError) as exc:
        raise ModelFormatError(f"{path}: cannot prepare the model: {exc}") from exc


def _choose_backend(backend: str) -> Backend:
    """The backend asked for by name, if it can be imported."""
    if backend == "numpy":
        return "numpy"
    if not _onnxruntime_installed():
        raise BackendUnavailable(
            "onnxruntime is not installed (there is no wheel for 32-bit ARM); "
            'use backend="numpy" or backend="auto"'
        )
    return "onnxruntime"


class _SizeChecked:
    """A runner whose graph's sizes are checked for each new set of input shapes before it
    runs: onnxruntime allocates inside a run, where nothing can refuse a bomb any more."""

    _REMEMBERED = 64  # input shape sets known to be fine; a detector feeds one

    def __init__(self, runner: _Runner, sizes: SizePlan) -> None:
        self._runner = runner
        self._sizes = sizes
        self._fine: set[tuple[tuple[str, tuple[int, ...]], ...]] = set()

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        key = tuple((name, array.shape) for name, array in feeds.items())
        if key not in self._fine:
            try:
                self._sizes.check(dict(key))
            except ModelTooLarge as exc:
                raise ModelRunError(str(exc)) from exc
            if len(self._fine) < self._REMEMBERED:
                self._fine.add(key)
        return self._runner.run(feeds)


class _OnnxruntimeRunner:
    """One onnxruntime session, single-threaded and sequential so a Pi's other work keeps its
    cores and timings stay predictable."""

    def __init__(self, data: bytes, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Fatal only: its warnings would flood a device's journal, and its errors reach the
        # caller as ModelRunError / ModelFormatError with the same message.
        options.log_severity_level = 4
        self._path = path
        try:
            self._session = ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        # onnxruntime's errors are pybind classes with no common base but Exception.
        except Exception as exc:
            # Its graph optimizer rejects some valid graphs (a Transpose folded into a Gemm
            # whose output is also a graph output loses that output): run those unoptimized.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                self._session = ort.InferenceSession(
                    data, sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception:
                raise ModelFormatError(f"{path}: onnxruntime cannot load the model: {exc}") from exc
            log.warning("%s: onnxruntime's graph optimizer failed (%s); running it unoptimized",
                        path.name, exc)  # fmt: skip
        self._names: list[str] = [output.name for output in self._session.get_outputs()]

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        try:
            values = self._session.run(self._names, feeds)
        except Exception as exc:
            raise ModelRunError(f"{self._path.name}: onnxruntime failed: {exc}") from exc
        return dict(zip(self._names, values, strict=True))
