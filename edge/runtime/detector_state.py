"""What detectors have learnt, kept in the state directory so a restart does not lose it.

A detector that is a :class:`~models.PersistentDetector` (``adaptive`` is) has its snapshot
in ``<state_dir>/detectors/<detector id>.json``. When the runtime builds it, the snapshot
there is restored; while it runs, a snapshot is taken every :data:`SAVE_EVERY` seconds of
clock time and once more at a clean close. A power cut keeps the last one saved.

Taking a snapshot is a copy of a few thousand numbers, done on the sampling thread between
readings (the detector is never read while it changes); writing it is another thread's
job, so sampling never waits on the disk. Each file is written whole to a new temporary
file (never through an existing file or symlink), fsynced, and renamed over the old one,
and the directory is fsynced: a crash mid-write leaves the previous snapshot. The files are
``0600`` in a ``0700`` directory (``edge.statefile``). A
snapshot that cannot be read or does not fit the detector (its type or version changed) is
logged and ignored: the detector starts afresh, and the next save replaces the file.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge.runtime.scheduler import Scheduler
from edge.statefile import private_dir, write_atomically
from models import PersistentDetector

log = logging.getLogger(__name__)

SAVE_EVERY = 600.0  # seconds of clock time between snapshots
DIRECTORY = "detectors"


class DetectorStore:
    """Snapshot files, one per detector id, in ``<state_dir>/detectors``."""

    def __init__(self, state_dir: str | Path) -> None:
        self.directory = Path(state_dir) / DIRECTORY

    def path(self, detector_id: str) -> Path:
        return self.directory / f"{detector_id}.json"

    def load(self, detector_id: str) -> dict[str, Any] | None:
        """The saved snapshot, or None when there is none or it cannot be read (logged)."""
        path = self.path(detector_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning(
                "detector %s: cannot read %s (%s); it starts afresh", detector_id, path, exc
            )
            return None
        try:
            state = json.loads(text)
        except ValueError as exc:
            log.warning(
                "detector %s: %s is not JSON (%s); it starts afresh", detector_id, path, exc
            )
            return None
        if not isinstance(state, dict):
            log.warning("detector %s: %s holds no snapshot; it starts afresh", detector_id, path)
            return None
        return state

    def save(self, detector_id: str, state: Mapping[str, Any]) -> None:
        """Replace the snapshot atomically (``edge.statefile.write_atomically``)."""
        data = json.dumps(state, separators=(",", ":"), allow_nan=False).encode("utf-8")
        private_dir(self.directory)
        write_atomically(self.path(detector_id), data)


class DetectorStates:
    """Restores persistent detectors at build, and saves them periodically and at close."""

    def __init__(self, state_dir: str | Path, *, every: float = SAVE_EVERY) -> None:
        self.store = DetectorStore(state_dir)
        self.every = every
        self.detectors: dict[str, PersistentDetector] = {}
        self._pending: dict[str, dict[str, Any]] = {}  # id -> latest snapshot not yet written
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self.saved = 0  # snapshots written (for tests and status)

    def add(self, detector_id: str, detector: object) -> None:
        """Track ``detector`` if it is persistent, restoring its saved snapshot if any."""
        if not isinstance(detector, PersistentDetector):
            return
        self.detectors[detector_id] = detector
        state = self.store.load(detector_id)
        if state is None:
            return
        try:
            detector.restore(state)
        except ValueError as exc:
            log.warning("detector %s: saved state not restored (%s); it starts afresh",
                        detector_id, exc)  # fmt: skip
        else:
            log.info("detector %s: resumed from %s", detector_id, self.store.path(detector_id))

    def start(self, scheduler: Scheduler) -> None:
        """Save every ``every`` seconds: snapshots on the sampling loop, writes elsewhere."""
        if not self.detectors or self._writer is not None:
            return
        self._writer = threading.Thread(target=self._write_loop, name="edgeline-detector-state",
                                        daemon=True)  # fmt: skip
        self._writer.start()
        scheduler.every("detector-state", self.every, self._capture, first=self.every)

    def _capture(self, due: float) -> None:  # sampling thread, between readings
        snapshots = {}
        for detector_id, detector in self.detectors.items():
            try:
                snapshots[detector_id] = detector.snapshot()
            except Exception:
                log.exception("detector %s: snapshot failed", detector_id)
        with self._lock:
            self._pending.update(snapshots)
        self._wake.set()

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for detector_id, state in pending.items():
            try:
                self.store.save(detector_id, state)
            except (OSError, ValueError, TypeError) as exc:
                log.warning("detector %s: state not saved: %s", detector_id, exc)
            else:
                self.saved += 1

    def close(self) -> None:
        """Save every detector now (call once sampling has stopped) and stop the writer."""
        self._halt()
        self._capture(0.0)
        self._flush()

    def abort(self) -> None:
        """Stop without saving, as a power cut does: the last saved snapshots stay."""
        self._halt()
        with self._lock:
            self._pending.clear()

    def _halt(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._writer is not None:
            self._writer.join(timeout=10.0)
            self._writer = None
