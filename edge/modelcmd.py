"""``edge model train|eval|info`` as library functions: recording in, model file and reports out.

A model sees one sensor's series: the readings of ``sensor`` in a recording, one quantity of a
multi-quantity sensor (``quantity``), and a vector reading (an accelerometer's x, y, z) as one
reading of ``width`` values. The series goes through a :class:`~models.windows.Window` and
:func:`~models.features.features` exactly as training wrote into the model's metadata, so
``train`` and ``evaluate`` cannot disagree on how a window becomes the model's input.

- :func:`train` fits on normal data only: readings inside a scored label's window (``anomaly``
  or ``fault`` on this sensor, or on the whole device) are left out, and no window spans the
  gap they leave.
- :func:`evaluate` replays every reading in order, one at a time, scores each window, turns
  scores into alarms (an ``active`` when the score rises above the threshold, one ``clear``
  when it is back at or below) and scores those with :func:`edge.labels.score` against the
  labels that concern the sensor.
- :func:`info` describes a model file and checks its weights against their sha256.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import ModelError
from models.features import FeatureSpec
from models.features import features as compute_features
from models.loader import TensorSpec
from models.metadata import ModelMetadata, WeightsCheck, read_metadata, read_model, verify
from models.windows import Window

from .errors import EdgelineError
from .labels import ANOMALY, SCORED_KINDS, Label, Score, score
from .recording import RecordingData, read_recording

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]

DEFAULT_FPR = 1e-3
DEFAULT_HOLDOUT = 0.25


class ModelCommandError(EdgelineError, ValueError):
    """A model command's input cannot be used (no such sensor, no readings, bad options)."""


# -- the series a model sees ------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One sensor's numeric readings in time order; ``values`` (n,) or (n, width)."""

    sensor: str
    quantity: str | None
    times: FloatArray
    values: FloatArray
    width: int | None
    skipped: int  # readings with no usable number (a failed read, a null)

    @property
    def rate(self) -> float:
        """Sample rate in Hz, from the median interval (robust to a gap or a late reading)."""
        steps = np.diff(self.times)
        steps = steps[steps > 0]
        if len(steps) == 0:
            raise ModelCommandError(f"sensor {self.sensor!r}: readings span no time")
        return float(1.0 / np.median(steps))


def series(
    recording: RecordingData, sensor: str, quantity: str | None = None, *, source: str = ""
) -> Series:
    """The readings of ``sensor`` (and ``quantity``) in ``recording`` as arrays."""
    where = f"{source}: " if source else ""
    if sensor not in recording.header.sensors and not any(recording.readings_of(sensor)):
        known = ", ".join(sorted(recording.header.sensors)) or "none"
        raise ModelCommandError(f"{where}no sensor {sensor!r} in the recording (sensors: {known})")
    times: list[float] = []
    values: list[Any] = []
    width: int | None = None
    skipped = 0
    for reading in recording.readings_of(sensor):
        value = _pick(reading.value, sensor, quantity, where)
        if value is None:
            skipped += 1
            continue
        size = None if isinstance(value, float) else len(value)
        if values and size != width:
            raise ModelCommandError(
                f"{where}sensor {sensor!r} changes shape at t={reading.t}: "
                f"{width or 'scalar'} values before, {size or 'a scalar'} now"
            )
        width = size
        times.append(reading.t)
        values.append(value)
    if not values:
        raise ModelCommandError(f"{where}sensor {sensor!r} has no numeric readings")
    shape = (len(values),) if width is None else (len(values), width)
    return Series(
        sensor,
        quantity,
        np.asarray(times, dtype=np.float64),
        np.asarray(values, dtype=np.float64).reshape(shape),
        width,
        skipped,
    )


def joined(
    recording: RecordingData, data: Series, inputs: Sequence[str], *, source: str = ""
) -> Series:
    """``data`` with the latest reading of each of ``inputs`` appended to each of its readings.

    As the runtime joins a detector's ``inputs``: a reading of ``data`` before every joined
    series has read once is dropped. ``inputs`` name ``sensor`` or ``sensor.quantity``.
    """
    if not inputs:
        return data
    if data.width is not None:
        raise ModelCommandError(
            f"sensor {data.sensor!r} gives vectors: only a scalar series takes joined inputs"
        )
    columns = [data.values]
    first = np.zeros(len(data.times), dtype=bool)
    for name in inputs:
        sensor, dot, quantity = name.partition(".")
        other = series(recording, sensor, quantity if dot else None, source=source)
        if other.width is not None:
            raise ModelCommandError(f"input {name!r} gives vectors: join scalar series only")
        at = np.searchsorted(other.times, data.times, side="right") - 1
        first |= at < 0
        columns.append(other.values[np.maximum(at, 0)])
    keep = ~first
    return Series(
        data.sensor,
        data.quantity,
        data.times[keep],
        np.stack(columns, axis=1)[keep],
        1 + len(inputs),
        data.skipped,
    )


