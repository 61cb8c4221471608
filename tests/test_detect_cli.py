"""``edge detect``: CSV and recordings in, one scored row per reading out, strictly streaming."""

from __future__ import annotations

import csv
import itertools
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.cli import main
from edge.modeltools.detect import (
    DetectInputError,
    build_detector,
    parse_time,
    read_rows,
    read_series,
    score_series,
)

START = datetime(2015, 2, 26, 21, 42, 53)


def write_csv(path: Path, values: list[float], *, header: str = "timestamp,value") -> Path:
    lines = [header]
    lines += [f"{START + timedelta(minutes=5 * i)},{v!r}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_output(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def series(count: int, seed: int = 4) -> list[float]:
    rng = random.Random(seed)
    values = [50 + 5 * math.sin(i / 20) + rng.gauss(0, 1) for i in range(count)]
    values[count * 3 // 4] = 90.0
    return values


def test_it_writes_one_scored_row_per_input_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "in.csv", series(800))
    out = tmp_path / "out.csv"
    code = main(["detect", "--input", str(source), "--detector", "adaptive", "--output", str(out)])
    assert code == 0
    assert capsys.readouterr().out.startswith("800 readings scored, ")
    rows = read_output(out)
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == 801
    assert rows[1][0] == "2015-02-26 21:42:53"
    scores = [float(r[2]) for r in rows[1:]]
    assert all(0 <= s <= 1 for s in scores)
    assert max(range(800), key=scores.__getitem__) == 601  # the spike, as its block of 2 ends
    assert [r[1] for r in rows[1:3]] == [repr(v) for v in series(800)[:2]]  # values as written


def test_parameters_go_through_the_configs_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "in.csv", series(300))
    out = tmp_path / "out.csv"
    argv = ["detect", "--input", str(source), "--detector", "zscore", "--output", str(out)]
    assert main([*argv, "--set", "window=20", "--set", "threshold=3.5"]) == 0
    assert main([*argv, "--set", "windw=20", "--set", "threshold=-1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "error: --set: windw: unknown key; did you mean 'window'?" in err
    assert any(line.startswith("error: --set: threshold: expected a number >= 0.0") for line in err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,reading\n1,2\n", "expected a header with timestamp and value columns"),
        (
            "timestamp,value\n2015-01-01 00:00:00,1\n2015-01-01 00:05:00,abc\n",
            ":3: value: expected a number",
        ),
        ("timestamp,value\nyesterday,1\n", ":2: timestamp: expected ISO 8601 or seconds"),
        ("timestamp,value\n10,1,7\n", ":2: expected 2 columns, found 3"),
        ("", "empty"),
    ],
)
def test_bad_input_exits_2_with_the_line_and_leaves_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    source = tmp_path / "in.csv"
    source.write_text(content, encoding="utf-8")
    out = tmp_path / "out.csv"
    code = main(["detect", "--input", str(source), "--detector", "adaptive", "--output", str(out)])
    assert code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [source]  # no output, no scratch file


def test_an_unknown_detector_or_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out.csv")
    assert main(["detect", "--input", "nope.csv", "--detector", "adaptive", "--output", out]) == 2
    assert "nope.csv: cannot read" in capsys.readouterr().err
    source = str(write_csv(tmp_path / "in.csv", [1.0]))
    assert main(["detect", "--input", source, "--detector", "zscor", "--output", out]) == 2
    assert "did you mean 'zscore'?" in capsys.readouterr().err


def write_recording(path: Path) -> Path:
    header = {
        "type": "scenario", "name": "t", "device": "d", "seed": 1,
        "start": "2026-01-01T00:00:00.000Z", "duration": 600.0,
        "sensors": {
            "env": {"type": "i2c.bme280", "units": {"temperature": "degC", "humidity": "%RH"}},
            "temp": {"type": "i2c.tmp102", "unit": "degC"},
        },
    }  # fmt: skip
    lines = [json.dumps(header)]
    for i in range(300):
        lines.append(
            json.dumps({"type": "reading", "t": i * 2.0, "sensor": "temp", "value": 20 + i % 7})
        )
        env = {"temperature": 21.0 + i % 3, "humidity": 40.0}
        lines.append(
            json.dumps({"type": "reading", "t": i * 2.0 + 1, "sensor": "env", "value": env})
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_recording_series_is_picked_by_sensor_and_quantity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    recording = str(write_recording(tmp_path / "run.jsonl"))
    out = tmp_path / "out.csv"
    argv = ["detect", "--input", recording, "--detector", "adaptive", "--output", str(out)]
    assert main([*argv, "--sensor", "temp"]) == 0
    rows = read_output(out)[1:]
    assert len(rows) == 300 and rows[1][:2] == ["2.0", "21.0"]
    assert main([*argv, "--sensor", "env", "--quantity", "humidity"]) == 0
    assert [r[1] for r in read_output(out)[1:3]] == ["40.0", "40.0"]
    capsys.readouterr()
    assert main(argv) == 2
    assert "--sensor is needed to pick one of: env, temp" in capsys.readouterr().err
    assert main([*argv, "--sensor", "env"]) == 2  # a multi-quantity sensor needs --quantity
    assert main([*argv, "--sensor", "nope"]) == 2
    assert "no sensor 'nope'" in capsys.readouterr().err


moments = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1))
numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(st.lists(st.tuples(moments, numbers), min_size=1, max_size=30), st.booleans())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_csv_rows_read_back_as_written(
    tmp_path: Path, rows: list[tuple[datetime, float]], iso: bool
) -> None:
    rows = sorted(rows)
    path = tmp_path / "rows.csv"
    lines = ["Value,Timestamp,note"]  # any column order, extra columns, any case
    for moment, value in rows:
        stamp = moment.isoformat(sep=" ") if iso else repr(moment.replace(tzinfo=UTC).timestamp())
        lines.append(f'{value!r},{stamp},"a, b"')
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    read = list(read_rows(path))
    assert [r.value for r in read] == [v for _, v in rows]
    expected = [m.replace(tzinfo=UTC).timestamp() for m, _ in rows]
    assert [r.t for r in read] == pytest.approx(expected, abs=1e-6)


