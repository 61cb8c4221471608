"""The local status file: ``<state_dir>/status.json``, what the device is doing right now.

The runtime rewrites it every ``storage.status_interval`` seconds on a thread of its own
(``edge.runtime.view_file``), once more when it stops, and
``edge status`` prints it. An installer, ``edge deploy`` or any monitoring can read it
without a broker: ``state`` says ``running`` or ``stopped``, ``time`` when it was written,
``interval_s`` how often it is, so that a reader can tell a stale file from a live one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.runtime.view_file import ViewFile

NAME = "status.json"
VERSION = 1


def status_file(path: Path, snapshot: Callable[[], dict[str, Any]], interval: float) -> ViewFile:
    """``snapshot()`` written to ``path`` every ``interval`` seconds (thread
    ``edgeline-status``) with ``state: running``, and a last time with ``state: stopped``
    when the runtime stops."""

    def render(final: bool) -> bytes:
        state = "stopped" if final else "running"
        body = {"v": VERSION, "state": state, "interval_s": interval, **snapshot()}
        return json.dumps(body, indent=2, default=str).encode() + b"\n"

    return ViewFile(path, render, interval, name="edgeline-status")


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
