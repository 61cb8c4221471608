"""Anomaly detection with an ONNX model: windows of readings in, an anomaly score out.

An ``onnx`` detector collects a sensor's readings in a :class:`~models.windows.Window`
(scalars, or vectors of ``width`` such as x, y, z), and every ``hop`` readings once the window
is full it feeds the model either the raw window or the window's features
(:mod:`models.features`). The model's output is the anomaly score (the largest element when
the output has several); the score is the measure of an :class:`~models.alarm.Alarm` with an
upper limit at the threshold, so the detector fires once, clears once, and honours
``hysteresis`` and ``min_duration`` exactly as the rule detectors do.

Everything that can be wrong with a model for this config (no such file, a graph the backend
cannot run, an input shape the window or features do not fill, no threshold) is refused when
the detector is built, never at the first window. The threshold comes from the model's
``metadata_props`` (key ``threshold``, written when the model was calibrated) unless the config
overrides it.

A running detector can take a new model without a restart (:meth:`OnnxDetector.reload`): the
file gets the same checks as at build, plus its weights against ``weights_sha256`` and a trial
on the latest window, and replaces the running model between two windows, or is refused and
changes nothing. A candidate can also run in *shadow* (:meth:`OnnxDetector.shadow`) on the same
windows, silently, until it is promoted or dropped, on command or by the ``shadow_*`` rule.
Each outcome comes back from ``observe`` as a ``health`` detection, so the runtime records it
like any other event.

Importing this module is cheap: numpy, the window and feature code and the model backend are
imported when a detector is built. This module has no ``from __future__ import annotations``:
the config validator reads real types from the fields of :class:`OnnxParams`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from models.alarm import Alarm, AlarmState, Limits
from models.detection import Detection, Severity
from models.errors import ModelError, ParamsError
from models.model_binding import (
    BoundModel,
    ModelMismatch,
    NoCandidate,
    ReloadResult,
    ShadowStats,
    Tally,
    TamperedModel,
    check_weights,
    choose_input,
    choose_output,
    feed_shape,
    identify,
    model_threshold,
    trial_run,
)
from models.params import check_fields

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from models.features import FeatureSpec
    from models.loader import Model

    FloatArray = npt.NDArray[np.float64]

__all__ = [
    "ModelMismatch",
    "NoCandidate",
    "OnnxDetector",
    "OnnxParams",
    "ReloadResult",
    "ShadowStats",
    "TamperedModel",
]


@dataclass(frozen=True)
class OnnxParams:
    """Parameters of an ``onnx`` detector."""

    model: str = field(
        metadata={"doc": "path to the .onnx model file, or a shipped model: vibration, environment"}
    )
    window: int = field(
        metadata={"min": 1, "max": 1_000_000, "doc": "readings in each window fed to the model"}
    )
    backend: Literal["auto", "onnxruntime", "numpy"] = field(
        default="auto",
        metadata={
            "doc": "runtime for the model; auto: numpy for a small model (no onnxruntime "
            "import), onnxruntime for a large one or an operator numpy lacks, if installed"
        },
    )
    hop: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "max": 1_000_000,
            "doc": "readings between windows (default: window, windows do not overlap)",
        },
    )
    features: str | None = field(
        default=None,
        metadata={
            "doc": "comma-separated features fed to the model, e.g. rms,crest,band:80-100 "
            "(default: the raw window)"
        },
    )
    rate: float | None = field(
        default=None,
        metadata={
            "min": 0.0,
            "doc": "sample rate in Hz for band and slope features (default: from the times)",
        },
    )
    width: int = field(
        default=1,
        metadata={"min": 1, "max": 64, "doc": "values per reading (3 for x, y, z vectors)"},
    )
    input: str | None = field(
        default=None, metadata={"doc": "model input to feed (default: its only input)"}
    )
    output: str | None = field(
        default=None,
        metadata={"doc": "model output holding the anomaly score (default: its first output)"},
    )
    threshold: float | None = field(
        default=None,
        metadata={"doc": "alarm when the score exceeds this (default: the model's metadata)"},
    )
    hysteresis: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "how far below threshold the score must come to clear"},
    )
    min_duration: float = field(
        default=0.0,
        metadata={"min": 0.0, "doc": "seconds the score must stay above threshold to fire"},
    )
    severity: Literal["warning", "critical"] = field(
        default="warning", metadata={"doc": "severity of the alarm (a clear is always info)"}
    )
    max_model_bytes: int = field(
        default=64 << 20,
        metadata={
            "min": 1024,
            "max": 1 << 31,
            "doc": "largest model (or shadow) file accepted, in bytes: a larger one is "
            "refused unread",
        },
    )
    watch: float = field(
        default=5.0,
        metadata={
            "min": 0.0,
            "max": 86_400,
            "doc": "seconds between looks at the model file: a new version is checked, then "
            "replaces the running model (0: never)",
        },
    )
    shadow: str | None = field(
        default=None,
        metadata={
            "doc": "a candidate model file run in shadow beside the running one (watched like "
            "model: put a file there to start a trial)"
        },
    )
    shadow_promote_after: int | None = field(
        default=None,
        metadata={
            "min": 1,
            "max": 100_000_000,
            "doc": "windows a shadow model runs before the rule promotes or drops it "
            "(default: only on command)",
        },
    )
    shadow_min_agreement: float = field(
        default=0.95,
        metadata={
            "min": 0.0,
            "max": 1.0,
            "doc": "fraction of windows a shadow model must agree on with the running one "
            "to be promoted by the rule",
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.model.strip():
            raise ParamsError("model must name an .onnx file, got an empty path")
        if self.hop is not None and self.hop > self.window:
            # A hop past the window would skip readings between windows.
            raise ParamsError(f"hop ({self.hop}) must not exceed window ({self.window})")
        if self.rate is not None and not self.rate > 0:
            raise ParamsError(f"rate must be positive, got {self.rate}")
        spec = self.feature_spec()
        if spec is not None and self.rate is not None:
            spec.check_rate(self.rate)

    def feature_spec(self) -> "FeatureSpec | None":
        """The parsed ``features``, ``None`` when the raw window is fed."""
        if self.features is None:
            return None
        from models.features import FeatureSpec  # numpy: only when features are configured

        return FeatureSpec.parse(self.features)


@dataclass(frozen=True)
class Prepared:
    """A model file read and checked by :meth:`OnnxDetector.prepare`, or why it was not."""

    path: str
    bound: "BoundModel | None"
    error: "ModelError | None"
    # The refused file's (sha256, name, version), read here rather than where it is adopted.
    identity: "tuple[str | None, str | None, str | None]" = (None, None, None)


class OnnxDetector:
    """Score windows of readings with an ONNX model; see the module docstring.

    ``observe`` takes one reading (a float, or a sequence of ``width`` floats) and
    ``observe_block`` a block of them (a sensor FIFO's worth); a reading with a non-finite
    value is ignored. ``kind`` is ``anomaly``; ``value`` is the score (a window has no single
    reading to report); ``fields`` carry ``score``, ``threshold``, ``model`` (the metadata
    ``name``, else the file's stem), ``model_version`` (metadata ``version``, else ``None``),
    ``state`` (``active`` or ``clear``) and ``duration``.

    The running model can be replaced (:meth:`reload`) or watched against a candidate
    (:meth:`shadow`, :meth:`promote`, :meth:`drop`); what became of each such request is
    also returned from ``observe`` as a ``health`` detection (see :meth:`_notify`).

    Raises at build: :class:`ParamsError` for bad params, the :class:`~models.errors.ModelError`
    subclasses of :func:`models.load` for a file that cannot be loaded, :class:`TamperedModel`
    for weights that do not match their ``weights_sha256``, and :class:`ModelMismatch` for a
    model that does not fit the config.
    """

    def __init__(self, params: OnnxParams) -> None:
        from collections import deque

        from models.windows import Window

        self.params = params
        self._spec = params.feature_spec()
        width = None if params.width == 1 else params.width
        self._window: Window = Window(params.window, params.hop, width=width)
        self._active: BoundModel = self._bind(params.model, None, finite=False)
        self._alarm = Alarm(
            Limits(self._active.threshold, None, params.hysteresis), params.min_duration
        )
        self._score: float | None = None
        self._candidate: BoundModel | None = None
        self._tally = Tally()
        # Health detections waiting for an observe call to return them (see _notify).
        self._notices: deque[Detection] = deque()

    @property
    def model(self) -> "Model":
        """The running model."""
        return self._active.model

    @property
    def threshold(self) -> float:
        """The running model's threshold (its metadata's, or the configured override)."""
        return self._active.threshold

    @property
    def model_name(self) -> str:
        return self._active.name

    @property
    def model_version(self) -> str | None:
        return self._active.version

    @property
    def model_sha256(self) -> str:
        """The running model file's sha256: what tells two builds of one version apart."""
        return self._active.model.sha256

    @property
    def candidate_sha256(self) -> str | None:
        """The shadow model file's sha256, ``None`` without one."""
        candidate = self._candidate
        return None if candidate is None else candidate.model.sha256

    @property
    def state(self) -> AlarmState:
        """``normal``, ``pending`` (above threshold, waiting for ``min_duration``) or ``active``."""
        return self._alarm.state

    @property
    def score(self) -> float | None:
        """The last window's score, ``None`` before the first full window."""
        return self._score

    @property
    def accepts_vectors(self) -> bool:
        """Whether readings are (x, y, z)-like vectors: the runtime passes them whole."""
        return self.params.width > 1

    def observe(self, t: float, value: float | Sequence[float]) -> Detection | None:
        reading = self._reading(value)
        if reading is not None and self._window.count and t < self._window.last_time:
            self._window.reset()  # a window is in time order: time stepped back, fill it anew
        window = None if reading is None else self._window.push(t, reading)
        found = None if window is None else self._judge(window, self._window.times)
        if found is None and self._notices:
            # An anomaly goes first; a waiting notice rides on the next quiet reading.
            return self._notices.popleft()
        return found

    def observe_block(self, times: "npt.ArrayLike", samples: "npt.ArrayLike") -> list[Detection]:
        """Take a block of readings at once; return the detections of the windows it completed.

        ``times`` has one timestamp per sample, not decreasing; ``samples`` has shape ``(n,)``
        for scalars or ``(n, width)`` for vectors. Equivalent to calling :meth:`observe` on each
        sample in turn, at the cost of a few slice copies instead of ``n`` pushes.
        """
        import numpy as np

        t = np.asarray(times, dtype=np.float64)
        x = np.asarray(samples, dtype=np.float64)
        if self.params.width == 1 and x.ndim == 2 and x.shape[1:] == (1,):
            x = x[:, 0]
        if x.ndim >= 1 and len(x) == len(t) and len(t):
            finite = np.isfinite(x) if x.ndim == 1 else np.isfinite(x).all(axis=1)
            if not finite.all():
                t, x = t[finite], x[finite]
        found: list[Detection] = list(self._notices)
        self._notices.clear()
        batch = self._window.push_block(t, x)
        for values, stamps in zip(batch.values, batch.times, strict=True):
            detection = self._judge(values, stamps)
            if detection is not None:
                found.append(detection)
            found.extend(self._notices)
            self._notices.clear()
        return found

    # -- hot reload and shadow mode ----------------------------------------------------------

    def reload(self, path: str | None = None) -> ReloadResult:
        """Replace the running model with the one at ``path`` (default: the configured file).

        The new file is checked first: its weights against the metadata's ``weights_sha256``
        (when it has one), its input against what this detector feeds, its threshold (metadata
        or the configured override), and a trial run on the most recent full window (zeros
        before the first) that must give a finite score. A refused file changes nothing.

        An accepted one replaces model and threshold between two windows. The alarm carries
        over: an active alarm stays active (no second ``active`` event), a pending one keeps
        its ``min_duration`` timer, and the next window is judged by the new model against the
        new threshold, clearing the alarm if its score is back below it. A shadow candidate
        keeps running, with its stats restarted: they compared it with the old model.
        """
        return self.adopt(self.prepare(path))

    def shadow(self, path: str) -> ReloadResult:
        """Run the model at ``path`` beside the running one, on the same windows, silently.

        The same checks as :meth:`reload`. The candidate scores every window after the active
        model and never emits a detection; :meth:`shadow_stats` compares the two. A candidate
        already in shadow is replaced, its stats discarded. With ``shadow_promote_after`` set,
        the candidate is promoted after that many windows if the models agreed on at least
        ``shadow_min_agreement`` of them, and dropped otherwise.
        """
        return self.adopt(self.prepare(path), shadow=True)

    def shadow_stats(self) -> ShadowStats | None:
        """How the candidate compares with the running model; ``None`` without a candidate."""
        candidate = self._candidate
        if candidate is None:
            return None
        tally = self._tally
        return ShadowStats(
            candidate.name,
            candidate.version,
            tally.windows,
            tally.active_alarms,
            tally.candidate_alarms,
            tally.agreements,
        )

    def promote(self, reason: str = "promoted on command") -> ShadowStats:
        """Make the candidate the running model (swapped as :meth:`reload` swaps, without
        re-checking a model that has run on every window since); return its final stats.

        Raises :class:`NoCandidate` when no model is in shadow.
        """
        stats, candidate = self._end_shadow()
        self._make_active(candidate)
        self._notify_shadow("model_promoted", stats, reason)
        return stats

    def drop(self, reason: str = "dropped on command") -> ShadowStats:
        """Discard the candidate; return its final stats. Raises :class:`NoCandidate` when no
        model is in shadow."""
        stats, _ = self._end_shadow()
        self._notify_shadow("model_dropped", stats, reason)
        return stats

    def prepare(self, path: str | None = None) -> "Prepared":
        """The slow half of :meth:`reload` and :meth:`shadow`: read the file at ``path``
        (default: the configured one) and check it, on any thread, touching nothing of the
        running detector. Hand the result to :meth:`adopt` on the thread that calls
        ``observe``: a runtime loads a new model off its sampling thread."""
        from models.shipped import model_path

        path = path or self.params.model
        try:
            return Prepared(path, self._load(path), None)
        except ModelError as exc:
            return Prepared(
                path, None, exc, identify(model_path(path), self.params.max_model_bytes)
            )

    def adopt(self, prepared: "Prepared", *, shadow: bool = False) -> ReloadResult:
        """Finish a :meth:`prepare`: try the model on the latest window, then make it the
        running model (or, with ``shadow``, the candidate), exactly as :meth:`reload` and
        :meth:`shadow` do. Call it where ``observe`` is called."""
        bound, result = self._try_bind(prepared)
        if bound is None:
            self._notify("shadow_refused" if shadow else "model_refused", "warning", result)
            return result
        if shadow:
            self._candidate, self._tally = bound, Tally()
            self._notify("shadow_started", "info", result)
            return result
        self._make_active(bound)
        if self._candidate is not None:
            self._tally = Tally()
        self._notify("model_reloaded", "info", result)
        return result

    def _try_bind(self, prepared: "Prepared") -> "tuple[BoundModel | None, ReloadResult]":
        bound, error, identity = prepared.bound, prepared.error, prepared.identity
        if bound is not None:
            try:
                self._trial(bound, self._latest_feed(), finite=True)
            except ModelError as exc:  # loaded, then failed: the file is the one loaded
                identity = (bound.model.sha256, bound.name, bound.version)
                bound, error = None, exc
        if bound is None:
            sha256, name, version = identity
            return None, ReloadResult(False, f"refused: {error}", sha256, name, version)
        reason = f"accepted {bound.model.path.name} (trial score {bound.trial_score:.6g})"
        return bound, ReloadResult(True, reason, bound.model.sha256, bound.name, bound.version)

    def _make_active(self, bound: "BoundModel") -> None:
        """Swap the running model and its threshold: two assignments that cannot fail, so an
        observe on the same thread sees either the old pair or the new one."""
        limits = Limits(bound.threshold, None, self.params.hysteresis)
        self._active = bound
        self._alarm.limits = limits

    def _end_shadow(self) -> "tuple[ShadowStats, BoundModel]":
        stats, candidate = self.shadow_stats(), self._candidate
        if stats is None or candidate is None:
            raise NoCandidate("no model is running in shadow: start one with shadow(path)")
        self._candidate, self._tally = None, Tally()
        return stats, candidate

    def _shadow_window(self, fed: "npt.NDArray[np.generic]", score: float) -> None:
        """Score the window ``fed`` with the candidate; apply the promotion rule."""
        from models.loader import ModelRunError

        candidate = self._candidate
        assert candidate is not None
        try:
            shadow_score = candidate.score(fed)
        except ModelRunError as exc:  # the candidate broke: the running model must not care
            self.drop(f"dropped: the candidate failed: {exc}")
            return
        if math.isnan(score) or math.isnan(shadow_score):
            return
        self._tally.add(score > self._active.threshold, shadow_score > candidate.threshold)
        after = self.params.shadow_promote_after
        if after is None or self._tally.windows < after:
            return
        stats = self.shadow_stats()
        assert stats is not None and stats.agreement is not None
        minimum = self.params.shadow_min_agreement
        rule = f"agreement {stats.agreement:.3f} over {stats.windows} windows"
        if stats.agreement >= minimum:
            self.promote(f"promoted by rule: {rule}, at least {minimum:g}")
        else:
            self.drop(f"dropped by rule: {rule}, below {minimum:g}")

    def _notify(self, state: str, severity: Severity, result: ReloadResult) -> None:
        """Queue a ``health`` detection about the models for the next observe to return.

        The runtime turns detections into events, so reloads and shadow outcomes reach the
        event stream with no other channel. The value is NaN (written as null): a notice
        is about the model, not about a reading.
        """
        fields: dict[str, object] = {
            "state": state,
            "reason": result.reason,
            "model": result.name,
            "model_version": result.version,
            "sha256": result.sha256,
        }
        self._notices.append(Detection("health", severity, math.nan, fields))

    def _notify_shadow(self, state: str, stats: ShadowStats, reason: str) -> None:
        fields: dict[str, object] = {
            "state": state,
            "reason": reason,
            "model": self._active.name,
            "model_version": self._active.version,
            **stats.as_fields(),
        }
        self._notices.append(Detection("health", "info", math.nan, fields))

    # -- per window --------------------------------------------------------------------------

    def _judge(self, values: "FloatArray", times: "FloatArray") -> Detection | None:
        fed = self._fed(values, times)
        active = self._active
        score = active.score(fed)
        self._score = score
        detection = None
        if not math.isnan(score):  # an Alarm is never fed NaN; the next window is judged afresh
            change = self._alarm.update(float(times[-1]), score)
            if change is not None:
                payload: dict[str, object] = {
                    "score": score,
                    "threshold": active.threshold,
                    "model": active.name,
                    "model_version": active.version,
                    "state": change.state,
                    "duration": change.duration,
                }
                severity = self.params.severity if change.state == "active" else "info"
                detection = Detection("anomaly", severity, score, payload)
        if self._candidate is not None:
            self._shadow_window(fed, score)
        return detection

    def _fed(self, values: "FloatArray", times: "FloatArray") -> "npt.NDArray[np.generic]":
        """What the models are fed for a window: the window itself (a view, no copy) or its
        features, flat."""
        if self._spec is None:
            return values.reshape(-1)
        from models.features import features

        return features(values, self._spec, self.params.rate, times=times)

    def _latest_feed(self) -> "npt.NDArray[np.generic] | None":
        """The values the most recent full window feeds, ``None`` before the first (or when
        they are not all finite: a trial must judge the model, not the window)."""
        import numpy as np

        if not self._window.full:
            return None
        fed = self._fed(self._window.values, self._window.times)
        return fed if bool(np.isfinite(fed).all()) else None

    def _reading(self, value: float | Sequence[float]) -> float | Sequence[float] | None:
        """The reading to push, ``None`` to ignore it (a non-finite value); refuses a reading
        of the wrong width (numpy would broadcast one number over every axis)."""
        width = self.params.width
        if width == 1:
            if isinstance(value, Sequence):
                raise ValueError(f"expected one number per reading (width 1), got {value!r}")
            number = float(value)
            return number if math.isfinite(number) else None
        if isinstance(value, int | float) or not hasattr(value, "__len__") or len(value) != width:
            raise ValueError(f"expected {width} numbers per reading (width {width}), got {value!r}")
        return value if all(math.isfinite(v) for v in value) else None

    # -- binding a model to this detector ----------------------------------------------------

    def _bind(
        self, path: str, trial: "npt.NDArray[np.generic] | None", *, finite: bool = True
    ) -> "BoundModel":
        """Load ``path`` and check it fits this detector; raise a ModelError if it does not.

        The model is tried on ``trial`` (a window's feed), or on zeros when ``None``; with
        ``finite`` its score must be a finite number. The build passes ``finite=False``:
        zeros are no reading the model was made for, and the first windows judge it anyway.
        """
        bound = self._load(path)
        self._trial(bound, trial, finite=finite)
        return bound

    def _load(self, path: str) -> "BoundModel":
        """Read ``path`` and check it against this detector's feed: disk work, no trial run,
        nothing of the detector's state touched (safe on any thread)."""
        from models.loader import load
        from models.shipped import model_path

        p = self.params
        file = model_path(path)
        model = load(file, p.backend, max_bytes=p.max_model_bytes)
        check_weights(file, model.sha256, p.max_model_bytes)
        spec = choose_input(model, p.input)
        count = self._values_fed()
        shape = feed_shape(spec, count, self._describe_feed(count), file.name)
        return BoundModel(
            model=model,
            input_name=spec.name,
            dtype=spec.dtype,
            shape=shape,
            output=choose_output(model, p.output),
            threshold=model_threshold(model, p.threshold),
            name=model.metadata.get("name") or file.stem,
            version=model.metadata.get("version"),
        )

    def _trial(
        self, bound: "BoundModel", trial: "npt.NDArray[np.generic] | None", *, finite: bool
    ) -> None:
        import numpy as np

        feed = np.zeros(self._values_fed()) if trial is None else trial
        bound.trial_score = trial_run(bound, feed)
        if finite and not math.isfinite(bound.trial_score):
            where = "an all-zero input" if trial is None else "the most recent window"
            raise ModelMismatch(
                f"{bound.model.path.name} scores {bound.trial_score} on {where}: a model must "
                f"give a finite score"
            )

    def _values_fed(self) -> int:
        width = self.params.width
        if self._spec is None:
            return self.params.window * width
        return len(self._spec) * width

    def _describe_feed(self, count: int) -> str:
        p = self.params
        per = f" x width {p.width}" if p.width > 1 else ""
        if self._spec is None:
            return f"the raw window: {p.window} readings{per} = {count} values"
        return f"features '{self._spec}': {len(self._spec)} features{per} = {count} values"
