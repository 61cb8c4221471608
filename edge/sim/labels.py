"""Ground truth and the score of a run's detections against it.

A scenario labels what a good detector should catch: a ``Label`` names its ``kind``, a
text (``label``), the sensor it concerns (``None``: the whole device) and a window
``[start, end]`` in seconds since the run's start.

What is scored, and by what:

- ``anomaly`` labels are caught by **alarms**: events of any kind except ``telemetry``
  and ``health`` whose fields say ``"state": "active"`` (a threshold or anomaly detector
  raising). A ``clear`` is not an alarm; neither is a ``state`` event of a GPIO input.
- ``fault`` labels (hardware faults) are caught by **fault reports**: ``health`` events
  whose state is ``degraded``, ``stuck`` or ``out_of_range``.
- Labels of any other kind (``network``, ``power``, ...) are context, not scored.

An alarm or fault report is a **detection**. A detection matches a label of its class
when it falls in ``[start, end + grace]`` and is on the label's sensor: the label's sensor
is ``None`` (any sensor), equals the event's sensor, or names ``<sensor>.<quantity>`` and
the event is on that sensor with that ``quantity`` field or with none (a failed read
concerns every quantity of the sensor), or with the vector quantity whose axis the label
names (an alarm on ``accel`` concerns ``accel_x``). A detection already active before a
window opened raises no new alarm and so catches nothing: a detector that is on all along
is not rewarded.

- TP: labels caught by at least one matching detection; FN: scorable labels caught by none.
- FP: detections matching no label window of their class (grace included).
- precision = TP / (TP + FP), 1.0 when there is no detection at all; recall = TP / (TP +
  FN), 1.0 when there is no scorable label; F1 their harmonic mean (0.0 when both are 0).
- false alarms per hour: FP per hour of scenario time.
- detection delay of a caught label: its first matching detection's time minus its start.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

ANOMALY: Final = "anomaly"
FAULT: Final = "fault"
SCORED_KINDS = (ANOMALY, FAULT)
NOT_ALARMS = frozenset({"telemetry", "health"})
FAULT_STATES = frozenset({"degraded", "stuck", "out_of_range"})

Class = Literal["anomaly", "fault"]


@dataclass(frozen=True)
class Label:
    """A ground-truth window: seconds since the run's start, ``sensor`` None for any."""

    kind: str
    label: str
    sensor: str | None
    start: float
    end: float

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("a label needs a kind")
        if not (math.isfinite(self.start) and math.isfinite(self.end)):
            raise ValueError(f"label {self.label!r}: start and end must be finite numbers")
        if self.end < self.start:
            raise ValueError(f"label {self.label!r}: end {self.end} is before start {self.start}")

    @property
    def scored(self) -> bool:
        return self.kind in SCORED_KINDS


