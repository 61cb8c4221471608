"""Score a streaming anomaly detector on a corpus in NAB's layout, by NAB v1.1's rules.

Run from a checkout::

    .venv/bin/python tools/nab.py --corpus path/to/NAB --detector adaptive

The corpus is ``<corpus>/data/<category>/<name>.csv`` (columns ``timestamp,value``) and a
windows file, ``<corpus>/combined_windows.json`` or ``<corpus>/labels/combined_windows.json``,
mapping ``<category>/<name>.csv`` to ``[start, end]`` timestamps. Each file is replayed through
the detector with :func:`edge.modeltools.detect.score_series`, the code behind ``edge
detect``, so what is scored here is what the runtime runs. The scorer follows NAB v1.1
(``nab/scorer.py`` and ``nab/sweeper.py``):

* the first ``min(floor(0.15 n), 750)`` rows of a file are a probation period, not scored;
* a detection is ``score >= threshold``, one threshold per profile for the whole corpus, the
  one that maximises the corpus total among every distinct score (plus "nothing detected");
* only the earliest detection in a window counts, ``sigma(-(r - i + 1) / w) / sigma(-1)``;
  a window without one costs ``-FN``; a detection outside windows costs
  ``FP * sigma(|prev_r - i| / (prev_w - 1))`` after a window and ``-FP`` before any;
* normalised score ``100 (S - S_null) / (S_perfect - S_null)``, where the null detector
  misses every window and the perfect one detects each on its first scored row.

``--cv`` cross-validates instead (:mod:`tools.nab_cv`): each category is held out in turn and
scored with the threshold (and any ``--grid`` setting) chosen on the others.

Baselines run through the same path: ``zscore`` with its defaults (``edge detect`` scores
it ``|z| / (|z| + threshold)``), and ``threshold`` whose limits, unless ``--set`` gives them,
are the lowest and highest values of the file's probation period (what someone who watched
the first days would set; no look-ahead); it scores 1 where its alarm fires, 0 elsewhere.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.modeltools.detect import DetectInputError, parse_settings, read_series, score_series

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_SHARE = 0.15
PROBATION_MAX_ROWS = 750  # NAB: 0.15 x 5000
OUTSIDE, PROBATION = -1, -2  # window index of rows in no window / in the probation period
NO_DETECTION = 1.1  # NAB's starting threshold: above any score
_NUDGE = 1e-9


@dataclass(frozen=True)
class Profile:
    """NAB's application profile: the weight of a true positive, a false positive, a miss."""

    name: str
    tp: float
    fp: float
    fn: float


PROFILES = (
    Profile("standard", 1.0, 0.11, 1.0),
    Profile("reward_low_FP_rate", 1.0, 0.22, 1.0),
    Profile("reward_low_FN_rate", 1.0, 0.11, 2.0),
)


@dataclass(frozen=True)
class CorpusFile:
    """One series of the corpus and its anomaly windows as (first, last) row indexes."""

    name: str
    timestamps: tuple[str, ...]
    times: tuple[float, ...]  # seconds, as ``edge detect`` reads the timestamps
    values: tuple[float, ...]
    windows: tuple[tuple[int, int], ...]

    @property
    def probation(self) -> int:
        """Rows not scored at the start: ``min(floor(0.15 n), 750)``."""
        return probation_length(len(self.values))


def probation_length(rows: int) -> int:
    return min(math.floor(PROBATION_SHARE * rows), PROBATION_MAX_ROWS)


def scaled_sigmoid(x: float) -> float:
    """NAB v1.1's ``scaledSigmoid``: ``2 / (1 + e^(5x)) - 1``, and -1 beyond ``x > 3``."""
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


