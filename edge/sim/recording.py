"""Recordings: a run's readings, events and ground truth as JSON Lines.

``edge simulate --record FILE`` writes one; the plot, the scorer and model training read
it back. Line by line, each a JSON object with a ``type``:

- ``scenario`` (first line, once): ``name``, ``device``, ``seed``, ``start`` (UTC ISO wall
  time at the run's start), ``duration`` (seconds), ``sensors`` ({id: {"type", "unit"}}
  or {id: {"type", "units": {quantity: unit}}}).
- ``label``: ``kind``, ``label``, ``sensor`` (or null), ``start``, ``end``.
- ``reading``: ``t``, ``sensor``, ``value``.
- ``event``: ``t``, ``sensor``, ``kind``, ``severity``, ``value``, ``fields``.

Times are seconds since the run's start rounded to the microsecond; floats keep nine
significant digits, tuples become lists and keys are sorted, so the same run gives the
same bytes on any machine. No wall time is written but the header's ``start``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from edge.errors import EdgelineError
from edge.events import SEVERITIES, Draft, format_ts
from edge.runtime.watcher import Watcher
from edge.sim.labels import Label
from sensors import Value

if TYPE_CHECKING:
    from edge.runtime.sensing import SensorRunner

FORMAT = "edgeline-recording"  # not a line type: names the format in error messages
_SIGNIFICANT = 9
_TIME_DIGITS = 6


class RecordingError(EdgelineError, ValueError):
    """A recording cannot be written, or a file is not a valid recording."""


@dataclass(frozen=True)
class SensorInfo:
    """What a recorded sensor is: its type, and its unit or its quantities' units."""

    type: str
    unit: str | None = None
    units: Mapping[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        if self.units is not None:
            return {"type": self.type, "units": dict(self.units)}
        return {"type": self.type, "unit": self.unit or ""}

    def unit_of(self, quantity: str | None) -> str:
        if quantity is not None and self.units is not None:
            return self.units.get(quantity, "")
        return self.unit or ""


def sensor_infos(runners: Mapping[str, SensorRunner]) -> dict[str, SensorInfo]:
    """The header's sensors, from a built runtime's ``sensors``.

    The built sensor knows best: an ADS1115 on one channel reads volts although its type
    declares four quantities, and a counter's rate unit comes from its config.
    """
    infos: dict[str, SensorInfo] = {}
    for sensor_id, runner in runners.items():
        declared = runner.declared_units
        if runner.unit or not declared:
            infos[sensor_id] = SensorInfo(runner.config.type, unit=runner.unit)
        else:
            infos[sensor_id] = SensorInfo(runner.config.type, units=dict(declared))
    return infos


@dataclass(frozen=True)
class Header:
    name: str
    device: str
    seed: int
    start: str  # UTC ISO 8601 wall time at t = 0
    duration: float
    sensors: Mapping[str, SensorInfo]

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "scenario",
            "name": self.name,
            "device": self.device,
            "seed": self.seed,
            "start": self.start,
            "duration": plain(self.duration),
            "sensors": {k: v.as_json() for k, v in self.sensors.items()},
        }


@dataclass(frozen=True, slots=True)
class Reading:
    t: float
    sensor: str
    value: Any  # as JSON gives it back: number, bool, list, {quantity: ...}


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    t: float
    sensor: str
    kind: str
    severity: str
    value: Any
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, draft: Draft, t0: float) -> RecordedEvent:
        """A draft as recorded: its time since ``t0`` (monotonic), values made plain."""
        return cls(
            seconds(draft.mono - t0),
            draft.sensor,
            draft.kind,
            draft.severity,
            plain(draft.value),
            plain(draft.fields),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "event",
            "t": self.t,
            "sensor": self.sensor,
            "kind": self.kind,
            "severity": self.severity,
            "value": self.value,
            "fields": dict(self.fields),
        }


@dataclass(frozen=True)
class RecordingData:
    header: Header
    labels: list[Label]
    readings: list[Reading]
    events: list[RecordedEvent]

    def readings_of(self, sensor: str) -> Iterator[Reading]:
        return (r for r in self.readings if r.sensor == sensor)


# -- plain values: the one place that decides how numbers are written -------------------


def seconds(t: float) -> float:
    """A time since the run's start, to the microsecond."""
    return round(t, _TIME_DIGITS) + 0.0  # + 0.0: -0.0 becomes 0.0


