"""The local status file: ``<state_dir>/status.json``, what the device is doing right now.

The runtime rewrites it every ``storage.status_interval`` seconds on a thread of its own
(never the sampling thread: writing may wait on the disk), once more when it stops, and
``edge status`` prints it. An installer, ``edge deploy`` or any monitoring can read it
without a broker: ``state`` says ``running`` or ``stopped``, ``time`` when it was written,
``interval_s`` how often it is, so that a reader can tell a stale file from a live one.

It is written atomically (a reader sees the old file or the new one) but not synced: it
changes every few seconds, and syncing it each time would wear an SD card for nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.statefile import write_atomically

log = logging.getLogger(__name__)

NAME = "status.json"
VERSION = 1


class StatusFile:
    """Writes ``snapshot()`` to ``path`` every ``interval`` seconds (thread
    ``edgeline-status``), and a last time with ``state: stopped`` on :meth:`close`.

    The interval is real time, not the runtime's clock: the file is for people and monitors
    watching now, and a simulation at full speed would otherwise rewrite it thousands of
    times a second."""

    def __init__(self, path: Path, snapshot: Callable[[], dict[str, Any]], interval: float) -> None:
        self.path = path
        self.snapshot = snapshot
        self.interval = interval
        self.writes = 0
        self._failing = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.write("running")
        self._thread = threading.Thread(target=self._run, name="edgeline-status", daemon=True)
        self._thread.start()

    def close(self, *, final: bool = True) -> None:
        """Stop rewriting; with ``final``, say ``stopped`` (a power cut says nothing)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if final:
            self.write("stopped")

    def write(self, state: str) -> None:
        """One rewrite. A failure (a full disk, say) is logged once per run of failures and
        never stops the runtime: the status file is a view, not a record."""
        try:
            body = {"v": VERSION, "state": state, "interval_s": self.interval, **self.snapshot()}
            data = json.dumps(body, indent=2, default=str).encode() + b"\n"
            write_atomically(self.path, data, durable=False)
        except Exception as exc:
            if not self._failing:
                log.warning("cannot write %s: %s", self.path, exc)
            self._failing = True
            return
        self._failing = False
        self.writes += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write("running")


class StatusMissing(OSError):
    """No readable status file: the runtime never ran with this state directory."""


def read_status(state_dir: str | Path, *, now: float | None = None) -> dict[str, Any]:
    """The status file of ``state_dir``, with ``age_s`` (seconds since it was written, by
    the file's mtime) and ``fresh`` (running, and rewritten within three intervals)."""
    import time

    path = Path(state_dir) / NAME
    try:
        text = path.read_text(encoding="utf-8")
        written = path.stat().st_mtime
        body = json.loads(text)
    except FileNotFoundError:
        raise StatusMissing(f"{path}: no status file (has the runtime run here?)") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StatusMissing(f"{path}: cannot read the status file: {exc}") from None
    if not isinstance(body, dict):
        raise StatusMissing(f"{path}: not a status file")
    age = max(0.0, (time.time() if now is None else now) - written)
    interval = body.get("interval_s")
    limit = 3 * interval if isinstance(interval, int | float) and interval > 0 else None
    fresh = body.get("state") == "running" and limit is not None and age <= limit
    return {**body, "age_s": round(age, 1), "fresh": fresh}


def status_text(status: dict[str, Any]) -> str:
    """Aligned ``key: value`` lines; nested objects as dotted keys."""
    rows: list[tuple[str, str]] = []

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            rows.append((prefix, "-" if value is None or value == {} else str(value)))

    add("", status)
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
