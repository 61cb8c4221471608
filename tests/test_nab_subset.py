"""The adaptive detector's NAB scores on the shared NAB subset, held out by category and
in-sample, and the baselines' (a guard).

The corpus comes from ``NAB_CORPUS`` (default: the shared subset); without it, skipped.
One configuration, the defaults, for every file, as NAB requires.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tools import nab, nab_cv

CORPUS = Path(os.environ.get("NAB_CORPUS", "/work/shared/data/nab"))

pytestmark = pytest.mark.skipif(
    not (CORPUS / "combined_windows.json").is_file()
    and not (CORPUS / "labels" / "combined_windows.json").is_file(),
    reason=f"no NAB corpus at {CORPUS} (set NAB_CORPUS)",
)


@pytest.fixture(scope="module")
def files() -> list[nab.CorpusFile]:
    return nab.load_corpus(CORPUS)


def scored(files: list[nab.CorpusFile], detector: str) -> list[np.ndarray]:
    """Every file's scores with the detector's defaults, in one process."""
    return nab_cv.score_candidates(files, detector, {}, [], jobs=1)[nab_cv.DEFAULTS]


def scores(files: list[nab.CorpusFile], detector: str) -> dict[str, float]:
    found = scored(files, detector)
    return {r.profile.name: r.normalised for r in nab.evaluate(files, found)}


@pytest.fixture(scope="module")
def adaptive_scores(files: list[nab.CorpusFile]) -> list[np.ndarray]:
    return scored(files, "adaptive")


@pytest.fixture(scope="module")
def adaptive(files: list[nab.CorpusFile], adaptive_scores: list[np.ndarray]) -> dict[str, float]:
    return {r.profile.name: r.normalised for r in nab.evaluate(files, adaptive_scores)}


def test_held_out_categories_score_at_least_60_each_and_70_on_average(
    files: list[nab.CorpusFile], adaptive_scores: list[np.ndarray]
) -> None:
    if len(files) != 34:
        pytest.skip("the figures below are for the 34-file shared subset")
    cv = nab_cv.cross_validate(files, {"defaults": adaptive_scores})
    assert [f.category for f in cv.folds] == sorted({nab_cv.category(f) for f in files})
    assert cv.worst(0) >= 64.0 and cv.mean(0) >= 70.0  # measured: 64.6, 70.5
    assert cv.worst(1) >= 53.0 and cv.worst(2) >= 66.0  # 53.5, 66.8
    quiet = next(f for f in cv.folds if f.category == "artificialNoAnomaly")
    assert quiet.fp <= 2  # 1


def test_the_in_sample_scores_hold(files: list[nab.CorpusFile], adaptive: dict[str, float]) -> None:
    if len(files) != 34:
        pytest.skip("the figures below are for the 34-file shared subset")
    # Measured: 71.6 / 62.6 / 76.6 (in-sample: the whole subset's best thresholds).
    assert adaptive["standard"] >= 71.0
    assert adaptive["reward_low_FP_rate"] >= 62.0
    assert adaptive["reward_low_FN_rate"] >= 76.0


def test_the_baselines_score_far_lower(
    files: list[nab.CorpusFile], adaptive: dict[str, float]
) -> None:
    for baseline in ("zscore", "threshold"):
        assert scores(files, baseline)["standard"] < adaptive["standard"] - 20
