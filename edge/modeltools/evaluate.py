"""``edge model eval``: replay a labelled recording through a model and score its alarms.

Every reading goes in order, one at a time; each window is scored, scores become alarms (an
``active`` when the score rises above the threshold, one ``clear`` when it is back at or
below) and those are scored with :func:`edge.sim.labels.score` against the labels that
concern the sensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.sim.labels import ANOMALY, Label, Score, score
from edge.sim.recording import read_recording
from models.features import FeatureSpec
from models.features import features as compute_features
from models.metadata import read_metadata
from models.windows import Window

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]
from edge.modeltools.info import model_file
from edge.modeltools.series import ModelCommandError, concerns, joined, series, series_names


@dataclass(frozen=True)
class ModelAlarm:
    """An alarm change as :func:`edge.sim.labels.score` reads events (a ScoredEvent)."""

    t: float
    sensor: str
    kind: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalReport:
    model: Path
    recording: Path
    sensor: str
    quantity: str | None
    threshold: float
    windows: int  # windows scored
    alarms: tuple[ModelAlarm, ...]  # active and clear changes, in order
    score: Score
    scores: NDArray[np.float32] = field(repr=False)  # one per window, in order
    times: FloatArray = field(repr=False)  # each window's last reading time

    def summary(self) -> str:
        raised = sum(1 for a in self.alarms if a.fields.get("state") == "active")
        return "\n".join(
            [
                f"{self.model.name} on {self.recording.name} ({self.sensor}"
                f"{'.' + self.quantity if self.quantity else ''}): {self.windows} windows, "
                f"threshold {self.threshold:.6g}, {raised} alarm(s)",
                f"  {self.score.summary()}",
            ]
        )


def evaluate(
    model_path: str | Path,
    recording_path: str | Path,
    *,
    sensor: str | None = None,
    quantity: str | None = None,
    grace: float | None = None,
    threshold: float | None = None,
    backend: str = "auto",
) -> EvalReport:
    """Replay ``sensor``'s readings through the model (a file, or a shipped model by name)
    and score its alarms against the labels.

    ``sensor`` and ``quantity`` default to those the model was trained on; ``threshold`` to
    its metadata's. ``grace`` (seconds after a label's end an alarm still counts) defaults to
    one window's span: a window ending then still holds readings from inside the label.
    Only labels concerning the sensor (or the whole device) are scored.
    """
    import models

    model_path = model_file(model_path)  # a shipped model's name, as in a config, or a path
    meta = read_metadata(model_path)
    sensor = sensor or meta.sensor
    quantity = quantity if quantity is not None or sensor != meta.sensor else meta.quantity
    limit = meta.threshold if threshold is None else threshold
    spec = FeatureSpec.parse(meta.features)
    model = models.load(model_path, backend)
    recording = read_recording(recording_path)
    data = series(recording, sensor, quantity, source=str(recording_path))
    data = joined(recording, data, meta.inputs, source=str(recording_path))
    if data.width != meta.width:
        raise ModelCommandError(
            f"{model_path} takes readings of width {meta.width or 'scalar'}, but {sensor} "
            f"gives {data.width or 'scalars'}"
        )
    grace = meta.window / meta.rate if grace is None else grace
    win = Window(meta.window, meta.hop, width=meta.width)
    scores: list[float] = []
    ends: list[float] = []
    alarms: list[ModelAlarm] = []
    active = False
    for t, value in zip(data.times, data.values, strict=True):  # one at a time, as on a device
        values = win.push(float(t), value)
        if values is None:
            continue
        vector = compute_features(values, spec, meta.rate).reshape(1, -1)
        s = float(model.run({"features": vector})["score"].reshape(-1)[0])
        scores.append(s)
        ends.append(float(t))
        if (s > limit) != active:
            active = not active
            fields = {"state": "active" if active else "clear", "score": s, "threshold": limit}
            if quantity is not None and not meta.inputs:
                fields["quantity"] = quantity
            alarms.append(ModelAlarm(float(t), sensor, ANOMALY, fields))
    labels = _labels_for(recording.labels, sensor, series_names(sensor, quantity, meta.inputs))
    result = score(labels, alarms, grace=grace, duration=recording.header.duration)
    return EvalReport(
        model=Path(model_path),
        recording=Path(recording_path),
        sensor=sensor,
        quantity=quantity,
        threshold=limit,
        windows=len(scores),
        alarms=tuple(alarms),
        score=result,
        scores=np.asarray(scores, dtype=np.float32),
        times=np.asarray(ends, dtype=np.float64),
    )


def _labels_for(labels: Sequence[Label], sensor: str, names: Sequence[str]) -> list[Label]:
    """The labels a model on ``names`` answers for. A model on joined series answers for each
    of them as one: their labels move to ``sensor`` as a whole, one per distinct window."""
    if len(names) == 1:
        return [label for label in labels if concerns(label, sensor)]
    merged: dict[tuple[str, str, float, float], Label] = {}
    for label in labels:
        if concerns(label, names):
            moved = replace(label, sensor=None if label.sensor is None else sensor)
            merged.setdefault((moved.kind, moved.label, moved.start, moved.end), moved)
    return list(merged.values())