# -- the corpus --------------------------------------------------------------------------------


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def window_rows(timestamps: Sequence[str], start: str, end: str) -> tuple[int, int]:
    """Rows of the window ``[start, end]``: the first at or after ``start``, the last at or
    before ``end`` (NAB's windows fall on rows, so these are the rows with those timestamps)."""
    first_at, last_at = _moment(start), _moment(end)
    moments = [_moment(t) for t in timestamps]
    first = next((i for i, m in enumerate(moments) if m >= first_at), None)
    last = next((i for i in range(len(moments) - 1, -1, -1) if moments[i] <= last_at), None)
    if first is None or last is None or last < first:
        raise ValueError(f"window [{start}, {end}] holds no row")
    return first, last


def windows_file(corpus: Path) -> Path:
    for candidate in (
        corpus / "combined_windows.json",
        corpus / "labels" / "combined_windows.json",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{corpus}: no combined_windows.json (nor labels/combined_windows.json)"
    )


def load_corpus(corpus: Path) -> list[CorpusFile]:
    """Every file the windows file names, in sorted order, with its windows as row indexes."""
    labels: dict[str, list[list[str]]] = json.loads(windows_file(corpus).read_text("utf-8"))
    files = []
    for name in sorted(labels):
        series = read_series(corpus / "data" / name)
        stamps = tuple(series.timestamps)
        windows = tuple(window_rows(stamps, start, end) for start, end in labels[name])
        files.append(CorpusFile(name, stamps, tuple(series.times), tuple(series.values), windows))
    return files


# -- scoring -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowWeights:
    """What a detection on each row of one file is worth under one profile.

    ``window[i]`` is the index of the window row ``i`` lies in, :data:`OUTSIDE`, or
    :data:`PROBATION`; ``weight[i]`` is the score a detection there earns (a true positive's
    positive weight in a window, a false positive's negative one outside).
    """

    window: IntArray
    weight: FloatArray


def row_weights(file: CorpusFile, profile: Profile) -> RowWeights:
    """NAB's ``calcSweepScore`` for one file: the weight of a detection on every row."""
    n = len(file.values)
    rows = np.arange(n)
    window = np.full(n, OUTSIDE, dtype=np.int64)
    weight = np.full(n, -1.0 * profile.fp)  # before any window
    max_tp = scaled_sigmoid(-1.0)
    for k, (left, right) in enumerate(file.windows):
        width = right - left + 1
        inside = rows[left : right + 1]
        window[left : right + 1] = k
        weight[left : right + 1] = _sigmoids(-(right - inside + 1) / width) * profile.tp / max_tp
        end = file.windows[k + 1][0] if k + 1 < len(file.windows) else n
        after = rows[right + 1 : end]
        # NAB divides by (width - 1); a one-row window would divide by zero there.
        weight[right + 1 : end] = _sigmoids(np.abs(right - after) / max(width - 1, 1)) * profile.fp
    window[: file.probation] = PROBATION
    return RowWeights(window, weight)


