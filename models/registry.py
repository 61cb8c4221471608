"""The detector types a config may name, keyed by the ``type`` used in the config table.

Entries must stay cheap to import: a detector that needs numpy or onnxruntime imports it inside
its ``build``, so a config without such a detector never pays for it.
"""

from __future__ import annotations

from models.adaptive import AdaptiveDetector, AdaptiveParams
from models.detection import DetectorType
from models.onnx_detector import OnnxDetector, OnnxParams
from models.rules import RateDetector, RateParams, ZScoreDetector, ZScoreParams
from models.threshold import ThresholdDetector, ThresholdParams

DETECTOR_TYPES: dict[str, DetectorType] = {
    t.name: t
    for t in [
        DetectorType(
            name="adaptive",
            params=AdaptiveParams,
            build=AdaptiveDetector,
            summary="learn a signal's normal behaviour as it runs; alarm on what is not",
        ),
        DetectorType(
            name="threshold",
            params=ThresholdParams,
            build=ThresholdDetector,
            summary="alarm when a value stays above or below a limit; clear with hysteresis",
        ),
        DetectorType(
            name="rate",
            params=RateParams,
            build=RateDetector,
            summary="alarm when a value rises or falls faster than a rate (per second or minute)",
        ),
        DetectorType(
            name="zscore",
            params=ZScoreParams,
            build=ZScoreDetector,
            summary="alarm when a value is many standard deviations off its rolling baseline",
        ),
        DetectorType(
            name="onnx",
            params=OnnxParams,
            build=OnnxDetector,
            summary="alarm when an ONNX model's anomaly score for a window of readings is high",
        ),
    ]
}
