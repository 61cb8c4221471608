"""Hot reload: a model file replaced on disk replaces the running model, without a restart.

A thread looks at each ``onnx`` detector's model file every ``watch`` seconds (its params).
When the file's identity (inode, size, mtime) changed and it has rested for ``SETTLE``
seconds (a copy in progress is not read half-written), the new file is read and checked
here, off the sampling thread (:meth:`OnnxDetector.prepare`), and the result is posted to
the sampling thread, which tries it on the latest window and swaps it in between two
windows, or refuses it (:meth:`OnnxDetector.adopt`). Either outcome becomes a ``health``
event (``model_reloaded`` or ``model_refused``) through the detector; a refused model leaves
the old one running. Replace a model with a rename (``mv new.onnx model.onnx``) to be safe.

A detector's ``shadow`` file is watched the same way: a candidate put (or replaced) there
starts in shadow beside the running model (``shadow_started``), and the detector's
``shadow_promote_after`` rule promotes or drops it.

A file is read once per version (inode, size, mtime): one that is refused, whatever the
reason, is not read again until it changes, and its refusal is one log line and one
``health`` event, not one per look.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from edge.runtime.scheduler import Scheduler
from models.errors import ModelError
from models.onnx_detector import OnnxDetector, Prepared
from models.shipped import model_path

log = logging.getLogger(__name__)

SETTLE = 1.0  # seconds a changed file must rest before it is read
Identity = tuple[int, int, int]  # (inode, size, mtime in ns)


@dataclass
class Watched:
    detector_id: str
    detector: OnnxDetector
    path: Path
    every: float
    seen: Identity | None
    shadow: bool = False  # a candidate: started in shadow, not swapped in
    due: float = 0.0  # monotonic time of the next look


def identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None  # gone for now (being replaced?): keep the running model
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _adopt(item: Watched, prepared: Prepared) -> None:
    """On the sampling thread: try the prepared model and swap it in (or refuse it)."""
    item.detector.adopt(prepared, shadow=item.shadow)


class ModelWatch:
    """Looks at model files on its own thread; hands new ones to the sampling thread."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.watched: list[Watched] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, detector_id: str, detector: OnnxDetector) -> None:
        every = detector.params.watch
        if every <= 0:
            return
        path = model_path(detector.params.model)
        self.watched.append(Watched(detector_id, detector, path, every, identity(path)))
        if detector.params.shadow:
            # Not seen yet: a candidate already there starts in shadow at the first look.
            shadow = model_path(detector.params.shadow)
            self.watched.append(Watched(detector_id, detector, shadow, every, None, shadow=True))

    def check(self, now: float | None = None) -> int:
        """One look at every file that is due; return how many new models were handed over."""
        now = time.monotonic() if now is None else now
        handed = 0
        for item in self.watched:
            if now < item.due:
                continue
            item.due = now + item.every
            current = identity(item.path)
            if current is None or current == item.seen:
                continue
            if time.time() - current[2] / 1e9 < SETTLE:
                item.due = now  # look again on the next pass: it may still be written
                continue
            log.info("model file %s changed: checking it for %s", item.path, item.detector_id)
            item.seen = current  # whatever comes of it, this version is not read again
            try:
                prepared = item.detector.prepare(str(item.path))
            except Exception as exc:  # not a ModelError: a gap in the checks; still a refusal
                error = ModelError(f"{item.path}: checking it failed: {type(exc).__name__}: {exc}")
                prepared = Prepared(str(item.path), None, error)
            if prepared.error is not None:
                log.warning("model refused for %s: %s", item.detector_id, prepared.error)
            self.scheduler.post(functools.partial(_adopt, item, prepared))
            handed += 1
        return handed

    def start(self) -> None:
        if not self.watched or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="edgeline-models", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        step = min(min(item.every for item in self.watched), SETTLE)
        while not self._stop.wait(step):
            try:
                self.check()
            except Exception:  # a watcher bug must not end hot reload silently
                log.exception("model watch failed; looking again in %.1f s", step)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