def _sigmoids(x: FloatArray | IntArray) -> FloatArray:
    """:func:`scaled_sigmoid` of every element."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        values = 2.0 / (1.0 + np.exp(5.0 * np.minimum(x, 4.0))) - 1.0
    return np.where(x > 3.0, -1.0, values)


def scored_windows(file: CorpusFile) -> int:
    """Windows with at least one row past probation: the only ones NAB counts."""
    return sum(1 for _, right in file.windows if right >= file.probation)


@dataclass(frozen=True)
class Sweep:
    """The best corpus-wide threshold of one profile and the corpus total it gives."""

    threshold: float
    total: float


def sweep(files: Sequence[CorpusFile], scores: Sequence[FloatArray], profile: Profile) -> Sweep:
    """NAB's threshold optimisation: the threshold (a distinct score, or above all of them)
    that maximises the corpus total, computed in one pass over the sorted scores.

    The first of several thresholds with the same total, in descending order, wins (NAB sorts
    the candidates by total with a stable sort).
    """
    all_scores, deltas, base = [], [], 0.0
    for file, file_scores in zip(files, scores, strict=True):
        rows = row_weights(file, profile)
        keep = rows.window != PROBATION
        s = np.asarray(file_scores, dtype=np.float64)[keep]
        w = rows.weight[keep]
        win = rows.window[keep]
        delta = np.where(win == OUTSIDE, w, 0.0)
        order = np.argsort(-s, kind="stable")
        for k in np.unique(win[win >= 0]):
            members = order[win[order] == k]  # rows of window k, highest score first
            so_far = np.maximum.accumulate(np.concatenate(([-profile.fn], w[members])))
            delta[members] = np.diff(so_far)  # each row's gain over the window's best so far
            base -= profile.fn
        all_scores.append(s)
        deltas.append(delta)
    s = np.concatenate(all_scores) if all_scores else np.empty(0)
    d = np.concatenate(deltas) if deltas else np.empty(0)
    order = np.argsort(-s, kind="stable")
    s, d = s[order], d[order]
    totals = base + np.cumsum(d)
    # The total at threshold s[j] counts every row with a score >= s[j]: the last of a tie.
    last_of_tie = np.ones(len(s), dtype=bool)
    last_of_tie[:-1] = s[:-1] != s[1:]
    thresholds = np.concatenate(([NO_DETECTION], s[last_of_tie]))
    candidates = np.concatenate(([base], totals[last_of_tie]))
    best = int(np.argmax(candidates))
    return Sweep(float(thresholds[best]), float(candidates[best]))


@dataclass(frozen=True)
class FileScore:
    """One file's part of the corpus total at a given threshold."""

    name: str
    score: float
    tp: int  # windows detected
    fn: int  # windows missed
    fp: int  # detections outside windows (past probation)


def score_file(
    file: CorpusFile, scores: FloatArray, profile: Profile, threshold: float
) -> FileScore:
    rows = row_weights(file, profile)
    detected = (np.asarray(scores) >= threshold) & (rows.window != PROBATION)
    total, tp, fn = 0.0, 0, 0
    for k, (_, right) in enumerate(file.windows):
        if right < file.probation:
            continue
        hits = np.flatnonzero(detected & (rows.window == k))
        if len(hits):
            total += float(rows.weight[hits[0]])  # the earliest detection counts
            tp += 1
        else:
            total -= profile.fn
            fn += 1
    false = detected & (rows.window == OUTSIDE)
    total += float(rows.weight[false].sum())
    return FileScore(file.name, total, tp, fn, int(false.sum()))


def perfect_total(files: Sequence[CorpusFile], profile: Profile) -> float:
    """The perfect detector: each counted window detected on its first scored row."""
    total = 0.0
    for file in files:
        rows = row_weights(file, profile)
        for k, (left, right) in enumerate(file.windows):
            if right >= file.probation:
                total += float(rows.weight[max(left, file.probation)])
                assert rows.window[max(left, file.probation)] == k
    return total


@dataclass(frozen=True)
class ProfileResult:
    profile: Profile
    threshold: float
    total: float
    normalised: float
    files: tuple[FileScore, ...]


def normalise(files: Sequence[CorpusFile], profile: Profile, total: float) -> float | None:
    """``100 (S - S_null) / (S_perfect - S_null)`` over ``files``; None without a window to
    find (then only false positives can be scored, and the raw total is the figure)."""
    null = -profile.fn * sum(scored_windows(f) for f in files)
    perfect = perfect_total(files, profile)
    return 100.0 * (total - null) / (perfect - null) if perfect > null else None


def evaluate(files: Sequence[CorpusFile], scores: Sequence[FloatArray]) -> list[ProfileResult]:
    """Every profile's best threshold, raw and normalised totals, and per-file scores."""
    results = []
    for profile in PROFILES:
        best = sweep(files, scores, profile)
        normalised = normalise(files, profile, best.total) or 0.0
        per_file = tuple(
            score_file(f, s, profile, best.threshold) for f, s in zip(files, scores, strict=True)
        )
        results.append(ProfileResult(profile, best.threshold, best.total, normalised, per_file))
    return results


# -- running a detector ----------------------------------------------------------------------


