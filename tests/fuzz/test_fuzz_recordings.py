"""Fuzz: recordings (JSON Lines) and CSV series through the readers of ``edge detect`` and
``edge model eval``.

Each case writes a file and reads it the way those commands do: ``read_series`` (what
``edge detect --input`` streams; a recording or a CSV), and ``read_recording`` then
``series`` and ``joined`` (what ``edge model eval`` and ``edge model train`` use). The
answer is data or the readers' own clean error (``DetectInputError``, ``RecordingError``,
``ModelCommandError``: the CLI prints one line and exits 2), never anything else. Every
error quotes the file and stays one line.

The files: a scenario header (mostly valid) and lines of every type holding hostile values
(NaN and Infinity, integers too large for a float or for ``int()``, strings where numbers
go, vectors of changing width, objects nested up to 5,000 deep, unknown types, garbage,
bytes that are not UTF-8); CSVs with odd headers, quoting, NULs, fields over the csv
module's 128 KiB limit, bad and backward timestamps.
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.modeltools.detect import DetectInputError, read_series
from edge.modeltools.series import ModelCommandError, joined, series
from edge.sim.recording import RecordingError, read_recording
from tests.oracles import has_traceback

pytestmark = pytest.mark.fuzz

CLEAN = (DetectInputError, RecordingError, ModelCommandError)
SENSORS = ["t", "w", "v", "\u0085x", "a/b"]
# JSON texts of values, hostile ones included (one choice each: cheap to generate).
VALUES = [
    "1.5", "-2", "0", "NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400,
    "1" + "0" * 5000,  # past int()'s digit limit: json refuses it
    "true", "null", '"12.5"', '""', "[]", "[1, 2, 3]", "[1, 2]", '[1, "x"]', "[NaN, 1]",
    '{"temperature": 21.5, "humidity": 40}', '{"temperature": [1, 2]}', "{}", '{"x": null}',
    '"\\u0000\\ud800"', "[[1.0]]",
]  # fmt: skip
TIMES = ["0", "1", "2.5", "-1", "1e300", "1e400", "NaN", '"1"', "null", "[]", "1" + "0" * 400]
DEPTHS = [*range(1, 40), 990, 1000, 5000]


def deep(rnd: random.Random) -> str:
    depth = rnd.choice(DEPTHS)
    if rnd.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def value(rnd: random.Random) -> str:
    roll = rnd.random()
    if roll < 0.1:
        return deep(rnd)
    if roll < 0.3:
        return repr(rnd.uniform(-1e3, 1e3))
    return rnd.choice(VALUES)


def header(rnd: random.Random) -> str:
    fields = {
        "type": '"scenario"', "name": '"fuzz"', "device": '"d"', "seed": "1",
        "start": '"2026-01-01T00:00:00.000Z"', "duration": "60.0",
        "sensors": json.dumps({
            "t": {"type": "i2c.tmp102", "unit": "degC"},
            "w": {"type": "i2c.bme280", "units": {"temperature": "degC", "humidity": "%RH"}},
            "v": {"type": "i2c.mpu6050", "unit": "g"},
        }),
    }  # fmt: skip
    for _ in range(rnd.choice([0, 0, 0, 1, 2])):  # a field broken or gone
        key = rnd.choice(sorted(fields))
        if rnd.random() < 0.5:
            del fields[key]
        else:
            fields[key] = value(rnd)
    return "{" + ", ".join(f'"{key}": {text}' for key, text in fields.items()) + "}"


def line(rnd: random.Random, t: float) -> str:
    kind = rnd.choice(["reading"] * 6 + ["event", "label", "scenario", "mystery", "garbage"])
    sensor = json.dumps(rnd.choice(SENSORS), ensure_ascii=rnd.random() < 0.5)
    stamp = repr(t) if rnd.random() < 0.9 else rnd.choice(TIMES)
    if kind == "reading":
        return f'{{"type": "reading", "t": {stamp}, "sensor": {sensor}, "value": {value(rnd)}}}'
    if kind == "event":
        severity = rnd.choice(['"warning"', '"critical"', '"loud"', "1"])
        return (
            f'{{"type": "event", "t": {stamp}, "sensor": {sensor}, "kind": "threshold",'
            f' "severity": {severity}, "value": {value(rnd)}, "fields": {value(rnd)}}}'
        )
    if kind == "label":
        end = rnd.choice([repr(t + 5), rnd.choice(TIMES)])
        label_kind = rnd.choice(['"anomaly"', '"fault"', "3"])
        return (
            f'{{"type": "label", "start": {stamp}, "end": {end}, "sensor": {sensor},'
            f' "kind": {label_kind}, "text": "x"}}'
        )
    if kind == "scenario":
        return header(rnd)
    if kind == "mystery":
        return f'{{"type": {value(rnd)}}}'
    return rnd.choice(["{", "not json", "[1, 2]", '"str"', value(rnd), "\x00", "\ufeff{}"])


def recording(rnd: random.Random) -> bytes:
    t = 0.0
    lines = [header(rnd)]
    for _ in range(rnd.randrange(40)):
        t += rnd.choice([0.1, 0.1, 0.5, 0.0, -0.3])
        lines.append(line(rnd, t))
    text = "\n".join(lines) + rnd.choice(["\n", "", "\n\n \n"])
    data = text.encode("utf-8", "surrogatepass")
    if rnd.random() < 0.05:  # bytes that are not UTF-8
        at = rnd.randrange(len(data) + 1)
        data = data[:at] + b"\xff\xfe\xc3" + data[at:]
    return data


def csv_file(rnd: random.Random) -> bytes:
    header = rnd.choice([
        "timestamp,value", "Timestamp , VALUE", "value,timestamp,extra", "time,value",
        "timestamp", "", '"timestamp","value"', "timestamp,value,timestamp",
    ])  # fmt: skip
    cells = [
        "1", "2.5", "2026-01-01T00:00:00", "2026-01-01T00:00:00+02:00", "nan", "inf", "-1",
        "1e400", "x", "", '"1,5"', '"unterminated', "1\x00", "\u00a0", "9" * 400,
    ]  # fmt: skip
    rows = [header]
    t = 0
    for _ in range(rnd.randrange(30)):
        t += rnd.choice([1, 1, 0, -1])
        row = [str(t), repr(rnd.uniform(-5, 5))]
        for i in range(len(row)):
            if rnd.random() < 0.2:
                row[i] = rnd.choice(cells)
        if rnd.random() < 0.05:
            row.append("extra")
        rows.append(",".join(row))
    if rnd.random() < 0.03:  # a field over the csv module's limit (128 KiB)
        rows.append(f"{t + 1}," + "7" * 140_000)
    text = rnd.choice(["\n", "\r\n", "\r"]).join(rows)
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-recordings-") as directory:
        yield Path(directory)


def assert_clean(error: Exception, path: Path) -> None:
    text = str(error)
    assert str(path) in text or "--sensor" in text or "sensor " in text, text
    for problem in getattr(error, "problems", [text]):
        assert len(problem.splitlines()) == 1, problem


# One seeded generator per case: files from hypothesis draws cost far more than reading them.
seeds = st.randoms(use_true_random=True)


@given(rnd=seeds)
def test_detect_reads_a_recording_or_says_why_in_one_line(
    scratch: Path, rnd: random.Random
) -> None:
    path = scratch / "recording.jsonl"
    path.write_bytes(recording(rnd))
    sensor = rnd.choice([*SENSORS, None])
    quantity = rnd.choice([None, None, "temperature", "nope"])
    try:
        read_series(path, sensor=sensor, quantity=quantity)
    except DetectInputError as exc:
        assert_clean(exc, path)


@given(rnd=seeds)
def test_model_tools_read_a_recording_or_say_why(scratch: Path, rnd: random.Random) -> None:
    path = scratch / "recording.jsonl"
    path.write_bytes(recording(rnd))
    try:
        data = read_recording(path)
        picked = series(data, rnd.choice(SENSORS), rnd.choice([None, "temperature"]))
        joined(data, picked, rnd.sample(["t", "w.humidity", "v", "nope"], rnd.randrange(3)))
    except CLEAN as exc:
        assert not has_traceback(str(exc))
        assert len(str(exc).splitlines()) == 1, str(exc)


@given(rnd=seeds)
def test_detect_reads_a_csv_or_says_why_in_one_line(scratch: Path, rnd: random.Random) -> None:
    path = scratch / "series.csv"
    path.write_bytes(csv_file(rnd))
    try:
        read_series(path)
    except DetectInputError as exc:
        assert_clean(exc, path)
