"""``edge detect``: replay a recorded series through a detector, strictly streaming.

The input is a CSV with ``timestamp`` and ``value`` columns (NAB's layout; a timestamp is
ISO 8601, taken as UTC when it has no offset, or a number of seconds) or a recording from
``edge simulate --record`` (JSON Lines), from which ``sensor`` (and ``quantity``) pick one
series. Each reading goes through the very detector the runtime builds from a config
(:data:`models.DETECTOR_TYPES`, parameters validated as a config table is), one at a time,
and the output CSV gets ``timestamp,value,anomaly_score`` for it before the next is read:
the score of row i depends only on rows 1..i. Rows are scored in file order, whatever their
timestamps: one before the latest seen (a step back) or equal to the previous (a repeat) is
scored as the runtime would score such a reading, and counted (:class:`TimeSteps`).

A detector with a graded score (``anomaly_score``, as ``adaptive`` has) gives it for each
row; ``zscore`` and ``rate`` give ``m / (m + limit)`` of what they measure (0.5 where they
alarm); ``threshold`` and ``onnx`` give 1 on a row where an alarm fires and 0 elsewhere.
"""

from __future__ import annotations

import csv
import difflib
import math
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

from edge.config.validation import Problems, build
from edge.errors import EdgelineError, one_line
from models import DETECTOR_TYPES, Detector, ModelError
from models.rules import RateDetector, ZScoreDetector

OUTPUT_HEADER = ("timestamp", "value", "anomaly_score")


class DetectInputError(EdgelineError, ValueError):
    """The input file, the detector or its parameters cannot be used; one line per problem."""

    def __init__(self, problems: str | Sequence[str]) -> None:
        found = [problems] if isinstance(problems, str) else problems
        self.problems = [one_line(problem) for problem in found]
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True, slots=True)
class InputRow:
    """One reading of the input: its timestamp as written, seconds, and the value."""

    timestamp: str
    t: float
    value: float
    text: str  # the value as written in the input
    line: int | None = None  # in a CSV; a recording's readings have none


@dataclass(slots=True)
class TimeSteps:
    """How a series' timestamps step back (before the latest seen) or repeat (equal to the
    previous), counted as its rows are read; either is scored in file order all the same."""

    back: int = 0
    repeats: int = 0
    first_back: str | None = None  # where the first step back is: ``file:line``
    first_back_by: float = 0.0  # how far behind the latest it was, in seconds
    _latest: float = field(default=-math.inf, init=False, repr=False)
    _previous: float = field(default=math.nan, init=False, repr=False)
    _rows: int = field(default=0, init=False, repr=False)

    def see(self, row: InputRow, source: str) -> None:
        self._rows += 1
        t = row.t
        if t == self._previous:
            self.repeats += 1
        if t < self._latest:
            self.back += 1
            if self.first_back is None:
                where = f":{row.line}" if row.line is not None else f", reading {self._rows}"
                self.first_back, self.first_back_by = f"{source}{where}", self._latest - t
        self._previous = t
        self._latest = max(self._latest, t)


@dataclass(frozen=True)
class InputSeries:
    """A whole input series (for tools that score a file at once)."""

    timestamps: list[str]
    times: list[float]
    values: list[float]


@runtime_checkable
class ScoredDetector(Protocol):
    """A detector that scores every reading in [0, 1], not only the ones that alarm."""

    @property
    def anomaly_score(self) -> float: ...


# -- reading ------------------------------------------------------------------------------------


def read_rows(
    path: str | Path, *, sensor: str | None = None, quantity: str | None = None
) -> Iterator[InputRow]:
    """The readings of ``path``, one at a time, in order; bad input raises DetectInputError.

    A file whose first non-blank character is ``{`` is a recording; anything else a CSV.
    ``sensor`` and ``quantity`` apply to recordings only.
    """
    path = Path(path)
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise DetectInputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        try:
            first = _first_char(handle)
        except UnicodeDecodeError as exc:
            raise DetectInputError(f"{path}: not UTF-8 text") from exc
        if first == "{":
            handle.close()
            yield from _recording_rows(path, sensor, quantity)
            return
        if sensor is not None or quantity is not None:
            raise DetectInputError(f"{path}: --sensor and --quantity pick from a recording only")
        try:
            yield from _csv_rows(handle, str(path))
        except UnicodeDecodeError as exc:
            raise DetectInputError(f"{path}: not UTF-8 text") from exc
        except csv.Error as exc:  # a field over the csv module's limit (128 KiB), a NUL, ...
            raise DetectInputError(f"{path}: not a CSV this reads: {exc}") from None


