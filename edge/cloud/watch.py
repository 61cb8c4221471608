"""What a running sink says about itself: events per second, devices, duplicates, open gaps,
malformed messages (``edge sink --db``'s summary line, ``--json`` and ``/metrics``).

The gap figures come from a ``StreamView``: per (device, stream), the events stored and the
highest seq, loaded once from the database when the sink starts and then kept up to date from
each committed batch, so reading them costs no query. A stream of ``count`` events up to seq
``high`` misses ``high - count`` seqs (seqs start at 1); that includes seqs its device
reported evicted, which ``edge sink gaps`` tells apart. A batch with duplicates does not say
which rows were new, so its streams are counted again in the database (one query each, on the
primary key). Sinks sharing a database (``--share``) each see the others' rows only when
the view is reloaded, every ``reload`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from edge.cloud.store import Batch, Store, Written
from edge.cloud.writer import WriterStats


@dataclass(frozen=True)
class Figures:
    """A sink's figures at one moment."""

    rate: float  # events stored per second, over the last few seconds
    stored: int  # events new to the database, since the sink started
    duplicates: int
    statuses: int
    malformed: int
    devices: int  # devices with events in the database
    open_gaps: int  # streams missing seqs below their highest
    missing: int  # seqs missing, across those streams

    def as_json(self) -> dict[str, Any]:
        figures = asdict(self)
        figures["rate"] = round(self.rate, 1)
        return figures


def summary(figures: Figures) -> str:
    """The one-line summary, e.g. ``812 events/s, 2 devices, 1 open gap (3 seqs missing)``."""

    def count(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    return (
        f"{figures.rate:,.0f} events/s, {count(figures.stored, 'event')} stored,"
        f" {count(figures.devices, 'device')}, {count(figures.duplicates, 'duplicate')},"
        f" {count(figures.open_gaps, 'open gap')} ({count(figures.missing, 'seq')} missing),"
        f" {figures.malformed} malformed"
    )


class StreamView:
    """Events stored and the highest seq per stream, with the totals the figures need.

    Threads: ``load`` and ``committed`` on the thread that owns the store (the owner's before
    the writer starts, then the writer's); ``totals`` from any thread.
    """

    def __init__(self, store: Store, *, reload: float | None = None) -> None:
        self.store = store
        self.reload = reload
        self._streams: dict[tuple[str, str], tuple[int, int]] = {}
        self._devices: dict[str, int] = {}  # device: its streams
        self._missing = 0
        self._open = 0
        self._lock = threading.Lock()
        self._loaded = 0.0

    def load(self) -> None:
        """Every stream from the database (one ``GROUP BY`` over the events)."""
        found = {(d, s): (int(n), int(high)) for d, s, n, _low, high in self.store.streams()}
        with self._lock:
            self._streams, self._devices = {}, {}
            self._missing = self._open = 0
            for key, value in found.items():
                self._set(key, value)
        self._loaded = time.monotonic()

    def committed(self, batch: Batch, written: Written) -> None:
        """Follow a committed batch."""
        if self.reload is not None and time.monotonic() - self._loaded >= self.reload:
            self.load()
            return
        if written.duplicates:
            keys = {(e.device, e.stream) for e in batch.events}
            counted = {key: self.store.stream(*key) for key in keys}
            with self._lock:
                for key, value in counted.items():
                    self._set(key, value)
            return
        with self._lock:
            for event in batch.events:
                key = (event.device, event.stream)
                count, high = self._streams.get(key, (0, 0))
                self._set(key, (count + 1, max(high, event.seq)))

    def totals(self) -> tuple[int, int, int]:
        """(devices, open gaps, seqs missing)."""
        with self._lock:
            return len(self._devices), self._open, self._missing

    def _set(self, key: tuple[str, str], value: tuple[int, int]) -> None:
        old = self._streams.get(key)
        if old is not None:
            gone = _missing(*old)
            self._missing -= gone
            self._open -= gone > 0
        else:
            self._devices[key[0]] = self._devices.get(key[0], 0) + 1
        self._streams[key] = value
        now = _missing(*value)
        self._missing += now
        self._open += now > 0


def _missing(count: int, high: int) -> int:
    return max(0, high - count)


class Watch:
    """A sink's figures: the writer's counts, the malformed count, a ``StreamView`` and the
    rate over the last ``window`` seconds (sampled by ``figures``).

    Threads: ``committed`` is the writer's ``on_commit`` (its thread); ``figures`` from any
    one thread (the owner's loop, a metrics scrape: the samples are locked).
    """

    def __init__(
        self,
        stats: WriterStats,
        malformed: Callable[[], int],
        view: StreamView,
        *,
        window: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self.malformed = malformed
        self.view = view
        self.window = window
        self.clock = clock
        self.latency: list[Callable[[float], None]] = []  # told each commit's seconds
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def committed(self, batch: Batch, written: Written, seconds: float) -> None:
        self.view.committed(batch, written)
        for observe in self.latency:
            observe(seconds)

    def figures(self) -> Figures:
        stored = self.stats.stored
        now = self.clock()
        with self._lock:
            self._samples.append((now, stored))
            while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                self._samples.popleft()
            first_at, first = self._samples[0]
        rate = (stored - first) / (now - first_at) if now > first_at else 0.0
        devices, open_gaps, missing = self.view.totals()
        return Figures(
            rate=rate,
            stored=stored,
            duplicates=self.stats.duplicates,
            statuses=self.stats.statuses,
            malformed=self.malformed(),
            devices=devices,
            open_gaps=open_gaps,
            missing=missing,
        )
