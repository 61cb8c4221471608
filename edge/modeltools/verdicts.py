"""Operators' verdicts as training labels: the windows of readings a device stored with them.

``edge model train --labels FEEDBACK.sqlite`` (a device's ``<state_dir>/feedback.sqlite``,
copied off it) takes the verdicts on the trained sensor and quantity:

- each ``false_alarm`` window is normal running the rules took for an anomaly: its model
  windows join the windows the model is fitted on (first, so they are fitted, never held
  out: the threshold stays calibrated on the recording's own held-out windows);
- each ``true_alarm`` and ``missed`` window is an anomaly: the model window ending at its
  newest reading is scored once the model is calibrated, and the report says how many
  score above the threshold (the model would have raised them).

Verdict windows are scalar readings at the detector's rate; a window whose readings are
spaced other than the recording's (beyond 10 %), or shorter than one model window, is
skipped and counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.modeltools.series import ModelCommandError
from edge.runtime.feedback_store import VerdictRecord, read_verdicts
from models.features import FeatureSpec
from models.features import features as compute_features
from models.windows import Window

if TYPE_CHECKING:
    from numpy.typing import NDArray

NORMAL = ("false_alarm",)
ANOMALOUS = ("true_alarm", "missed")
RATE_SLACK = 0.1


@dataclass(frozen=True)
class VerdictWindows:
    normal: NDArray[np.float32]  # feature rows of the false alarms' windows
    anomalous: NDArray[np.float32]  # one row per true alarm or miss: its last window
    used: int  # verdicts taken
    skipped: int  # verdicts on this series not taken (too short, another rate)


def verdict_windows(
    path: str | Path,
    *,
    sensor: str,
    quantity: str | None,
    window: int,
    hop: int,
    spec: FeatureSpec,
    rate: float,
) -> VerdictWindows:
    """The feature rows of the verdicts in ``path`` on ``sensor`` (``quantity``)."""
    try:
        verdicts = read_verdicts(path)
    except sqlite3.Error as exc:
        raise ModelCommandError(f"--labels: {path} is no feedback file: {exc}") from None
    normal: list[NDArray[np.float32]] = []
    anomalous: list[NDArray[np.float32]] = []
    used = skipped = 0
    for verdict in verdicts:
        if verdict.sensor != sensor or verdict.quantity != quantity:
            continue
        values = _values(verdict, window, rate)
        if values is None:
            skipped += 1
            continue
        used += 1
        if verdict.verdict in NORMAL:
            normal.extend(_rows(values, window, hop, spec, rate))
        elif verdict.verdict in ANOMALOUS:
            anomalous.extend(_rows(values[-window:], window, window, spec, rate))
    k = len(spec)
    return VerdictWindows(_stack(normal, k), _stack(anomalous, k), used, skipped)


def _values(verdict: VerdictRecord, window: int, rate: float) -> NDArray[np.float64] | None:
    readings: Sequence[Sequence[float]] = verdict.window or []
    if len(readings) < window:
        return None
    times = np.array([r[0] for r in readings], dtype=np.float64)
    steps = np.diff(times)
    steps = steps[steps > 0]
    if len(steps) == 0 or abs(float(np.median(steps)) * rate - 1) > RATE_SLACK:
        return None
    return np.array([r[1] for r in readings], dtype=np.float64)


def _rows(
    values: NDArray[np.float64], window: int, hop: int, spec: FeatureSpec, rate: float
) -> list[NDArray[np.float32]]:
    win = Window(window, hop)
    batch = win.push_block(np.arange(len(values), dtype=np.float64) / rate, values)
    return [compute_features(v, spec, rate) for v in batch.values]


def _stack(rows: list[NDArray[np.float32]], k: int) -> NDArray[np.float32]:
    return np.stack(rows) if rows else np.empty((0, k), dtype=np.float32)
