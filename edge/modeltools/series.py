"""The series a model sees, taken from a recording, and how it becomes feature windows.

A model sees one sensor's series: the readings of ``sensor`` in a recording, one quantity of a
multi-quantity sensor (``quantity``), and a vector reading (an accelerometer's x, y, z) as one
reading of ``width`` values. The series goes through a :class:`~models.windows.Window` and
:func:`~models.features.features` exactly as training wrote into the model's metadata, so
``train`` and ``evaluate`` cannot disagree on how a window becomes the model's input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.errors import EdgelineError
from edge.sim.labels import SCORED_KINDS, Label
from edge.sim.recording import RecordingData
from models.features import FeatureSpec
from models.features import features as compute_features
from models.windows import Window

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]


DEFAULT_FPR = 1e-3
DEFAULT_HOLDOUT = 0.25


class ModelCommandError(EdgelineError, ValueError):
    """A model command's input cannot be used (no such sensor, no readings, bad options)."""


@dataclass(frozen=True)
class SensorSeries:
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
) -> SensorSeries:
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
    return SensorSeries(
        sensor,
        quantity,
        np.asarray(times, dtype=np.float64),
        np.asarray(values, dtype=np.float64).reshape(shape),
        width,
        skipped,
    )


def joined(
    recording: RecordingData, data: SensorSeries, inputs: Sequence[str], *, source: str = ""
) -> SensorSeries:
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
    return SensorSeries(
        data.sensor,
        data.quantity,
        data.times[keep],
        np.stack(columns, axis=1)[keep],
        1 + len(inputs),
        data.skipped,
    )


def series_names(sensor: str, quantity: str | None, inputs: Sequence[str]) -> list[str]:
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
    data: SensorSeries, labels: Sequence[Label], names: Sequence[str] = ()
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
    data: SensorSeries,
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
