"""The feedback loop on the device: alarms kept with their readings, verdicts, thresholds moved.

With ``[feedback] enabled``, each tunable detector (:class:`models.tuning.TunableDetector`)
is wrapped in a :class:`Watched` that keeps its last ``window`` readings; when it raises an
alarm, those readings are set aside, and once the alarm is in the outbox (it has a ``seq``)
they are stored with it (:mod:`edge.runtime.feedback_store`). A ``label`` command gives a
verdict on an alarm by its ``seq``::

    {"seq": 4711, "verdict": "false_alarm" | "true_alarm" | "missed", "note": "door open",
     "detector": "probe-z", "side": "above", "stream": "3dca501460161670"}

``detector`` and ``side`` matter only for ``missed`` (which names any event, typically the
telemetry of a reading that should have alarmed: the window stored is that detector's
latest readings); ``stream``, when given, must be the outbox's. The verdict is stored; with
``adjust``, it moves the detector's threshold by :func:`models.tuning.next_threshold`, on
the sampling thread, and the change is a ``health`` event (``state`` ``threshold_changed``).
A second verdict on a seq is answered as a duplicate when it says the same, refused when it
does not. The ``feedback`` command's ``reset`` puts configured thresholds back (``state``
``threshold_reset``) and ``status`` says what each tunable detector runs with.

Threads: :meth:`Feedback.watch` runs at build (the owner's thread), :meth:`Watched.observe`
on the sampling thread, :meth:`Feedback.committed` on the recorder's, and the command
handlers on the command worker, which hands every threshold change to the sampling thread
(``on_sampler``). The hand-off of alarm windows from sampler to recorder is a deque
(append and popleft are atomic); the tuning state is the command worker's alone.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from edge.config.feedback import FeedbackConfig
from edge.events import Event, format_ts
from edge.runtime.feedback_store import (
    KEEP_ALARMS,
    AlarmRecord,
    FeedbackStore,
    Tuning,
    VerdictRecord,
)
from edge.uplink.commands import CommandRefused, Handler, on_sampler
from models import Detection, Detector
from models.alarm import Side
from models.tuning import SIDES, VERDICTS, Rule, TunableDetector, Verdict, next_threshold, orient

log = logging.getLogger(__name__)

Post = Callable[[Callable[[], None]], None]
# (sensor, fields): a health event about a detector's threshold, from any thread.
Health = Callable[[str, dict[str, Any]], None]
ALARM_KINDS = frozenset({"threshold", "anomaly"})
PENDING = 64  # alarm windows waiting for their seq, per detector
MAX_NOTE = 1000
LABEL_KEYS = ("seq", "verdict", "note", "detector", "side", "stream")
FEEDBACK_ACTIONS = ("reset", "status")


@dataclass(frozen=True)
class LabelRequest:
    """A ``label`` command's arguments, checked."""

    seq: int
    verdict: Verdict
    note: str | None = None
    detector: str | None = None
    side: Side | None = None
    stream: str | None = None


