"""Leave-one-category-out cross-validation of a detector on a corpus in NAB's layout.

A figure scored on the files a detector was tuned on says little about a user's own series.
Here every choice is made on all categories but one and scored on that one: the setting
(among the candidates of a grid, by the standard profile's normalised score on the training
categories) and each profile's threshold (NAB's sweep on the training categories). Each
held-out category is a fold; the report gives every fold, their mean, the worst fold, and the
pooled total (the held-out raw totals of all folds, normalised against the whole corpus).

A category without anomaly windows (NAB's ``artificialNoAnomaly``) has no normalised score:
only false positives can happen there, so its fold reports their count and raw cost, and it
is left out of the mean and the worst fold (it still counts in the pooled total).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from tools.nab import (
    PROFILES,
    CorpusFile,
    FloatArray,
    normalise,
    run_detector,
    score_file,
    sweep,
)

DEFAULTS = "defaults"


def category(file: CorpusFile) -> str:
    return file.name.split("/", 1)[0]


@dataclass(frozen=True)
class Fold:
    """One held-out category: what was chosen on the others and how it scored on it."""

    category: str
    files: int
    setting: str  # the candidate chosen on the training categories
    train: float  # its standard normalised score there
    thresholds: tuple[float, ...]  # per profile, from the training categories
    raw: tuple[float, ...]  # per profile, held-out total
    score: tuple[float | None, ...]  # per profile, held-out normalised (None: no windows)
    tp: int  # standard profile
    fn: int
    fp: int


@dataclass(frozen=True)
class CrossValidation:
    folds: tuple[Fold, ...]
    pooled: tuple[float, ...]  # per profile

    def scored(self, profile: int) -> list[float]:
        return [s for f in self.folds if (s := f.score[profile]) is not None]

    def mean(self, profile: int) -> float:
        scored = self.scored(profile)
        return sum(scored) / len(scored) if scored else 0.0

    def worst(self, profile: int) -> float:
        return min(self.scored(profile), default=0.0)


def cross_validate(
    files: Sequence[CorpusFile], candidates: Mapping[str, Sequence[FloatArray]]
) -> CrossValidation:
    """Leave each category out in turn; ``candidates`` maps a setting's label to the scores
    of every file (in ``files`` order). Ties between settings go to the first."""
    if not candidates:
        raise ValueError("no candidate settings to choose from")
    categories = sorted({category(f) for f in files})
    if len(categories) < 2:
        raise ValueError("cross-validation needs at least two categories")
    folds = []
    for held_out in categories:
        train = [i for i, f in enumerate(files) if category(f) != held_out]
        test = [i for i, f in enumerate(files) if category(f) == held_out]
        folds.append(_fold(files, candidates, held_out, train, test))
    pooled = tuple(
        normalise(files, profile, sum(f.raw[p] for f in folds)) or 0.0
        for p, profile in enumerate(PROFILES)
    )
    return CrossValidation(tuple(folds), pooled)


def _fold(
    files: Sequence[CorpusFile],
    candidates: Mapping[str, Sequence[FloatArray]],
    held_out: str,
    train: list[int],
    test: list[int],
) -> Fold:
    train_files = [files[i] for i in train]
    test_files = [files[i] for i in test]
    standard = PROFILES[0]
    best_label, best_score = "", -float("inf")
    for label, scores in candidates.items():
        total = sweep(train_files, [scores[i] for i in train], standard).total
        score = normalise(train_files, standard, total) or 0.0
        if score > best_score:
            best_label, best_score = label, score
    chosen = candidates[best_label]
    thresholds, raws, normalised = [], [], []
    counts = (0, 0, 0)
    for p, profile in enumerate(PROFILES):
        threshold = sweep(train_files, [chosen[i] for i in train], profile).threshold
        per_file = [score_file(files[i], chosen[i], profile, threshold) for i in test]
        raw = sum(f.score for f in per_file)
        thresholds.append(threshold)
        raws.append(raw)
        normalised.append(normalise(test_files, profile, raw))
        if p == 0:
            counts = (
                sum(f.tp for f in per_file),
                sum(f.fn for f in per_file),
                sum(f.fp for f in per_file),
            )
    return Fold(
        held_out,
        len(test),
        best_label,
        best_score,
        tuple(thresholds),
        tuple(raws),
        tuple(normalised),
        *counts,
    )


# -- candidates ----------------------------------------------------------------------------------


def expand_grid(grid: Sequence[str]) -> list[dict[str, str]]:
    """``KEY=v1,v2`` options to every combination of their values (the product)."""
    keys, values = [], []
    for item in grid:
        key, sep, text = item.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"grid entry '{item}': expected KEY=VALUE[,VALUE...]")
        keys.append(key.strip())
        values.append([v.strip() for v in text.split(",") if v.strip()])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def label(setting: Mapping[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in setting.items()) or DEFAULTS


def score_candidates(
    files: Sequence[CorpusFile],
    detector: str,
    base: Mapping[str, str],
    grid: Sequence[Mapping[str, str]],
    jobs: int | None = None,
) -> dict[str, list[FloatArray]]:
    """Every file's scores under every setting of ``grid`` (each on top of ``base``), the
    files spread over ``jobs`` processes (default: one per CPU)."""
    settings = [{**base, **extra} for extra in grid] or [dict(base)]
    labels = [label(extra) for extra in grid] or [DEFAULTS]
    tasks = [(s, f) for s in settings for f in files]
    workers = max(1, jobs or os.cpu_count() or 1)
    if workers == 1:
        flat = [run_detector(detector, f, s) for s, f in tasks]
    else:
        with ProcessPoolExecutor(workers) as pool:
            flat = list(
                pool.map(
                    run_detector,
                    [detector] * len(tasks),
                    [f for _, f in tasks],
                    [s for s, _ in tasks],
                    chunksize=1,
                )
            )
    n = len(files)
    return {lab: flat[k * n : (k + 1) * n] for k, lab in enumerate(labels)}


def trim(
    files: Sequence[CorpusFile], rows: int | None = None, per_category: int | None = None
) -> list[CorpusFile]:
    """A slice of the corpus: the first ``per_category`` files of each category, each cut to
    its first ``rows`` rows (windows past the cut dropped, a window across it shortened)."""
    kept: list[CorpusFile] = []
    seen: dict[str, int] = {}
    for file in files:
        c = category(file)
        if per_category is not None and seen.get(c, 0) >= per_category:
            continue
        seen[c] = seen.get(c, 0) + 1
        if rows is not None and rows < len(file.values):
            file = replace(
                file,
                timestamps=file.timestamps[:rows],
                times=file.times[:rows],
                values=file.values[:rows],
                windows=tuple((a, min(b, rows - 1)) for a, b in file.windows if a < rows),
            )
        kept.append(file)
    return kept


# -- the report ----------------------------------------------------------------------------------


def report(cv: CrossValidation, detector: str, candidates: int) -> str:
    names = [p.name.replace("reward_", "").replace("_rate", "") for p in PROFILES]
    lines = [
        f"detector {detector}: leave-one-category-out, {candidates} candidate setting(s); "
        "setting and thresholds chosen on the other categories",
        "",
        f"{'held out':<22} {'files':>5} "
        + " ".join(f"{n:>9}" for n in names)
        + f" {'tp':>4} {'fn':>4} {'fp':>4} {'train':>6}  setting",
    ]
    for f in cv.folds:
        cells = " ".join(
            f"{s:9.1f}" if s is not None else f"{'raw ' + format(r, '.2f'):>9}"
            for s, r in zip(f.score, f.raw, strict=True)
        )
        lines.append(
            f"{f.category:<22} {f.files:5d} {cells} {f.tp:4d} {f.fn:4d} {f.fp:4d} "
            f"{f.train:6.1f}  {f.setting}"
        )
    lines.append("")
    for title, values in (
        ("mean of folds", [cv.mean(p) for p in range(len(PROFILES))]),
        ("worst fold", [cv.worst(p) for p in range(len(PROFILES))]),
        ("pooled", list(cv.pooled)),
    ):
        lines.append(f"{title:<28} " + " ".join(f"{v:9.1f}" for v in values))
    return "\n".join(lines)


def as_json(cv: CrossValidation, detector: str) -> dict[str, Any]:
    names = [p.name for p in PROFILES]
    return {
        "detector": detector,
        "folds": [
            {
                "category": f.category,
                "files": f.files,
                "setting": f.setting,
                "train_standard": round(f.train, 2),
                "thresholds": dict(zip(names, f.thresholds, strict=True)),
                "raw": {n: round(r, 4) for n, r in zip(names, f.raw, strict=True)},
                "score": {
                    n: None if s is None else round(s, 2)
                    for n, s in zip(names, f.score, strict=True)
                },
                "tp": f.tp,
                "fn": f.fn,
                "fp": f.fp,
            }
            for f in cv.folds
        ],
        "mean": {n: round(cv.mean(p), 2) for p, n in enumerate(names)},
        "worst": {n: round(cv.worst(p), 2) for p, n in enumerate(names)},
        "pooled": {n: round(v, 2) for n, v in zip(names, cv.pooled, strict=True)},
    }
