"""What ``edge simulate`` prints: readings, stored events, and what arrived upstream."""

from __future__ import annotations

import queue
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from edge.events import Event
from edge.runtime.watcher import Watcher
from sensors import Value


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


class Printer:
    """Prints lines in the order they were handed over, on its own thread
    (``edgeline-console``): a slow terminal or pipe must not slow the sampling loops. One
    printer serves every device of a run. ``print`` from any thread; ``flush`` and
    ``close`` (idempotent) from the owner's."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._lines: queue.SimpleQueue[str | threading.Event | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._print_lines, name="edgeline-console")
        self._thread.daemon = True
        self._thread.start()

    def print(self, line: str) -> None:
        self._lines.put(line)

    def flush(self) -> None:
        """Wait until every line handed over so far is printed."""
        if self._thread.is_alive():
            printed = threading.Event()
            self._lines.put(printed)
            printed.wait()

    def close(self) -> None:
        """Print what is queued, then stop."""
        if self._thread.is_alive():
            self._lines.put(None)
            self._thread.join()

    def _print_lines(self) -> None:
        while (line := self._lines.get()) is not None:
            if isinstance(line, threading.Event):
                line.set()
            else:
                print(line, file=self.out, flush=True)


class Console(Watcher):
    """Prints one line per reading, stored event and upstream arrival, from any thread,
    through a :class:`Printer` (its own, or one shared with other devices' consoles)."""

    def __init__(
        self,
        t0: float,
        *,
        quiet: bool = False,
        out: TextIO = sys.stdout,
        prefix: str = "",
        printer: Printer | None = None,
    ) -> None:
        self.t0 = t0
        self.prefix = prefix
        self.quiet = quiet
        self.events: Counter[tuple[str, str]] = Counter()
        self.readings = 0
        self._own = printer is None
        self.printer = printer if printer is not None else Printer(out)

    def _print(self, line: str) -> None:
        self.printer.print(self.prefix + line)

    def close(self) -> None:
        """Print what is queued (and stop the printer if it is this console's own)."""
        if self._own:
            self.printer.close()
        else:
            self.printer.flush()

    def reading(self, sensor: str, value: Value, unit: str, t: float) -> None:
        self.readings += 1
        if not self.quiet:
            self._print(f"{t - self.t0:8.1f}s  reading   {sensor:<14} {_value(value)} {unit}")

    def committed(self, events: Sequence[Event]) -> None:
        for event in events:
            self.events[(event.kind, event.body()["severity"])] += 1
            if self.quiet or event.kind == "telemetry":
                continue
            body = event.body()
            extra = " ".join(
                f"{k}={_value(v)}" for k, v in body.items() if k in ("state", "threshold", "error")
            )
            self._print(
                f"{'':10}stored    #{event.seq:<5} {event.kind}/{event.sensor} "
                f"{body['severity']} value={_value(body['value'])} {extra}".rstrip()
            )

    def upstream(self, topic: str, body: dict[str, Any], duplicate: bool) -> None:
        if self.quiet or body.get("kind") == "telemetry":
            return
        again = " (duplicate)" if duplicate else ""
        self._print(f"{'':10}upstream  #{body.get('seq')!s:<5} {topic}{again}")

    def live(self, text: str) -> None:
        """A periodic status line during real-time runs."""
        if not self.quiet:
            self._print(f"{'':10}live      {text}")

    def status(self, topic: str, body: dict[str, Any]) -> None:
        # A heartbeat (an online status with health figures) says nothing the live line
        # does not, and at full speed there is one every few milliseconds: births and
        # wills only.
        if not self.quiet and "health" not in body:
            self._print(f"{'':10}status    {topic} {body.get('state')}")