def plain(value: Any) -> Any:
    """A value as it is recorded: JSON types only, floats to nine significant digits.

    Non-finite floats become null (JSON has no NaN); numpy values their Python ones;
    anything else unknown its text, so a strange value never stops a recording.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return float(f"{value:.{_SIGNIFICANT}g}") + 0.0 if math.isfinite(value) else None
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    for convert in ("tolist", "item"):  # numpy arrays and scalars, without importing numpy
        method = getattr(value, convert, None)
        if callable(method):
            return plain(method())
    return str(value)


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


def label_json(label: Label) -> dict[str, Any]:
    return {
        "type": "label",
        "kind": label.kind,
        "label": label.label,
        "sensor": label.sensor,
        "start": plain(float(label.start)),
        "end": plain(float(label.end)),
    }


# -- writing ----------------------------------------------------------------------------

# What the hooks queue: made plain and serialised on the writer thread, not the sampler's.
_Item = tuple[float, str, Value] | Draft | None  # None: the last


class Recording(Watcher):
    """Writes a run as JSON Lines while it goes, from the sampling thread's hooks.

    ``reading`` and ``drafted`` only queue what they are given: a writer thread turns it
    into lines and writes them, so a slow disk never slows sampling. Both hooks run on the
    sampling thread, so lines come out in the order the run made them. ``close()`` writes
    what is queued and closes the file; a write error surfaces there.

    The header names each sensor's units, which only the built sensors know (an ADS1115 on
    one channel, a counter's configured rate unit), while a watcher is made before the
    runtime that builds them. So ``sensors`` may be given later, once, by ``describe``:
    until then hooks still queue, and the writer starts with the header.
    """

    def __init__(
        self,
        path: str | Path,
        t0: float,
        labels: Sequence[Label],
        *,
        name: str,
        device: str,
        seed: int,
        start_wall: float,
        duration: float,
        sensors: Mapping[str, SensorInfo] | None = None,
    ) -> None:
        self.path = Path(path)
        self.t0 = t0
        self.labels = tuple(labels)
        self.header = Header(name, device, seed, format_ts(start_wall), duration, {})
        try:
            self._file: IO[str] = self.path.open("w", encoding="utf-8", newline="\n")
        except OSError as exc:
            reason = exc.strerror or exc
            raise RecordingError(f"{path}: cannot write a recording: {reason}") from exc
        self._items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._error: Exception | None = None
        self._writer = threading.Thread(target=self._write, name="edgeline-recording")
        self._writer.daemon = True
        self._lock = threading.Lock()  # describe() and close() may race at shutdown
        if sensors is not None:
            self.describe(sensors)

    def describe(self, sensors: Mapping[str, SensorInfo]) -> None:
        """Give the header's sensors and start writing; later calls change nothing.

        From a built runtime: ``recording.describe(sensor_infos(runtime.sensors))``.
        """
        with self._lock:
            if self._writer.ident is not None:
                return
            self.header = dataclasses.replace(self.header, sensors=dict(sensors))
            self._writer.start()

    def reading(self, sensor: str, value: Value, unit: str, t: float) -> None:
        self._items.put((t, sensor, value))

    def drafted(self, draft: Draft) -> None:
        self._items.put(draft)

    def close(self) -> None:
        """Write what is queued, then close the file. Idempotent.

        Never described: the header says no sensors, and every reading is still there.
        """
        self.describe({})
        if self._writer.is_alive():
            self._items.put(None)
            self._writer.join()
        if not self._file.closed:
            try:
                self._file.close()
            except OSError as exc:
                self._error = self._error or exc
        if self._error is not None:
            error, self._error = self._error, None
            reason = getattr(error, "strerror", None) or error
            raise RecordingError(f"{self.path}: recording incomplete: {reason}") from error

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _line(self, item: tuple[float, str, Value] | Draft) -> str:
        if isinstance(item, Draft):
            return dumps(RecordedEvent.of(item, self.t0).as_json())
        t, sensor, value = item
        return dumps(
            {"type": "reading", "t": seconds(t - self.t0), "sensor": sensor, "value": plain(value)}
        )

    def _write(self) -> None:
        for record in [self.header.as_json(), *map(label_json, self.labels)]:
            self._put(dumps, record)
        while (item := self._items.get()) is not None:
            self._put(self._line, item)

    def _put(self, line: Callable[[Any], str], item: Any) -> None:
        if self._error is not None:
            return  # the queue still drains, so close() returns; the error is reported there
        try:
            self._file.write(line(item) + "\n")
        except Exception as exc:  # the writer must outlive any failure, or close() would wait
            self._error = exc


# -- reading ----------------------------------------------------------------------------


def read_recording(path: str | Path) -> RecordingData:
    """Read a recording back; a file that is not one raises ``RecordingError``."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            return _parse(f, str(path))
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise RecordingError(f"{path}: not a recording: not UTF-8 text") from exc


def _parse(lines: Iterator[str] | IO[str], source: str) -> RecordingData:
    header: Header | None = None
    labels: list[Label] = []
    readings: list[Reading] = []
    events: list[RecordedEvent] = []
    number = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        record = _record(line, where)
        kind = record.get("type")
        if header is None:
            if kind != "scenario":
                raise RecordingError(
                    f"{where}: not a recording: the first line must be the scenario header"
                    f' ({{"type": "scenario", ...}}), found type {kind!r}'
                )
            header = _header(record, where)
        elif kind == "reading":
            t, sensor = _time(record, "t", where), _text(record, "sensor", where)
            readings.append(Reading(t, sensor, _field(record, "value", where)))
        elif kind == "event":
            events.append(_event(record, where))
        elif kind == "label":
            labels.append(_label(record, where))
        elif kind == "scenario":
            raise RecordingError(f"{where}: a second scenario header")
        else:
            raise RecordingError(
                f"{where}: unknown line type {kind!r} (expected reading, event or label)"
            )
    if header is None:
        raise RecordingError(f"{source}: not a recording: empty file")
    return RecordingData(header, labels, readings, events)