class ScoredEvent(Protocol):
    """What scoring needs of an event (a recorded one, or any look-alike)."""

    @property
    def t(self) -> float: ...  # seconds since the run's start

    @property
    def sensor(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def fields(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class Finding:
    """An event that claims something is wrong, and which labels it can catch."""

    t: float
    sensor: str
    quantity: str | None
    catches: Class

    def on(self, label: Label) -> bool:
        if label.sensor is None or label.sensor == self.sensor:
            return True
        sensor, dot, quantity = label.sensor.rpartition(".")
        if not dot or sensor != self.sensor:
            return False
        # A whole-sensor report (a failed read) concerns each of its quantities; a report on
        # a vector quantity (``accel``) concerns each of its axes (``accel_x``).
        return self.quantity in (None, quantity) or quantity.startswith(f"{self.quantity}_")

    def matches(self, label: Label, grace: float) -> bool:
        return (
            label.kind == self.catches
            and label.start <= self.t <= label.end + grace
            and self.on(label)
        )


def finding_of(event: ScoredEvent) -> Finding | None:
    """The event as a detection, or None when it raises nothing (see the module doc)."""
    state = event.fields.get("state")
    quantity = event.fields.get("quantity")
    quantity = quantity if isinstance(quantity, str) else None
    if event.kind == "health":
        if state in FAULT_STATES:
            return Finding(event.t, event.sensor, quantity, FAULT)
        return None
    if event.kind not in NOT_ALARMS and state == "active":
        return Finding(event.t, event.sensor, quantity, ANOMALY)
    return None


@dataclass(frozen=True)
class Score:
    labels: int  # scorable labels
    detections: int
    true_positives: int
    false_negatives: int
    false_positives: int
    precision: float
    recall: float
    f1: float
    false_alarms_per_hour: float
    mean_delay: float | None  # seconds; None when nothing was caught
    max_delay: float | None
    caught: tuple[Label, ...]
    missed: tuple[Label, ...]

    def summary(self) -> str:
        """One line for the end of a run."""
        if self.labels == 0 and self.detections == 0:
            return "no scored labels, no detections"
        delay = "" if self.mean_delay is None else f", mean delay {self.mean_delay:.1f} s"
        return (
            f"{self.true_positives}/{self.labels} labels caught, {self.false_positives} false "
            f"alarm(s) ({self.false_alarms_per_hour:.2f}/h); precision {self.precision:.2f}, "
            f"recall {self.recall:.2f}, F1 {self.f1:.2f}{delay}"
        )


def score(
    labels: Sequence[Label], events: Iterable[ScoredEvent], *, grace: float, duration: float
) -> Score:
    """Score the events of a run of ``duration`` seconds against its labels.

    A label that starts at or after ``duration`` never happened in the run (a short run of a
    long scenario): it is neither caught nor missed, and a detection cannot match it."""
    if not grace >= 0:
        raise ValueError(f"grace must be >= 0 seconds, not {grace}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 seconds, not {duration}")
    scorable = [label for label in labels if label.scored and label.start < duration]
    detections = [d for d in map(finding_of, events) if d is not None]
    caught: list[Label] = []
    missed: list[Label] = []
    delays: list[float] = []
    for label in scorable:
        times = [d.t for d in detections if d.matches(label, grace)]
        if times:
            caught.append(label)
            delays.append(min(times) - label.start)
        else:
            missed.append(label)
    fp = sum(1 for d in detections if not any(d.matches(label, grace) for label in scorable))
    tp, fn = len(caught), len(missed)
    precision, recall, f1 = _rates(tp, fp, fn)
    return Score(
        labels=len(scorable),
        detections=len(detections),
        true_positives=tp,
        false_negatives=fn,
        false_positives=fp,
        precision=precision,
        recall=recall,
        f1=f1,
        false_alarms_per_hour=fp * 3600.0 / duration,
        mean_delay=sum(delays) / len(delays) if delays else None,
        max_delay=max(delays) if delays else None,
        caught=tuple(caught),
        missed=tuple(missed),
    )


def _rates(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 of the counts (1.0 where nothing was there to get wrong)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def pooled(scores: Sequence[Score]) -> Score:
    """Several runs of one scenario scored as one (a fleet's devices): counts added up,
    precision, recall and F1 from the sums, false alarms per hour per device, delays over
    every label caught."""
    if not scores:
        raise ValueError("no scores to pool")
    tp = sum(s.true_positives for s in scores)
    fn = sum(s.false_negatives for s in scores)
    fp = sum(s.false_positives for s in scores)
    precision, recall, f1 = _rates(tp, fp, fn)
    delays = [(s.mean_delay, s.true_positives) for s in scores if s.mean_delay is not None]
    longest = [s.max_delay for s in scores if s.max_delay is not None]
    return Score(
        labels=sum(s.labels for s in scores),
        detections=sum(s.detections for s in scores),
        true_positives=tp,
        false_negatives=fn,
        false_positives=fp,
        precision=precision,
        recall=recall,
        f1=f1,
        false_alarms_per_hour=sum(s.false_alarms_per_hour for s in scores) / len(scores),
        mean_delay=sum(d * n for d, n in delays) / tp if delays and tp else None,
        max_delay=max(longest) if longest else None,
        caught=tuple(label for s in scores for label in s.caught),
        missed=tuple(label for s in scores for label in s.missed),
    )