def read_series(
    path: str | Path, *, sensor: str | None = None, quantity: str | None = None
) -> InputSeries:
    """A whole series, in file order (timestamps that step back or repeat included)."""
    timestamps, times, values = [], [], []
    for row in read_rows(path, sensor=sensor, quantity=quantity):
        timestamps.append(row.timestamp)
        times.append(row.t)
        values.append(row.value)
    return InputSeries(timestamps, times, values)


def _first_char(handle: IO[str]) -> str:
    while True:
        char = handle.read(1)
        if not char or not char.isspace():
            handle.seek(0)
            return char


def parse_time(text: str) -> float:
    """Seconds from a timestamp: a number of seconds, or ISO 8601 (UTC without an offset)."""
    text = text.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(number):
            return number
        raise ValueError(f"expected a finite time, found '{text}'")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected ISO 8601 or seconds, found '{text}'") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _csv_rows(handle: IO[str], source: str) -> Iterator[InputRow]:
    reader = csv.reader(handle)
    header: list[str] | None = None
    for record in reader:
        line = reader.line_num
        if not record or all(not cell.strip() for cell in record):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in record]
            missing = [name for name in ("timestamp", "value") if name not in header]
            if missing:
                found = ",".join(record)
                raise DetectInputError(
                    f"{source}:{line}: expected a header with timestamp and value columns,"
                    f" found '{found[:60]}'"
                )
            at_time, at_value = header.index("timestamp"), header.index("value")
            continue
        if len(record) != len(header):
            raise DetectInputError(
                f"{source}:{line}: expected {len(header)} columns, found {len(record)}"
            )
        stamp, text = record[at_time].strip(), record[at_value].strip()
        try:
            t = parse_time(stamp)
        except ValueError as exc:
            raise DetectInputError(f"{source}:{line}: timestamp: {exc}") from None
        try:
            value = float(text)
        except ValueError:
            raise DetectInputError(
                f"{source}:{line}: value: expected a number, found '{text[:40]}'"
            ) from None
        yield InputRow(stamp, t, value, text, line)
    if header is None:
        raise DetectInputError(f"{source}: empty: expected a timestamp,value header and rows")


def _recording_rows(path: Path, sensor: str | None, quantity: str | None) -> Iterator[InputRow]:
    from edge.modeltools.series import ModelCommandError, series
    from edge.sim.recording import RecordingError, read_recording

    try:
        recording = read_recording(path)
    except RecordingError as exc:
        raise DetectInputError(str(exc)) from exc
    if sensor is None:
        sensors = sorted(recording.header.sensors)
        if len(sensors) != 1:
            names = ", ".join(sensors) or "none"
            raise DetectInputError(f"{path}: --sensor is needed to pick one of: {names}")
        sensor = sensors[0]
    try:
        data = series(recording, sensor, quantity, source=str(path))
    except ModelCommandError as exc:
        raise DetectInputError(str(exc)) from exc
    if data.width is not None:
        raise DetectInputError(f"{path}: sensor {sensor!r} gives vectors; pick a scalar series")
    for t, value in zip(data.times.tolist(), data.values.tolist(), strict=True):
        yield InputRow(repr(t), t, value, repr(value))


# -- the detector -------------------------------------------------------------------------------