def parse_label(args: Mapping[str, Any]) -> LabelRequest:
    """Check a ``label`` command's arguments; ``CommandRefused`` naming the first bad one."""
    unknown = sorted(set(args) - set(LABEL_KEYS))
    if unknown:
        raise CommandRefused(f"unknown argument {unknown[0]!r}; expected {', '.join(LABEL_KEYS)}")
    seq, verdict = args.get("seq"), args.get("verdict")
    if not _seq(seq):
        raise CommandRefused(f"seq must be an alarm's seq (an integer >= 1), got {seq!r}")
    if verdict not in VERDICTS:
        raise CommandRefused(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    note = args.get("note")
    if note is not None and not (isinstance(note, str) and len(note) <= MAX_NOTE):
        raise CommandRefused(f"note must be text of at most {MAX_NOTE} characters")
    detector, side, stream = args.get("detector"), args.get("side"), args.get("stream")
    if detector is not None and not (isinstance(detector, str) and 0 < len(detector) <= 64):
        raise CommandRefused(f"detector must be a detector id, got {detector!r}")
    if side is not None and side not in SIDES:
        raise CommandRefused(f"side must be one of {', '.join(SIDES)}, got {side!r}")
    if stream is not None and not (isinstance(stream, str) and 0 < len(stream) <= 64):
        raise CommandRefused(f"stream must be an outbox stream id, got {stream!r}")
    return LabelRequest(seq, verdict, note, detector, side, stream)


def parse_feedback(args: Mapping[str, Any], known: Collection[str]) -> tuple[str, str | None]:
    """Check a ``feedback`` command's arguments: its action, and the detector it names (None:
    every one); ``CommandRefused`` naming the first bad one."""
    action, name = args.get("action"), args.get("detector")
    unknown = sorted(set(args) - {"action", "detector"})
    if unknown:
        raise CommandRefused(f"unknown argument {unknown[0]!r}; expected action, detector")
    if not isinstance(action, str) or action not in FEEDBACK_ACTIONS:
        raise CommandRefused(f"action must be one of {', '.join(FEEDBACK_ACTIONS)}, got {action!r}")
    if name is not None and (not isinstance(name, str) or name not in known):
        names = ", ".join(sorted(known)) or "none"
        raise CommandRefused(f"detector must name a tunable detector ({names}), got {name!r}")
    return action, name


def _seq(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


@dataclass
class Knob:
    """One tunable detector: its configured thresholds, what feedback made of them, and the
    readings it saw last."""

    id: str
    sensor: str
    quantity: str | None
    detector: TunableDetector
    configured: dict[Side, float]
    ring: deque[tuple[float, float]]
    pending: deque[tuple[float, list[list[float]]]] = field(
        default_factory=lambda: deque(maxlen=PENDING)
    )
    tuning: dict[Side, Tuning] = field(default_factory=dict)

    def window(self) -> list[list[float]]:
        """The readings kept, as [seconds before the newest, value] (sampling thread)."""
        if not self.ring:
            return []
        newest = self.ring[-1][0]
        return [[round(t - newest, 6), v] for t, v in self.ring]

    def take(self, value: Any) -> list[list[float]]:
        """The window set aside for the alarm whose value is ``value`` (recorder thread).

        Alarms reach the outbox in the order they were raised; one the recorder dropped
        leaves its window here, skipped over by the next match."""
        while self.pending:
            raised, window = self.pending.popleft()
            if raised == value:
                return window
        return []


class Watched:
    """A tunable detector, its readings kept (sampling thread only)."""

    def __init__(self, knob: Knob) -> None:
        self.knob = knob

    def observe(self, t: float, value: float) -> Detection | None:
        knob = self.knob
        knob.ring.append((t, value))
        found = knob.detector.observe(t, value)
        if found is not None and found.fields.get("state") == "active":
            knob.pending.append((found.value, knob.window()))
        return found


class Feedback:
    """Verdicts and thresholds for one runtime; see the module docstring for its threads."""

    def __init__(
        self,
        settings: FeedbackConfig,
        state_dir: str | Path,
        *,
        stream: str,
        post: Post,
        health: Health,
        wall: Callable[[], float],
        last_seq: Callable[[], int],
    ) -> None:
        self.settings = settings
        self.rule = Rule(settings.step, settings.max_change, settings.margin)
        self.stream = stream
        self.post = post
        self.health = health
        self.wall = wall
        self.last_seq = last_seq  # the outbox's newest seq: a verdict names one up to it
        self.store = FeedbackStore(state_dir)
        self.knobs: dict[str, Knob] = {}

    def close(self) -> None:
        self.store.close()

    # -- build (owner's thread) ----------------------------------------------------------------

    def watch(
        self, detector_id: str, sensor: str, quantity: str | None, detector: Detector
    ) -> Detector:
        """``detector`` wrapped to keep its readings, if it is tunable; else itself."""
        if not isinstance(detector, TunableDetector):
            return detector
        configured: dict[Side, float] = {}
        for side in SIDES:
            value = detector.threshold(side)
            if value is not None:
                configured[side] = value
        ring: deque[tuple[float, float]] = deque(maxlen=self.settings.window)
        knob = Knob(detector_id, sensor, quantity, detector, configured, ring)
        self.knobs[detector_id] = knob
        if self.settings.adjust:
            self._resume(knob)
        return Watched(knob)

    def _resume(self, knob: Knob) -> None:
        """Thresholds moved before a restart, moved again (unless the config changed them)."""
        saved = [t for t in self.store.tunings() if t.detector == knob.id]
        if any(knob.configured.get(_side(t.side)) != t.configured for t in saved):
            log.info("detector %s: its configured threshold changed; feedback starts afresh",
                     knob.id)  # fmt: skip
            self.store.forget_tuning(knob.id)
            return
        for tuning in saved:
            side = _side(tuning.side)
            try:
                knob.detector.set_threshold(side, tuning.threshold)
            except ValueError as exc:
                log.warning("detector %s: saved threshold not restored: %s", knob.id, exc)
                continue
            knob.tuning[side] = tuning
            if tuning.threshold != tuning.configured:
                self.health(knob.sensor, {"state": "threshold_restored", "detector": knob.id,
                                          "side": side, "threshold": tuning.threshold,
                                          "configured": tuning.configured})  # fmt: skip

    # -- alarms in the outbox (recorder thread) ------------------------------------------------

    def committed(self, events: Sequence[Event]) -> None:
        for event in events:
            if event.kind not in ALARM_KINDS:
                continue
            body = event.body()
            knob = self.knobs.get(body.get("detector"))  # type: ignore[arg-type]
            if knob is None or body.get("state") != "active":
                continue
            value = body.get("value")
            window = knob.take(value)
            point = knob.detector.alarm_point(body, value if isinstance(value, float) else math.nan)
            if point is None:
                continue
            threshold = body.get("threshold")
            alarm = AlarmRecord(
                body.get("stream", self.stream), event.seq, knob.id, event.sensor, knob.quantity,
                body.get("ts", ""), value if isinstance(value, int | float) else None,
                point[0], point[1], threshold if isinstance(threshold, int | float) else None,
                window,
            )  # fmt: skip
            try:
                self.store.add_alarm(alarm)
            except sqlite3.Error as exc:  # the outbox has the event; only its window is lost
                log.warning("alarm %d: window not stored: %s", event.seq, exc)

    # -- commands (command worker) -------------------------------------------------------------

    def handlers(self) -> dict[str, Handler]:
        return {"label": self.label, "feedback": self.command}

    def label(self, args: Mapping[str, Any]) -> Mapping[str, Any]:
        request = parse_label(args)
        stream = request.stream or self.stream
        if stream != self.stream:
            raise CommandRefused(f"stream {stream!r} is not this outbox's ({self.stream})")
        newest = self.last_seq()
        if request.seq > newest:
            raise CommandRefused(f"seq {request.seq} is beyond this outbox's newest ({newest})")
        answer: dict[str, Any] = {"stream": stream, "seq": request.seq, "verdict": request.verdict}
        earlier = self.store.verdict(stream, request.seq)
        if earlier is not None:
            if earlier.verdict != request.verdict:
                raise CommandRefused(f"seq {request.seq} already has the verdict {earlier.verdict}")
            return {**answer, "detector": earlier.detector, "duplicate": True}
        alarm = self.store.alarm(stream, request.seq)
        knob, side, measure, window = self._subject(request, alarm)
        tuning, change = self._tune(knob, side, request.verdict, measure)
        if alarm is not None:  # its detector may be gone from the config: the alarm says
            detector, sensor, quantity = alarm.detector, alarm.sensor, alarm.quantity
        else:  # missed: _subject found the knob
            assert knob is not None
            detector, sensor, quantity = knob.id, knob.sensor, knob.quantity
        record = VerdictRecord(
            stream, request.seq, request.verdict, request.note, detector, sensor, quantity,
            side, measure, window, format_ts(self.wall()),
        )  # fmt: skip
        self.store.add_verdict(record, tuning)
        if knob is not None and tuning is not None and side is not None:
            knob.tuning[side] = tuning
        if knob is not None and change is not None and side is not None:
            old, new = change
            fields = {"state": "threshold_changed", "detector": knob.id, "side": side,
                      "old": old, "new": new, "configured": knob.configured[side],
                      "verdict": request.verdict, "label_seq": request.seq}  # fmt: skip
            self.health(knob.sensor, fields)
        threshold = None if change is None else {"side": side, "old": change[0], "new": change[1]}
        return {**answer, "detector": record.detector, "stored": True, "threshold": threshold}

    def _subject(
        self, request: LabelRequest, alarm: AlarmRecord | None
    ) -> tuple[Knob | None, Side | None, float | None, Sequence[Sequence[float]] | None]:
        """Which detector and side a verdict is about, the alarm's measure and its window."""
        if request.verdict != "missed":
            if alarm is None:
                raise CommandRefused(
                    f"seq {request.seq} is not an alarm this device keeps (the newest "
                    f"{KEEP_ALARMS} alarms of threshold, rate, zscore and adaptive detectors)"
                )
            if request.detector is not None and request.detector != alarm.detector:
                raise CommandRefused(f"seq {request.seq} is an alarm of {alarm.detector}")
            return self.knobs.get(alarm.detector), _side(alarm.side), alarm.measure, alarm.window
        name = request.detector or (alarm.detector if alarm else None)
        if name is None and len(self.knobs) == 1:
            name = next(iter(self.knobs))
        knob = self.knobs.get(name) if name is not None else None
        if knob is None:
            known = ", ".join(sorted(self.knobs)) or "none"
            raise CommandRefused(f"missed needs detector, one of {known}; got {name!r}")
        side = request.side or ("above" if "above" in knob.configured else "below")
        if side not in knob.configured:
            raise CommandRefused(f"detector {knob.id} has no {side} threshold")
        window = on_sampler(self.post, knob.window)  # the readings it saw last
        return knob, side, None, window

    def _tune(
        self, knob: Knob | None, side: Side | None, verdict: Verdict, measure: float | None
    ) -> tuple[Tuning | None, tuple[float, float] | None]:
        """The tuning after a verdict, and the (old, new) threshold when it moved."""
        if not self.settings.adjust or knob is None or side not in knob.configured:
            return None, None
        assert side is not None
        configured = knob.configured[side]
        state = knob.tuning.get(side) or Tuning(knob.id, side, configured, configured, None)
        ceiling = state.ceiling
        if (
            verdict == "true_alarm"
            and measure is not None
            and (ceiling is None or orient(side, measure) < orient(side, ceiling))
        ):
            ceiling = measure  # the lowest true alarm: thresholds stay under it
        new = next_threshold(self.rule, side, configured=configured, current=state.threshold,
                             verdict=verdict, measure=measure, ceiling=ceiling)  # fmt: skip
        if new == state.threshold:
            return Tuning(knob.id, side, configured, state.threshold, ceiling), None
        try:
            on_sampler(self.post, _setter(knob.detector, side, new))
        except ValueError as exc:  # the detector's own params refuse it: keep the old one
            log.info("detector %s: threshold %s not taken: %s", knob.id, new, exc)
            return Tuning(knob.id, side, configured, state.threshold, ceiling), None
        return Tuning(knob.id, side, configured, new, ceiling), (state.threshold, new)

    def command(self, args: Mapping[str, Any]) -> Mapping[str, Any]:
        """``feedback``: ``{"action": "reset" | "status", "detector": id}`` (default all)."""
        action, name = parse_feedback(args, self.knobs)
        knobs = [self.knobs[name]] if name is not None else list(self.knobs.values())
        if action == "status":
            return {"adjust": self.settings.adjust, "detectors": {k.id: _status(k) for k in knobs}}
        return {"reset": [change for knob in knobs for change in self._reset(knob)]}

    def _reset(self, knob: Knob) -> list[dict[str, Any]]:
        done: list[dict[str, Any]] = []
        for side, tuning in sorted(knob.tuning.items()):
            configured = knob.configured[side]
            if tuning.threshold == configured:
                continue  # only a true alarm's ceiling to forget
            on_sampler(self.post, _setter(knob.detector, side, configured))
            change = {"detector": knob.id, "side": side, "old": tuning.threshold,
                      "new": configured}  # fmt: skip
            done.append(change)
            self.health(knob.sensor, {"state": "threshold_reset", **change})
        self.store.forget_tuning(knob.id)
        knob.tuning.clear()
        return done


def _side(text: str) -> Side:
    return "below" if text == "below" else "above"


def _setter(detector: TunableDetector, side: Side, value: float) -> Callable[[], None]:
    return lambda: detector.set_threshold(side, value)


def _status(knob: Knob) -> dict[str, Any]:
    return {
        side: {
            "configured": configured,
            "threshold": tuning.threshold if (tuning := knob.tuning.get(side)) else configured,
            "ceiling": tuning.ceiling if tuning else None,
        }
        for side, configured in knob.configured.items()
    }
