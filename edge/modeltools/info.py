"""``edge model info``: describe a model file and check its weights against their sha256."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.loader import TensorSpec
from models.metadata import WeightsCheck, read_model, verify


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    metadata: dict[str, str]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    file_sha256: str
    weights: WeightsCheck

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
        }

    def summary(self) -> str:
        width = max((len(k) for k in self.metadata), default=0)
        lines = [f"{self.path}", f"  inputs:  {', '.join(self.inputs)}"]
        lines.append(f"  outputs: {', '.join(self.outputs)}")
        lines += [f"  {key:<{width}}  {value}" for key, value in self.metadata.items()]
        lines.append(f"  file sha256 {self.file_sha256}")
        lines.append(f"  {self.weights}")
        return "\n".join(lines)


def info(model_path: str | Path) -> ModelInfo:
    """Metadata, inputs and outputs of a model file, and whether its weights are intact."""
    # Decoded, not loaded: describing a model needs no backend, and must work for one that
    # no backend here can run.
    model = read_model(model_path)
    initialized = {t.name for t in model.graph.initializers}
    return ModelInfo(
        path=Path(model_path),
        metadata=dict(model.metadata),
        inputs=tuple(
            str(TensorSpec.from_value_info(v))
            for v in model.graph.inputs
            if v.name not in initialized
        ),
        outputs=tuple(str(TensorSpec.from_value_info(v)) for v in model.graph.outputs),
        file_sha256=hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
        weights=verify(model_path),
    )
