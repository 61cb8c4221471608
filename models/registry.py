"""The detector types a config may name, keyed by the ``type`` used in the config table.

Entries must stay cheap to import: a detector that needs numpy or onnxruntime imports it inside
its ``build``, so a config without such a detector never pays for it.
"""

from __future__ import annotations

from models.detection import DetectorType
from models.threshold import ThresholdDetector, ThresholdParams

DETECTOR_TYPES: dict[str, DetectorType] = {
    t.name: t
    for t in [
        DetectorType(
            name="threshold",
            params=ThresholdParams,
            build=ThresholdDetector,
            summary="alarm when a value stays above or below a limit; clear with hysteresis",
        ),
    ]
}
