"""tools/nab.py: NAB v1.1's scoring rules on hand-made cases, and the tool on a tiny corpus."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools import nab
from tools.nab import PROFILES, CorpusFile

STANDARD = PROFILES[0]
START = datetime(2020, 1, 1)


def stamps(rows: int) -> tuple[str, ...]:
    return tuple(str(START + timedelta(minutes=5 * i)) for i in range(rows))


def corpus_file(rows: int, windows: list[tuple[int, int]], name: str = "a/b.csv") -> CorpusFile:
    return CorpusFile(
        name, stamps(rows), tuple(300.0 * i for i in range(rows)), (0.0,) * rows, tuple(windows)
    )


def detections(rows: int, at: list[int]) -> np.ndarray:
    scores = np.zeros(rows)
    scores[at] = 1.0
    return scores


def normalised(files: list[CorpusFile], scores: list[np.ndarray], profile: int = 0) -> float:
    return nab.evaluate(files, scores)[profile].normalised


def test_the_scaled_sigmoid_is_nabs() -> None:
    assert nab.scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert nab.scaled_sigmoid(0.0) == 0.0
    assert nab.scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert nab.scaled_sigmoid(3.5) == -1.0


def test_probation_is_15_percent_capped_at_750_rows() -> None:
    assert nab.probation_length(1000) == 150
    assert nab.probation_length(1127) == 169
    assert nab.probation_length(16_000) == 750


@pytest.mark.parametrize("profile", [0, 1, 2])
def test_a_perfect_detector_scores_100_and_the_null_detector_0(profile: int) -> None:
    files = [corpus_file(2000, [(400, 449), (1200, 1249)]), corpus_file(1000, [], "a/c.csv")]
    perfect = [detections(2000, [400, 1200]), np.zeros(1000)]
    null = [np.zeros(2000), np.zeros(1000)]
    assert normalised(files, perfect, profile) == pytest.approx(100.0)
    assert normalised(files, null, profile) == 0.0


def test_an_early_detection_beats_a_late_one() -> None:
    files = [corpus_file(2000, [(400, 499)])]
    early = normalised(files, [detections(2000, [410])])
    late = normalised(files, [detections(2000, [490])])
    assert 0 < late < early < 100
    weights = nab.row_weights(files[0], STANDARD).weight
    assert weights[400] == pytest.approx(1.0)  # the window's first row earns the whole point
    assert weights[410] > weights[450] > weights[490] > 0


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    file = corpus_file(2000, [(400, 499)])
    once = nab.score_file(file, detections(2000, [410]), STANDARD, 0.5)
    thrice = nab.score_file(file, detections(2000, [410, 420, 480]), STANDARD, 0.5)
    assert once == thrice and once.tp == 1 and once.fp == 0


def test_a_false_positive_just_after_a_window_costs_less_than_one_far_away() -> None:
    file = corpus_file(2000, [(400, 449)])
    near = nab.score_file(file, detections(2000, [400, 452]), STANDARD, 0.5)
    far = nab.score_file(file, detections(2000, [400, 1500]), STANDARD, 0.5)
    alone = nab.score_file(file, detections(2000, [400]), STANDARD, 0.5)
    assert near.fp == far.fp == 1
    assert far.score == pytest.approx(alone.score - STANDARD.fp)  # far past: the full cost
    assert far.score < near.score < alone.score


def test_a_false_positive_before_any_window_costs_the_full_weight() -> None:
    file = corpus_file(2000, [(1400, 1449)])
    early_fp = nab.score_file(file, detections(2000, [500, 1400]), STANDARD, 0.5)
    assert early_fp.score == pytest.approx(1.0 - STANDARD.fp)


def test_a_missed_window_costs_the_fn_weight_of_each_profile() -> None:
    file = corpus_file(2000, [(400, 449)])
    for profile in PROFILES:
        missed = nab.score_file(file, np.zeros(2000), profile, 0.5)
        assert missed.score == -profile.fn and missed.fn == 1


def test_probation_rows_and_windows_inside_probation_are_not_scored() -> None:
    file = corpus_file(2000, [(100, 149), (400, 449)])  # probation: 300 rows
    assert nab.scored_windows(file) == 1
    scores = detections(2000, [50, 120, 400])  # the first two fall in probation
    result = nab.score_file(file, scores, STANDARD, 0.5)
    assert (result.tp, result.fn, result.fp) == (1, 0, 0)
    assert normalised([file], [scores]) == pytest.approx(100.0)


def test_window_timestamps_become_row_indexes() -> None:
    rows = stamps(10)
    assert nab.window_rows(rows, f"{rows[2]}.000000", f"{rows[5]}.000000") == (2, 5)
    with pytest.raises(ValueError, match="holds no row"):
        nab.window_rows(rows, "2030-01-01 00:00:00", "2030-01-02 00:00:00")


def brute_force(files: list[CorpusFile], scores: list[np.ndarray]) -> float:
    candidates = {nab.NO_DETECTION, *(float(v) for s in scores for v in s)}
    return max(
        sum(nab.score_file(f, s, STANDARD, t).score for f, s in zip(files, scores, strict=True))
        for t in candidates
    )


@given(st.data())
def test_the_sweep_finds_the_best_total_over_every_threshold(data: st.DataObject) -> None:
    files = [
        corpus_file(60, [(20, 29)], "x/1.csv"),
        corpus_file(80, [(30, 34), (50, 59)], "x/2.csv"),
    ]
    values = st.sampled_from([0.0, 0.2, 0.5, 0.7, 0.9, 1.0])
    scores = [np.array(data.draw(st.lists(values, min_size=len(f.values), max_size=len(f.values))))
              for f in files]  # fmt: skip
    best = nab.sweep(files, scores, STANDARD)
    assert best.total == pytest.approx(brute_force(files, scores))
    at = sum(nab.score_file(f, s, STANDARD, best.threshold).score
             for f, s in zip(files, scores, strict=True))  # fmt: skip
    assert at == pytest.approx(best.total)


def write_corpus(root: Path) -> None:
    rng = np.random.default_rng(3)
    windows = {}
    for name, spike in (("cat/one.csv", 900), ("cat/two.csv", None)):
        values = 10 + rng.normal(0, 1, 1200)
        if spike is not None:
            values[spike] = 40.0
        rows = stamps(1200)
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value", *(f"{t},{v:.3f}" for t, v in zip(rows, values, strict=True))]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        windows[name] = [] if spike is None else [[f"{rows[880]}.000000", f"{rows[920]}.000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows), encoding="utf-8")


def test_the_tool_scores_a_corpus_in_nabs_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_corpus(tmp_path)
    files = nab.load_corpus(tmp_path)
    assert [f.name for f in files] == ["cat/one.csv", "cat/two.csv"]
    assert files[0].windows == ((880, 920),)
    assert nab.main(["--corpus", str(tmp_path), "--detector", "adaptive"]) == 0
    out = capsys.readouterr().out
    for word in (
        "standard",
        "reward_low_FP_rate",
        "reward_low_FN_rate",
        "cat/one.csv",
        "us per reading",
    ):
        assert word in out
    assert nab.main(["--corpus", str(tmp_path), "--detector", "zscore", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["profiles"]) == {p.name for p in PROFILES}
    assert math.isfinite(report["profiles"]["standard"]["score"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--detector", "adaptiv"], "did you mean 'adaptive'"),
        (["--set", "treshold=0.6"], "did you mean 'threshold'"),
        (["--set", "nonsense"], "expected key=value"),
    ],
)
def test_bad_arguments_exit_2_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    write_corpus(tmp_path)
    assert nab.main(["--corpus", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_threshold_baseline_takes_its_limits_from_the_probation_period() -> None:
    values = (5.0,) * 300 + (9.0,) + (5.0,) * 99
    file = CorpusFile("f.csv", stamps(400), tuple(float(i) for i in range(400)), values, ())
    scores = nab.run_detector("threshold", file, {})
    assert scores[300] == 1.0 and scores.sum() == 1.0  # a flat start: any change is out
