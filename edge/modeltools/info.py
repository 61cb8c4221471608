"""``edge model info``: describe a model file and check its weights against their sha256.

A model is named as in a config: a shipped model by its bare name, else a path
(:func:`model_file`, which ``edge model eval`` uses too).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.modeltools.series import ModelCommandError
from models.backend_choice import auto_backend, model_cost
from models.loader import ModelTooLarge, TensorSpec
from models.metadata import WeightsCheck, read_model, verify
from models.onnx_reader import OnnxModel
from models.shipped import SHIPPED, model_path


def model_file(model: str | Path) -> Path:
    """The file ``model`` names, as a detector's ``model = ...`` does: a shipped model by its
    bare name (``vibration``), else a path. ModelCommandError (bad input) when it is
    neither an existing file nor a shipped model's name."""
    path = model_path(str(model))
    try:
        if path.is_file():
            return path
        why = "not a file" if path.exists() else "no such file"
    except OSError as exc:  # a name too long for the file system, say
        why = exc.strerror or str(exc)
    name = str(model) if str(model).isprintable() else repr(str(model))  # one line
    raise ModelCommandError(
        f"{name}: {why}, and not one of the shipped models ({', '.join(SHIPPED)})"
    )


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    metadata: dict[str, str]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    file_sha256: str
    weights: WeightsCheck
    backend: str  # what backend = "auto" would run it on, and why

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``edge model info --json``)."""
        return {
            "path": str(self.path),
            "metadata": dict(self.metadata),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "file_sha256": self.file_sha256,
            "weights_sha256": self.weights.actual,
            "weights_ok": self.weights.ok,
            "backend": self.backend,
        }

    def summary(self) -> str:
        width = max((len(k) for k in self.metadata), default=0)
        lines = [f"{self.path}", f"  inputs:  {', '.join(self.inputs)}"]
        lines.append(f"  outputs: {', '.join(self.outputs)}")
        lines += [f"  {key:<{width}}  {value}" for key, value in self.metadata.items()]
        lines.append(f"  file sha256 {self.file_sha256}")
        lines.append(f"  {self.weights}")
        lines.append(f"  backend {self.backend}")
        return "\n".join(lines)


def info(model: str | Path) -> ModelInfo:
    """Metadata, inputs and outputs of a model file (or a shipped model, by name), and
    whether its weights are intact."""
    path = model_file(model)
    # Decoded, not loaded: describing a model needs no backend, and must work for one that
    # no backend here can run.
    decoded = read_model(path)
    initialized = {t.name for t in decoded.graph.initializers}
    return ModelInfo(
        path=path,
        metadata=dict(decoded.metadata),
        inputs=tuple(
            str(TensorSpec.from_value_info(v))
            for v in decoded.graph.inputs
            if v.name not in initialized
        ),
        outputs=tuple(str(TensorSpec.from_value_info(v)) for v in decoded.graph.outputs),
        file_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        weights=verify(path),
        backend=_auto_backend(decoded, str(path)),
    )


def _auto_backend(decoded: OnnxModel, where: str) -> str:
    """``numpy (auto: small, ...)``: what loading it with backend "auto" would do here."""
    from models.shapes import check_graph

    try:
        sizes = check_graph(decoded, where)
    except ModelTooLarge as exc:
        return f"none: {exc}"
    chosen, reason = auto_backend(model_cost(decoded, sizes), _onnxruntime_installed)
    return f"{chosen} ({reason})"


def _onnxruntime_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None