# A recording's lines nest 4 levels at most (an event's fields); deeper is not a recording,
# and a value nested hundreds deep would overflow the stack later (repr in a message, numpy).
MAX_DEPTH = 16


def _integer(text: str) -> int | float:
    """A JSON integer; one too large for a float is infinite, as ``1e400`` is, so it reads
    as no usable number rather than overflowing where a float is made of it."""
    if len(text.lstrip("-")) < 300:  # a float reaches about 1.8e308
        return int(text)
    return -math.inf if text.startswith("-") else math.inf


def _record(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line, parse_int=_integer)
    except ValueError as exc:
        raise RecordingError(f"{where}: not JSON: {exc}") from None
    except RecursionError:
        raise RecordingError(f"{where}: not a recording line: nested too deeply") from None
    if not isinstance(record, dict):
        raise RecordingError(f"{where}: expected a JSON object, found {type(record).__name__}")
    # Counting brackets is quick; only a line with many gets its depth measured.
    if line.count("[") + line.count("{") > MAX_DEPTH and _depth(record) > MAX_DEPTH:
        raise RecordingError(
            f"{where}: not a recording line: nested deeper than {MAX_DEPTH} levels"
        )
    return record


def _depth(value: Any) -> int:
    """How deeply lists and objects nest in a JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (
                item.values() if isinstance(item, dict) else item
            ))  # fmt: skip
    return deepest


def _field(record: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise RecordingError(f"{where}: {record.get('type')} line has no {key!r}")
    return record[key]


def _text(record: Mapping[str, Any], key: str, where: str) -> str:
    value = _field(record, key, where)
    if not isinstance(value, str):
        raise RecordingError(f"{where}: {key!r} must be a string, found {value!r}")
    return value


def _time(record: Mapping[str, Any], key: str, where: str) -> float:
    value = _field(record, key, where)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordingError(f"{where}: {key!r} must be a number of seconds, found {value!r}")
    return float(value)


def _header(record: Mapping[str, Any], where: str) -> Header:
    seed = _field(record, "seed", where)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise RecordingError(f"{where}: 'seed' must be an integer, found {seed!r}")
    duration = _time(record, "duration", where)
    if duration <= 0:
        raise RecordingError(f"{where}: 'duration' must be > 0 seconds, found {duration!r}")
    raw = _field(record, "sensors", where)
    if not isinstance(raw, dict):
        raise RecordingError(f"{where}: 'sensors' must be an object, found {raw!r}")
    sensors = {sensor_id: _sensor(sensor_id, spec, where) for sensor_id, spec in raw.items()}
    return Header(
        _text(record, "name", where),
        _text(record, "device", where),
        seed,
        _text(record, "start", where),
        duration,
        sensors,
    )


def _sensor(sensor_id: str, spec: Any, where: str) -> SensorInfo:
    path = f"sensors.{sensor_id}"
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise RecordingError(f"{where}: {path} must be an object with a 'type', found {spec!r}")
    units = spec.get("units")
    if units is not None:
        ok = isinstance(units, dict) and all(isinstance(u, str) for u in units.values())
        if not ok:
            raise RecordingError(f"{where}: {path}.units must map quantities to units")
        return SensorInfo(spec["type"], units=units)
    unit = spec.get("unit", "")
    if not isinstance(unit, str):
        raise RecordingError(f"{where}: {path}.unit must be a string, found {unit!r}")
    return SensorInfo(spec["type"], unit=unit)


def _event(record: Mapping[str, Any], where: str) -> RecordedEvent:
    severity = _text(record, "severity", where)
    if severity not in SEVERITIES:
        raise RecordingError(f"{where}: severity must be one of {SEVERITIES}, found {severity!r}")
    fields = record.get("fields", {})
    if not isinstance(fields, dict):
        raise RecordingError(f"{where}: 'fields' must be an object, found {fields!r}")
    return RecordedEvent(
        _time(record, "t", where),
        _text(record, "sensor", where),
        _text(record, "kind", where),
        severity,
        record.get("value"),
        fields,
    )


def _label(record: Mapping[str, Any], where: str) -> Label:
    sensor = _field(record, "sensor", where)
    if sensor is not None and not isinstance(sensor, str):
        raise RecordingError(f"{where}: label 'sensor' must be a string or null, found {sensor!r}")
    kind, text = _text(record, "kind", where), _text(record, "label", where)
    start, end = _time(record, "start", where), _time(record, "end", where)
    try:
        return Label(kind, text, sensor, start, end)
    except ValueError as exc:
        raise RecordingError(f"{where}: {exc}") from None
