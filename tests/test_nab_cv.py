"""tools/nab_cv.py: leave-one-category-out cross-validation chooses only on the other folds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_nab import corpus_file, detections
from tools import nab, nab_cv


def named(category: str, k: int, windows: list[tuple[int, int]]) -> nab.CorpusFile:
    return corpus_file(1000, windows, f"{category}/f{k}.csv")


# Two categories with one window each at rows 500-540, and a third without windows.
FILES = [named("a", 0, [(500, 540)]), named("b", 0, [(500, 540)]), named("quiet", 0, [])]


def scored(a: np.ndarray, b: np.ndarray, quiet: np.ndarray) -> list[np.ndarray]:
    return [a, b, quiet]


def test_each_folds_threshold_comes_from_the_other_categories() -> None:
    # "a" finds its window at 0.9 and has a false positive at 0.6; "b" finds it at 0.6 only.
    a = detections(1000, [505]) * 0.9 + detections(1000, [800]) * 0.6
    b = detections(1000, [505]) * 0.6
    quiet = np.zeros(1000)
    cv = nab_cv.cross_validate(FILES, {"only": scored(a, b, quiet)})
    folds = {f.category: f for f in cv.folds}
    # Held out "a": chosen on "b" (and "quiet"), where 0.6 is the best threshold: a's false
    # positive at 0.6 counts against it.
    assert folds["a"].thresholds[0] == pytest.approx(0.6)
    assert folds["a"].fp == 1 and folds["a"].tp == 1
    # Held out "b": chosen on "a", where 0.9 avoids the false positive: b's window is missed.
    assert folds["b"].thresholds[0] == pytest.approx(0.9)
    assert folds["b"].tp == 0 and folds["b"].fn == 1
    assert folds["b"].score[0] == pytest.approx(0.0)  # the null detector's score
    assert cv.worst(0) == pytest.approx(0.0)
    assert cv.mean(0) == pytest.approx((folds["a"].score[0] + 0.0) / 2)


def test_a_category_without_windows_reports_its_false_positives_not_a_score() -> None:
    a = detections(1000, [500])
    quiet = detections(1000, [700, 900])
    cv = nab_cv.cross_validate(FILES, {"only": scored(a, a, quiet)})
    fold = next(f for f in cv.folds if f.category == "quiet")
    assert fold.score == (None, None, None)
    assert fold.fp == 2
    assert fold.raw[0] == pytest.approx(-2 * nab.PROFILES[0].fp)
    assert cv.scored(0) == [100.0, 100.0]  # the mean and the worst leave it out
    # ...but the pooled total counts its cost against the whole corpus.
    assert cv.pooled[0] < 100.0


def test_the_setting_is_chosen_on_the_training_categories() -> None:
    hit, miss, quiet = detections(1000, [505]), np.zeros(1000), np.zeros(1000)
    # "good_on_a" finds only a's window, "good_on_b" only b's.
    candidates = {"good_on_a": scored(hit, miss, quiet), "good_on_b": scored(miss, hit, quiet)}
    cv = nab_cv.cross_validate(FILES, candidates)
    folds = {f.category: f for f in cv.folds}
    assert folds["a"].setting == "good_on_b" and folds["a"].score[0] == pytest.approx(0.0)
    assert folds["b"].setting == "good_on_a" and folds["b"].score[0] == pytest.approx(0.0)


@given(st.floats(0.01, 1.0), st.integers(150, 999))
def test_a_perfect_candidate_is_chosen_and_scores_100_every_fold(level: float, row: int) -> None:
    perfect = [detections(1000, [500]), detections(1000, [500]), np.zeros(1000)]
    noise = [detections(1000, [row]) * level for _ in range(3)]
    cv = nab_cv.cross_validate(FILES, {"perfect": perfect, "noise": noise})
    assert all(f.setting == "perfect" for f in cv.folds if f.score[0] is not None)
    assert cv.worst(0) == pytest.approx(100.0)


def test_cross_validation_needs_two_categories_and_a_candidate() -> None:
    with pytest.raises(ValueError, match="two categories"):
        nab_cv.cross_validate(FILES[:1], {"x": [np.zeros(1000)]})
    with pytest.raises(ValueError, match="no candidate"):
        nab_cv.cross_validate(FILES, {})


def test_a_grid_expands_to_every_combination() -> None:
    grid = nab_cv.expand_grid(["rest=30,50", "learn=150, 300"])
    assert grid == [
        {"rest": "30", "learn": "150"},
        {"rest": "30", "learn": "300"},
        {"rest": "50", "learn": "150"},
        {"rest": "50", "learn": "300"},
    ]
    assert nab_cv.expand_grid([]) == [{}]
    assert [nab_cv.label(g) for g in nab_cv.expand_grid(["rest=3"])] == ["rest=3"]
    with pytest.raises(ValueError, match="KEY=VALUE"):
        nab_cv.expand_grid(["rest"])


def test_a_slice_keeps_the_first_files_and_rows_and_cuts_windows() -> None:
    files = [named("a", 0, [(100, 200), (900, 950)]), named("a", 1, []), named("b", 0, [])]
    kept = nab_cv.trim(files, rows=920, per_category=1)
    assert [f.name for f in kept] == ["a/f0.csv", "b/f0.csv"]
    assert kept[0].windows == ((100, 200), (900, 919))
    assert len(kept[0].values) == len(kept[0].times) == len(kept[0].timestamps) == 920
    assert nab_cv.trim(files, rows=850)[0].windows == ((100, 200),)


CORPUS = Path(os.environ.get("NAB_CORPUS", "/work/shared/data/nab"))


@pytest.mark.skipif(
    not (CORPUS / "combined_windows.json").is_file()
    and not (CORPUS / "labels" / "combined_windows.json").is_file(),
    reason=f"no NAB corpus at {CORPUS} (set NAB_CORPUS)",
)
def test_the_tool_cross_validates_a_slice_of_the_corpus(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--corpus", str(CORPUS), "--cv", "--per-category", "2", "--rows", "2000"]
    # zscore's threshold is in its score (|z| / (|z| + threshold)): the candidates differ.
    grid = ["--detector", "zscore", "--grid", "threshold=2,8", "--json", "--jobs", "2"]
    assert nab.main([*argv, *grid]) == 0
    chosen = json.loads(capsys.readouterr().out)
    assert {f["setting"] for f in chosen["folds"]} <= {"threshold=2", "threshold=8"}
    assert nab.main([*argv, "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 candidate setting(s)" in out and "worst fold" in out
    assert nab.main([*argv, "--json", "--jobs", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    folds = {f["category"]: f for f in report["folds"]}
    assert len(folds) == 5 and all(f["files"] == 2 for f in folds.values())
    assert folds["artificialNoAnomaly"]["score"]["standard"] is None
    scored = [f["score"]["standard"] for f in folds.values() if f["score"]["standard"] is not None]
    assert report["worst"]["standard"] == min(scored)
    assert report["mean"]["standard"] == pytest.approx(sum(scored) / len(scored), abs=0.01)
