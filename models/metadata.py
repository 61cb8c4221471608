"""What an anomaly model file says about itself, and the check that its weights are intact.

A model written by :mod:`models.training` carries, in the ONNX ``metadata_props`` (string
keys to string values, readable without the ``onnx`` package):

========================  ==================================================================
``name``, ``version``     what the model is called, and which revision
``created``               UTC ISO 8601 time the file was written
``input``                 one line describing the input tensor ("features" [1, k] float32)
``features``              the :class:`~models.features.FeatureSpec` string, e.g. ``rms,band:80-100``
``window``, ``hop``       readings per window, readings between windows
``width``                 vector length of a reading (3 for x, y, z); empty for scalars
``rate``                  sample rate (Hz) the features were computed at
``sensor``, ``quantity``  what was trained on (quantity empty for a single-valued sensor)
``inputs``                optional: other series (``sensor.quantity``, comma-separated) joined
                          to each reading of ``sensor`` as the vector's later elements
``threshold``             score above which a window is anomalous
``calibration``           JSON: how the threshold was chosen (method, fpr, held-out windows)
``training``              JSON: training data summary (source file, windows, readings...)
``weights_sha256``        :func:`weights_digest` of the initializers
========================  ==================================================================

``weights_sha256`` covers the weights, not the file: metadata may be edited (a threshold
retuned) without invalidating it, while one flipped weight byte is caught by :func:`verify`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ModelError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from models.onnx_reader import OnnxModel

WEIGHTS_KEY = "weights_sha256"


class MetadataError(ModelError, ValueError):
    """A model file's metadata is missing a key or holds a value of the wrong form."""


@dataclass(frozen=True)
class ModelMetadata:
    """The metadata of an edgeline anomaly model, typed; see the module doc for each key."""

    name: str
    version: str
    created: str
    input: str
    features: str
    window: int
    hop: int
    width: int | None
    rate: float
    sensor: str
    quantity: str | None
    threshold: float
    calibration: Mapping[str, Any]
    training: Mapping[str, Any]
    weights_sha256: str
    inputs: tuple[str, ...] = ()

    def as_props(self) -> dict[str, str]:
        """The ``metadata_props`` strings, keys in a fixed order."""
        return {
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "input": self.input,
            "features": self.features,
            "window": str(self.window),
            "hop": str(self.hop),
            "width": "" if self.width is None else str(self.width),
            "rate": repr(self.rate),
            "sensor": self.sensor,
            "quantity": self.quantity or "",
            **({"inputs": ",".join(self.inputs)} if self.inputs else {}),
            "threshold": repr(self.threshold),
            "calibration": json.dumps(dict(self.calibration), sort_keys=True),
            "training": json.dumps(dict(self.training), sort_keys=True),
            WEIGHTS_KEY: self.weights_sha256,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str = "model") -> ModelMetadata:
        """Parse ``metadata_props``; raise :class:`MetadataError` naming the bad key."""

        def get(key: str) -> str:
            if key not in props:
                raise MetadataError(
                    f"{where}: metadata has no {key!r} (not a model written by edge model train?)"
                )
            return props[key]

        def number(key: str, kind: type[int] | type[float]) -> Any:
            text = get(key)
            try:
                value = kind(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise MetadataError(
                    f"{where}: metadata {key!r} must be a finite number, found {text!r}"
                )
            return value

        def document(key: str) -> dict[str, Any]:
            try:
                value = json.loads(get(key))
            except ValueError:
                value = None
            if not isinstance(value, dict):
                raise MetadataError(f"{where}: metadata {key!r} must be a JSON object")
            return value

        return cls(
            name=get("name"),
            version=get("version"),
            created=get("created"),
            input=get("input"),
            features=get("features"),
            window=number("window", int),
            hop=number("hop", int),
            width=number("width", int) if get("width") else None,
            rate=number("rate", float),
            sensor=get("sensor"),
            quantity=get("quantity") or None,
            threshold=number("threshold", float),
            calibration=document("calibration"),
            training=document("training"),
            weights_sha256=get(WEIGHTS_KEY),
            inputs=tuple(name for name in props.get("inputs", "").split(",") if name),
        )


def weights_digest(weights: Mapping[str, npt.NDArray[Any]]) -> str:
    """sha256 over named arrays, independent of how a file encodes them.

    Arrays are taken in name order; each contributes its name, dtype, shape and its values as
    little-endian C-order bytes. The same weights so give the same digest whether written as
    ``raw_data`` or as typed fields, and any changed value, shape or name changes it.
    """
    import numpy as np

    digest = hashlib.sha256()
    for name in sorted(weights):
        array = np.asarray(weights[name])
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        shape = ",".join(map(str, array.shape))
        digest.update(f"{name}\0{array.dtype.name}\0{shape}\0".encode())
        digest.update(np.ascontiguousarray(little).tobytes())
    return digest.hexdigest()


def model_weights_digest(model: OnnxModel, where: str = "model") -> str:
    """:func:`weights_digest` of a decoded model's initializers."""
    from models.numpy_backend import tensor_to_array

    arrays: dict[str, np.ndarray[Any, Any]] = {
        t.name: tensor_to_array(t, where) for t in model.graph.initializers
    }
    return weights_digest(arrays)


@dataclass(frozen=True)
class WeightsCheck:
    """The outcome of :func:`verify`: the digest the metadata claims and the one recomputed."""

    expected: str | None  # None: the file has no weights_sha256
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected == self.actual

    def __str__(self) -> str:
        if self.expected is None:
            return f"no {WEIGHTS_KEY} in the metadata (weights {self.actual})"
        if self.ok:
            return f"weights intact (sha256 {self.actual})"
        return f"weights MODIFIED: metadata says {self.expected}, the weights hash to {self.actual}"


def read_model(path: str | Path) -> OnnxModel:
    """Decode the ONNX file at ``path`` without the ``onnx`` package."""
    from models.loader import read_model_file
    from models.onnx_reader import ModelFormatError, parse_model

    data = read_model_file(Path(path))
    try:
        return parse_model(data)
    except ModelFormatError as exc:
        raise type(exc)(f"{path}: {exc}") from exc


def read_metadata(path: str | Path) -> ModelMetadata:
    """The typed metadata of the model file at ``path``."""
    return ModelMetadata.from_props(read_model(path).metadata, str(path))


def verify(path: str | Path) -> WeightsCheck:
    """Recompute the weights' sha256 of the model at ``path`` and compare it to its metadata."""
    model = read_model(path)
    return WeightsCheck(model.metadata.get(WEIGHTS_KEY), model_weights_digest(model, str(path)))