def test_timestamps_are_iso_8601_taken_as_utc_or_seconds() -> None:
    assert parse_time("1970-01-01 00:01:00") == 60.0
    assert parse_time("1970-01-01T01:00:00+01:00") == 0.0
    assert parse_time(" 12.5 ") == 12.5
    with pytest.raises(ValueError):
        parse_time("nan")


finite_series = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=400
)
WARM = series(300, seed=5)  # the adaptive detector's learning period, which scores nothing


def warmed(
    detector: str, times: list[float], values: list[float]
) -> tuple[list[float], list[float]]:
    """For ``adaptive``, the readings after a calm start, 60 s apart, so that they score."""
    if detector != "adaptive":
        return times, values
    start = [times[0] - 60.0 * (len(WARM) - i) for i in range(len(WARM))]
    return [*start, *times], [*WARM, *values]


@given(finite_series, st.data(), st.sampled_from(["adaptive", "zscore", "threshold", "rate"]))
def test_the_score_of_a_prefix_does_not_depend_on_what_follows(
    values: list[float], data: st.DataObject, detector: str
) -> None:
    settings = {"threshold": {"above": "0"}, "rate": {"rise": "1"}}.get(detector, {})
    times, values = warmed(detector, [60.0 * i for i in range(len(values))], values)
    cut = data.draw(st.integers(min_value=1, max_value=len(values)))
    whole = score_series(detector, settings, times, values)
    assert score_series(detector, settings, times[:cut], values[:cut]) == whole[:cut]


def test_a_prefix_of_the_file_scores_the_same_through_the_command(tmp_path: Path) -> None:
    values = series(1200)
    full, part = tmp_path / "full.csv", tmp_path / "part.csv"
    write_csv(full, values)
    write_csv(part, values[:650])
    for source, out in ((full, "full-out.csv"), (part, "part-out.csv")):
        argv = ["--input", str(source), "--detector", "adaptive", "--output", str(tmp_path / out)]
        assert main(["detect", *argv]) == 0
    assert read_output(tmp_path / "part-out.csv") == read_output(tmp_path / "full-out.csv")[:651]