def run_detector(detector: str, file: CorpusFile, settings: Mapping[str, str]) -> FloatArray:
    """Replay one file through ``detector`` (the ``edge detect`` code) and return its scores."""
    settings = dict(settings)
    if detector == "threshold" and "above" not in settings and "below" not in settings:
        probation = file.values[: file.probation] or file.values[:1]
        low, high = min(probation), max(probation)
        if low == high:  # a flat start: any change at all is out of range
            low, high = low - _NUDGE * (1 + abs(low)), high + _NUDGE * (1 + abs(high))
        settings["above"] = repr(high)
        settings["below"] = repr(low)
    return np.asarray(score_series(detector, settings, file.times, file.values), dtype=np.float64)


def report(results: Sequence[ProfileResult], detector: str, cost: float) -> str:
    lines = [f"detector {detector}: {cost * 1e6:.1f} us per reading (wall time / readings)"]
    lines.append("")
    lines.append(f"{'profile':<20} {'score':>7} {'threshold':>10} {'raw':>9}")
    for r in results:
        lines.append(f"{r.profile.name:<20} {r.normalised:7.1f} {r.threshold:10.4f} {r.total:9.2f}")
    standard = results[0]
    lines.append("")
    lines.append(f"per file (standard profile, threshold {standard.threshold:.4f}):")
    lines.append(f"{'file':<54} {'score':>7} {'tp':>3} {'fn':>3} {'fp':>4}")
    for f in standard.files:
        lines.append(f"{f.name:<54} {f.score:7.2f} {f.tp:3d} {f.fn:3d} {f.fp:4d}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Score a detector on a corpus in NAB's layout (NAB v1.1 rules)."
    )
    parser.add_argument("--corpus", required=True, type=Path, help="directory in NAB's layout")
    parser.add_argument("--detector", default="adaptive", help="detector type (adaptive)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a detector parameter"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--cv", action="store_true", help="leave-one-category-out cross-validation")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="with --cv: candidate values of a parameter, chosen per fold (repeatable)",
    )
    parser.add_argument("--jobs", type=int, help="processes (default: one per CPU)")
    parser.add_argument("--rows", type=int, help="only the first ROWS rows of each file")
    parser.add_argument("--per-category", type=int, help="only the first N files of each category")
    args = parser.parse_args(argv)
    from tools import nab_cv  # it imports this module

    try:
        settings = parse_settings(args.set)
        grid = nab_cv.expand_grid(args.grid)
        if args.grid and not args.cv:
            raise ValueError("--grid needs --cv")
        files = nab_cv.trim(load_corpus(args.corpus), args.rows, args.per_category)
        started = time.perf_counter()
        candidates = nab_cv.score_candidates(files, args.detector, settings, grid, args.jobs)
        readings = sum(len(f.values) for f in files) * len(candidates)
        cost = (time.perf_counter() - started) / max(readings, 1)
    except DetectInputError as exc:
        for problem in exc.problems:
            print(f"nab: {problem}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"nab: {exc}", file=sys.stderr)
        return 2
    if args.cv:
        cv = nab_cv.cross_validate(files, candidates)
        if args.json:
            print(json.dumps(nab_cv.as_json(cv, args.detector), indent=2))
        else:
            print(nab_cv.report(cv, args.detector, len(candidates)))
        return 0
    results = evaluate(files, next(iter(candidates.values())))
    if args.json:
        print(json.dumps(_as_json(results, args.detector, cost), indent=2))
    else:
        print(report(results, args.detector, cost))
    return 0


def _as_json(results: Sequence[ProfileResult], detector: str, cost: float) -> dict[str, Any]:
    return {
        "detector": detector,
        "us_per_reading": round(cost * 1e6, 2),
        "profiles": {
            r.profile.name: {
                "score": round(r.normalised, 2),
                "threshold": r.threshold,
                "raw": round(r.total, 4),
                "files": {f.name: [round(f.score, 4), f.tp, f.fn, f.fp] for f in r.files},
            }
            for r in results
        },
    }


if __name__ == "__main__":
    sys.exit(main())
