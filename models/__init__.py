"""Detectors: turn a series of readings into significant detections.

Importing this package is cheap (no numpy, no onnxruntime); heavy backends load only when a
detector that needs them is built.
"""

from models.adaptive import AdaptiveDetector, AdaptiveParams
from models.detection import (
    BlockDetector,
    Detection,
    Detector,
    DetectorType,
    PersistentDetector,
    Severity,
    VectorDetector,
)
from models.errors import ModelError, ParamsError
from models.loader import (
    BackendUnavailable,
    Model,
    ModelFileError,
    ModelFormatError,
    ModelInputError,
    ModelNotFoundError,
    ModelRunError,
    ModelTooLarge,
    TensorSpec,
    UnsupportedModel,
    UnsupportedOperator,
    load,
)
from models.registry import DETECTOR_TYPES
from models.threshold import ThresholdDetector, ThresholdParams

__all__ = [
    "DETECTOR_TYPES",
    "AdaptiveDetector",
    "AdaptiveParams",
    "BackendUnavailable",
    "BlockDetector",
    "Detection",
    "Detector",
    "DetectorType",
    "Model",
    "ModelError",
    "ModelFileError",
    "ModelFormatError",
    "ModelInputError",
    "ModelNotFoundError",
    "ModelRunError",
    "ModelTooLarge",
    "ParamsError",
    "PersistentDetector",
    "Severity",
    "TensorSpec",
    "ThresholdDetector",
    "ThresholdParams",
    "UnsupportedModel",
    "UnsupportedOperator",
    "VectorDetector",
    "load",
]