def write_stepping_csv(path: Path, values: list[float], moves: dict[int, timedelta]) -> Path:
    """``write_csv``, with the reading at index ``i`` stamped ``moves[i]`` after the one
    before it (negative: back; zero: a repeat)."""
    stamps = [START + timedelta(minutes=5 * i) for i in range(len(values))]
    for i, by in moves.items():
        stamps[i] = stamps[i - 1] + by
    lines = ["timestamp,value", *(f"{s},{v!r}" for s, v in zip(stamps, values, strict=True))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


STEPS = {  # three steps back (55 min, 10 s and two days) and two repeats
    700: -timedelta(minutes=55), 710: timedelta(0), 900: -timedelta(seconds=10),
    902: timedelta(0), 1000: -timedelta(days=2),
}  # fmt: skip


def test_timestamps_that_step_back_or_repeat_are_scored_in_file_order_with_one_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = series(1200)
    source = write_stepping_csv(tmp_path / "in.csv", values, STEPS)
    out = tmp_path / "out.csv"
    code = main(["detect", "--input", str(source), "--detector", "adaptive", "--output", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"warning: 3 timestamps go back (first at {source}:702, 55 min back); scored in file order"
    ]  # line 702: the header, then reading 700 counted from 0
    assert captured.out.startswith("1200 readings scored, ")
    assert captured.out.endswith(f" alarms, timestamps: 3 back, 2 repeated: {out}\n")
    rows = read_output(out)[1:]
    written = source.read_text(encoding="utf-8").splitlines()[1:]
    assert [f"{r[0]},{r[1]}" for r in rows] == written  # every row, in file order
    assert all(0 <= float(r[2]) <= 1 for r in rows)
    assert read_series(source).values == values  # what tools/nab.py reads, refused no more


def test_a_prefix_of_a_file_that_steps_back_scores_the_same_as_the_whole_file(
    tmp_path: Path,
) -> None:
    values = series(1200)
    full = write_stepping_csv(tmp_path / "full.csv", values, STEPS)
    head = {at: by for at, by in STEPS.items() if at < 950}  # all but the two-day step back
    part = write_stepping_csv(tmp_path / "part.csv", values[:950], head)
    for source, out in ((full, "full-out.csv"), (part, "part-out.csv")):
        argv = ["--input", str(source), "--detector", "adaptive", "--output", str(tmp_path / out)]
        assert main(["detect", *argv]) == 0
    assert read_output(tmp_path / "part-out.csv") == read_output(tmp_path / "full-out.csv")[:951]


times_steps = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=-86_400 * 3, max_value=600, allow_nan=False)),
    min_size=1, max_size=400,
)  # fmt: skip


@given(times_steps, st.data(), st.sampled_from(["adaptive", "zscore", "threshold", "rate"]))
def test_time_that_steps_back_or_repeats_is_scored_strictly_streaming_by_every_detector(
    steps: list[float], data: st.DataObject, detector: str
) -> None:
    settings = {"threshold": {"above": "50"}, "rate": {"rise": "1"}}.get(detector, {})
    values = [data.draw(st.floats(min_value=0, max_value=100)) for _ in steps]
    times, values = warmed(detector, list(itertools.accumulate(steps)), values)
    cut = data.draw(st.integers(min_value=1, max_value=len(values)))
    whole = score_series(detector, settings, times, values)
    assert all(0.0 <= s <= 1.0 for s in whole)
    assert score_series(detector, settings, times[:cut], values[:cut]) == whole[:cut]


def test_a_rule_detector_scores_1_where_its_alarm_fires() -> None:
    scores = score_series(
        "threshold", {"above": "10"}, [0.0, 1.0, 2.0, 3.0], [5.0, 11.0, 12.0, 5.0]
    )
    assert scores == [0.0, 1.0, 0.0, 0.0]
    with pytest.raises(DetectInputError, match="above"):
        build_detector("threshold", {"above": "ten"})
