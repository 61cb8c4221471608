"""A file that shows the runtime's figures now: rewritten every ``interval`` seconds on a
thread of its own (never the sampling thread: writing may wait on the disk), and once more
when the runtime stops. ``status.json`` and the Prometheus textfile are two of them.

Atomic (a reader sees the old file or the new one) but not synced: it changes every few
seconds or minutes, and syncing it each time would wear an SD card for nothing. The
interval is real time, not the runtime's clock: the file is for people and scrapers
watching now, and a simulation at full speed would otherwise rewrite it thousands of times
a second. A failure (a full disk, say) is logged once per run of failures and never stops
the runtime: the file is a view, not a record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from edge.statefile import FILE_MODE, write_atomically

log = logging.getLogger(__name__)

Render = Callable[[bool], bytes]  # final (the runtime stopping) -> the file's bytes


class ViewFile:
    """Writes ``render(False)`` to ``path`` every ``interval`` seconds (thread ``name``),
    and ``render(True)`` on :meth:`close`. ``start``, ``close`` on the runtime's owner
    thread."""

    def __init__(
        self, path: Path, render: Render, interval: float, *, name: str, mode: int = FILE_MODE
    ) -> None:
        self.path = path
        self.render = render
        self.interval = interval
        self.name = name
        self.mode = mode
        self.writes = 0
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.write()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def close(self, *, final: bool = True) -> None:
        """Stop rewriting; with ``final``, write the last time (a power cut does not)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if final:
            self.write(final=True)

    def write(self, *, final: bool = False) -> None:
        """One rewrite."""
        try:
            write_atomically(self.path, self.render(final), durable=False, mode=self.mode)
        except Exception as exc:
            if not self._failing:
                log.warning("cannot write %s: %s", self.path, exc)
            self._failing = True
            return
        self._failing = False
        self.writes += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()
