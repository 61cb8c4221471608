"""``edge model train``: fit a PCA model on the normal readings of a recording.

It fits on normal data only: readings inside a scored label's window (``anomaly`` or
``fault`` on this sensor, or on the whole device) are left out, and no window spans the gap
they leave. The threshold is calibrated on held-out windows; the file carries its metadata.
With ``labels`` (a device's feedback file), operators' verdicts join in: the readings of
false alarms are fitted as normal, and true alarms and misses are scored against the
threshold (:mod:`edge.modeltools.verdicts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.sim.recording import read_recording
from models.errors import ModelError
from models.features import FeatureSpec
from models.metadata import ModelMetadata

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
from edge.modeltools.series import (
    DEFAULT_FPR,
    DEFAULT_HOLDOUT,
    ModelCommandError,
    feature_matrix,
    joined,
    normal_segments,
    series,
    series_names,
)
from edge.modeltools.verdicts import verdict_windows


@dataclass(frozen=True)
class TrainReport:
    path: Path
    metadata: ModelMetadata
    readings: int  # readings of the series
    excluded: int  # of those, left out as inside a labelled anomaly or fault
    windows: int  # normal windows built
    fitted: int
    held_out: int
    components: int
    explained: float
    resolved: bool  # enough held-out windows to place the fpr quantile
    feedback: dict[str, int] | None = None  # what the verdicts gave, with labels

    def summary(self) -> str:
        m = self.metadata
        from models.training import daily_false_alarms

        per_day = daily_false_alarms(m.calibration["fpr"], hop=m.hop, rate=m.rate)
        lines = [
            f"wrote {self.path} ({m.name} {m.version})",
            f"  data: {self.readings} readings of {m.sensor}"
            f"{'.' + m.quantity if m.quantity else ''} at {m.rate:g} Hz, {self.excluded} left "
            f"out as labelled anomalies or faults; {self.windows} windows of {m.window} "
            f"(hop {m.hop})",
            f"  model: PCA reconstruction of {m.features} "
            f"({len(m.features.split(','))} features x {m.width or 1}), {self.components} "
            f"components explaining {self.explained:.1%} of the variance, fitted on "
            f"{self.fitted} windows",
            f"  threshold {m.threshold:.6g}: false-positive rate {m.calibration['fpr']:.3g} per "
            f"window (at most {per_day:.3g} alarm windows a day), {m.calibration['method']} "
            f"of {self.held_out} held-out windows",
            f"  weights sha256 {m.weights_sha256}",
        ]
        if self.feedback is not None:
            f = self.feedback
            lines.append(
                f"  verdicts: {f['false_alarm_windows']} windows of false alarms fitted as "
                f"normal; {f['anomalies_caught']} of {f['anomalies']} true alarms and misses "
                f"score above the threshold; {f['skipped']} verdicts skipped"
            )
        if not self.resolved:
            lines.append(
                f"  note: {self.held_out} held-out windows cannot place that rate (it takes "
                f"{math.ceil(1 / m.calibration['fpr'])}): "
                + (
                    "the threshold is extrapolated"
                    if m.calibration["method"] == "exponential tail"
                    else "the threshold is their largest score"
                )
            )
        return "\n".join(lines)


def train(
    recording_path: str | Path,
    *,
    sensor: str,
    quantity: str | None = None,
    inputs: Sequence[str] = (),
    window: int,
    hop: int | None = None,
    features: str | Sequence[str],
    out: str | Path,
    fpr: float = DEFAULT_FPR,
    false_alarms_per_day: float | None = None,
    holdout: float = DEFAULT_HOLDOUT,
    name: str | None = None,
    version: str = "1",
    components: int | float = 0.9,
    labels: str | Path | None = None,
) -> TrainReport:
    """Fit an anomaly model on the normal readings of ``sensor`` and write it to ``out``.

    ``hop`` defaults to ``window`` (tumbling windows). ``components``: a count, or the
    fraction of variance to keep. ``labels``: a device's feedback file, whose verdicts on
    this series join in (see the module docstring). ``false_alarms_per_day``, when given,
    sets ``fpr`` from the window rate (see :mod:`models.training`). Raises
    :class:`ModelCommandError` for unusable input, :class:`~models.errors.ParamsError` for
    bad parameters.
    """
    from models import training

    hop = window if hop is None else hop
    spec = FeatureSpec.parse(features)
    recording = read_recording(recording_path)
    data = series(recording, sensor, quantity, source=str(recording_path))
    data = joined(recording, data, inputs, source=str(recording_path))
    rate = data.rate
    spec.check_rate(rate)
    if false_alarms_per_day is not None:
        fpr = training.fpr_for_daily_false_alarms(false_alarms_per_day, hop=hop, rate=rate)
    _check_window(window, hop)
    names = series_names(sensor, quantity, inputs)
    segments = list(normal_segments(data, recording.labels, names))
    matrix, used = feature_matrix(data, iter(segments), window, hop, spec, rate)
    verdicts = None
    if labels is not None:
        if inputs or data.width is not None:
            raise ModelCommandError("--labels: verdict windows are one scalar series each")
        verdicts = verdict_windows(labels, sensor=sensor, quantity=quantity, window=window,
                                   hop=hop, spec=spec, rate=rate)  # fmt: skip
        # First, so they are fitted, never held out: the held-out windows stay the
        # recording's own last ones, as many as without the verdicts.
        held = max(1, round(len(matrix) * holdout))
        matrix = np.concatenate([verdicts.normal, matrix])
        holdout = held / len(matrix)
    gap = math.ceil(window / hop) - 1  # windows sharing readings with the last fitted one
    try:
        trained = training.train(matrix, components=components, fpr=fpr, holdout=holdout, gap=gap)
    except ModelError as exc:
        raise ModelCommandError(f"{recording_path}: {exc}") from exc
    model, calibration = trained.model, trained.calibration
    feedback = None
    if verdicts is not None:
        scores = np.asarray(model.score(verdicts.anomalous), dtype=np.float64).reshape(-1)
        feedback = {
            "verdicts": verdicts.used,
            "false_alarm_windows": len(verdicts.normal),
            "anomalies": len(verdicts.anomalous),
            "anomalies_caught": int((scores > calibration.threshold).sum()),
            "skipped": verdicts.skipped,
        }
    k = model.inputs
    meta = ModelMetadata(
        name=name or Path(out).stem,
        version=version,
        created=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        input=(
            f"{training.INPUT_NAME} [1, {k}] float32: features {spec} of {window}-reading "
            f"windows every {hop} readings of {' + '.join(names)} at "
            f"{rate:g} Hz, feature-major ({', '.join(spec.labels(data.width))}); "
            f"output {training.OUTPUT_NAME} [1, 1]: reconstruction error"
        ),
        features=str(spec),
        window=window,
        hop=hop,
        width=data.width,
        rate=rate,
        sensor=sensor,
        quantity=quantity,
        threshold=calibration.threshold,
        calibration=calibration.as_json(),
        training={
            "source": Path(recording_path).name,
            "scenario": recording.header.name,
            "seed": recording.header.seed,
            "sensor": sensor,
            "quantity": quantity,
            "inputs": list(inputs),
            "readings": used,
            "excluded_readings": len(data.times) - used,
            "windows": len(matrix),
            "fitted_windows": trained.fitted,
            "components": int(model.components.shape[1]),
            "explained_variance": round(model.explained, 6),
            "model": "pca-reconstruction",
            **(
                {"feedback": {"source": Path(labels).name, **feedback}}
                if feedback and labels
                else {}
            ),
        },
        weights_sha256="",
        inputs=tuple(inputs),
    )
    digest = training.export_onnx(model, out, meta.as_props())
    return TrainReport(
        path=Path(out),
        metadata=replace(meta, weights_sha256=digest),
        readings=len(data.times),
        excluded=len(data.times) - used,
        windows=len(matrix),
        fitted=trained.fitted,
        held_out=calibration.held_out,
        components=int(model.components.shape[1]),
        explained=model.explained,
        resolved=calibration.resolved,
        feedback=feedback,
    )


def _check_window(window: int, hop: int) -> None:
    if window < 2:
        raise ModelCommandError(f"window must be at least 2 readings, got {window}")
    if not 1 <= hop <= window:
        raise ModelCommandError(f"hop must be between 1 and the window ({window}), got {hop}")