def _series_names(sensor: str, quantity: str | None, inputs: Sequence[str]) -> list[str]:
    return [f"{sensor}.{quantity}" if quantity else sensor, *inputs]


def _pick(value: Any, sensor: str, quantity: str | None, where: str) -> float | list[float] | None:
    """A reading's number (or vector) for ``quantity``; None when it holds none."""
    if isinstance(value, Mapping):
        if quantity is None:
            raise ModelCommandError(
                f"{where}sensor {sensor!r} reads several quantities "
                f"({', '.join(sorted(value))}): choose one with quantity"
            )
        if quantity not in value:
            raise ModelCommandError(
                f"{where}sensor {sensor!r} has no quantity {quantity!r} "
                f"(it has {', '.join(sorted(value))})"
            )
        return _pick(value[quantity], sensor, None, where)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, list) and value and all(_number(v) for v in value):
        return [float(v) for v in value]
    return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def concerns(label: Label, sensor: str | Sequence[str]) -> bool:
    """Whether ``label`` is about ``sensor`` (any of its quantities; or any of several series,
    each ``sensor`` or ``sensor.quantity``) or the whole device."""
    if label.sensor is None:
        return True
    names = [sensor] if isinstance(sensor, str) else sensor
    return label.sensor.split(".")[0] in {name.split(".")[0] for name in names}


def normal_segments(
    data: Series, labels: Sequence[Label], names: Sequence[str] = ()
) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` index runs of ``data`` outside every scored label window on it (or
    on any of the series ``names`` joined to it)."""
    abnormal = np.zeros(len(data.times), dtype=bool)
    for label in labels:
        if label.kind in SCORED_KINDS and concerns(label, names or data.sensor):
            abnormal |= (data.times >= label.start) & (data.times <= label.end)
    edges = np.flatnonzero(np.diff(np.concatenate(([True], abnormal, [True])).astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        yield int(start), int(stop)


def feature_matrix(
    data: Series,
    segments: Iterator[tuple[int, int]],
    window: int,
    hop: int,
    spec: FeatureSpec,
    rate: float,
) -> tuple[NDArray[np.float32], int]:
    """Feature vectors of every window inside the segments, in time order; and readings used."""
    win = Window(window, hop, width=data.width)
    rows: list[NDArray[np.float32]] = []
    used = 0
    for start, stop in segments:
        win.reset()  # a window never spans the readings left out between segments
        batch = win.push_block(data.times[start:stop], data.values[start:stop])
        rows.extend(compute_features(values, spec, rate) for values in batch.values)
        used += stop - start
    k = len(spec) * (data.width or 1)
    matrix = np.stack(rows) if rows else np.empty((0, k), dtype=np.float32)
    return matrix, used


# -- train ------------------------------------------------------------------------------------


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
) -> TrainReport:
    """Fit an anomaly model on the normal readings of ``sensor`` and write it to ``out``.

    ``hop`` defaults to ``window`` (tumbling windows). ``components``: a count, or the
    fraction of variance to keep. ``false_alarms_per_day``, when given, sets ``fpr`` from the
    window rate (see :mod:`models.training`). Raises :class:`ModelCommandError` for unusable
    input, :class:`~models.errors.ParamsError` for bad parameters.
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
    names = _series_names(sensor, quantity, inputs)
    segments = list(normal_segments(data, recording.labels, names))
    matrix, used = feature_matrix(data, iter(segments), window, hop, spec, rate)
    gap = math.ceil(window / hop) - 1  # windows sharing readings with the last fitted one
    try:
        trained = training.train(matrix, components=components, fpr=fpr, holdout=holdout, gap=gap)
    except ModelError as exc:
        raise ModelCommandError(f"{recording_path}: {exc}") from exc
    model, calibration = trained.model, trained.calibration
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
    )


def _check_window(window: int, hop: int) -> None:
    if window < 2:
        raise ModelCommandError(f"window must be at least 2 readings, got {window}")
    if not 1 <= hop <= window:
        raise ModelCommandError(f"hop must be between 1 and the window ({window}), got {hop}")


# -- evaluate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    """An alarm change as :func:`edge.labels.score` reads events (a ScoredEvent)."""

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
    alarms: tuple[Alarm, ...]  # active and clear changes, in order
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
    """Replay ``sensor``'s readings through the model and score its alarms against the labels.

    ``sensor`` and ``quantity`` default to those the model was trained on; ``threshold`` to
    its metadata's. ``grace`` (seconds after a label's end an alarm still counts) defaults to
    one window's span: a window ending then still holds readings from inside the label.
    Only labels concerning the sensor (or the whole device) are scored.
    """
    import models

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
    alarms: list[Alarm] = []
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
            alarms.append(Alarm(float(t), sensor, ANOMALY, fields))
    labels = _labels_for(recording.labels, sensor, _series_names(sensor, quantity, meta.inputs))
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


# -- info -------------------------------------------------------------------------------------


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