def setting(text: str) -> Any:
    """A ``--set`` value as TOML reads it (``0.5``, ``100``, ``true``), else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except (ValueError, RecursionError):  # not a TOML value (or one nested too deeply)
        return text


def parse_settings(pairs: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` as a dict; a pair without ``=`` raises DetectInputError."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DetectInputError(f"--set: expected key=value, found '{pair}'")
        settings[key.strip()] = value.strip()
    return settings


def build_detector(name: str, settings: Mapping[str, str] | None = None) -> Detector:
    """The detector type ``name`` built with ``settings`` validated as a config table is."""
    kind = DETECTOR_TYPES.get(name)
    if kind is None:
        close = difflib.get_close_matches(name, list(DETECTOR_TYPES), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        known = ", ".join(sorted(DETECTOR_TYPES))
        raise DetectInputError(f"--detector: expected one of ({known}), found '{name}'{hint}")
    problems = Problems("--set")
    table = {key: setting(text) for key, text in (settings or {}).items()}
    params = build(kind.params, table, "", problems)
    if params is None:
        raise DetectInputError(problems.items)
    try:
        return kind.build(params)
    except (ModelError, OSError) as exc:
        raise DetectInputError(f"--detector {name}: {exc}") from exc


def scorer(detector: Detector) -> Callable[[float, float], tuple[float, bool]]:
    """``score(t, value) -> (anomaly score, whether an alarm fired)`` for one reading."""
    graded = _graded(detector)

    def score(t: float, value: float) -> tuple[float, bool]:
        found = detector.observe(t, value)
        fired = found is not None and found.fields.get("state") == "active"
        if not math.isfinite(value):
            return 0.0, fired
        if graded is not None:
            return graded(), fired
        return (1.0 if fired else 0.0), fired

    return score


def _graded(detector: Detector) -> Callable[[], float] | None:
    """How to read a graded score in [0, 1] off ``detector`` after each reading, if it has one.

    ``zscore`` and ``rate`` measure something against a limit: ``m / (m + limit)`` of that
    measure ``m`` (``|z|``, or the rate beyond zero on the side that has a limit) is 0.5
    exactly where they alarm.
    """
    if isinstance(detector, ScoredDetector):
        scored = detector
        return lambda: float(scored.anomaly_score)
    if isinstance(detector, ZScoreDetector):
        zscore, limit = detector, detector.params.threshold

        def z() -> float:
            measure = abs(zscore.score or 0.0)
            return measure / (measure + limit)

        return z
    if isinstance(detector, RateDetector):
        rate = detector
        rise, fall = detector.params.rise, detector.params.fall

        def slope() -> float:
            measure = rate.rate or 0.0
            limit = rise if measure >= 0 else fall
            if limit is None:
                return 0.0
            measure = abs(measure)
            return measure / (measure + limit) if measure + limit > 0 else 1.0

        return slope
    return None


def score_series(
    detector: str,
    settings: Mapping[str, str] | None,
    times: Sequence[float],
    values: Sequence[float],
) -> list[float]:
    """Every reading's score, each computed before the next reading is seen."""
    score = scorer(build_detector(detector, settings))
    start = times[0] if times else 0.0
    return [score(t - start, v)[0] for t, v in zip(times, values, strict=True)]


# -- the command --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectSummary:
    rows: int
    alarms: int  # alarms fired (rows where an ``active`` detection came out)
    output: Path
    steps: TimeSteps  # timestamps that stepped back or repeated (scored in file order)


def detect(
    input: str | Path,
    output: str | Path,
    detector: str,
    settings: Mapping[str, str] | None = None,
    *,
    sensor: str | None = None,
    quantity: str | None = None,
) -> DetectSummary:
    """Score every reading of ``input`` with ``detector`` and write ``output`` (CSV).

    The output appears only complete: it is written next to its place and renamed there
    at the end, so bad input half-way leaves no half file.
    """
    score = scorer(build_detector(detector, settings))
    output = Path(output)
    steps = TimeSteps()
    rows = alarms = 0
    start: float | None = None
    try:
        fd, scratch = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent or ".")
    except OSError as exc:
        raise DetectInputError(f"{output}: cannot write: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(OUTPUT_HEADER)
            for row in read_rows(input, sensor=sensor, quantity=quantity):
                steps.see(row, str(input))
                start = row.t if start is None else start
                value_score, fired = score(row.t - start, row.value)
                writer.writerow((row.timestamp, row.text, f"{value_score:.6f}"))
                rows += 1
                alarms += fired
        os.replace(scratch, output)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return DetectSummary(rows, alarms, output, steps)
