"""Moves drafts from the sampling loop into the outbox in group commits, on its own thread.

``submit`` never blocks: the sampling loop hands over a draft and goes on. The recorder
gathers drafts and acknowledgements (deletions) into one transaction, which keeps SD-card
writes low: bytes written follow commits, not events. How long it gathers depends on what
waits: a critical draft is committed at once; a warning within the commit window; telemetry,
info and deletions within the longer bulk window, unless a warning cuts it to the commit
window or a full batch (of drafts, or of deletions in a drain) ends it; whatever waits then
goes along.
After each commit it tells the delivery loop what was stored and deleted (the outbox's own
reports included: evictions, alarms), which tells the uplink. A full disk does not stop
it: the commit is retried once the outbox has made room, and drafts wait in memory
meanwhile (bounded; overflow is counted and reported). With a time-to-live configured it
also ticks when idle, so stale events expire even when nothing new arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Protocol

from edge.clock import Clock
from edge.events import Draft, Event
from edge.outbox.store import Outbox, OutboxFull

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # drafts per transaction: bounds the time the outbox lock is held
RETRY_DELAY = 0.5  # seconds before retrying a failed commit (full disk, I/O error)
# Drafts held in memory while the disk fails: ~50 MB at worst, what a Pi Zero can spare.
MAX_QUEUED = 100_000
DISCARD_AFTER = 3  # failed commits in a row before waiting drafts are reported lost
# Acknowledgements waiting that end the wait at once: a drain's PUBACKs (15,000/s and
# more) are deleted in batches of this many, so the uplink's set of acknowledged but
# undeleted seqs, which each claim skips, stays small.
ACK_BATCH = MAX_BATCH
RUNTIME_SENSOR = "runtime"  # the sensor id of the runtime's own health events


class Committed(Protocol):
    """Who hears of each commit: the delivery loop (:class:`edge.runtime.delivery.Delivery`)."""

    def stored(self, events: Sequence[Event], deleted: Collection[int]) -> None:
        """``events`` were appended and ``deleted`` marked delivered (recorder thread)."""

    def spared(self) -> Collection[int]:
        """Seqs eviction must leave alone now (recorder thread, the outbox locked)."""


class Recorder:
    """Commits drafts and deletions to the outbox in groups, on the ``edgeline-recorder``
    thread.

    ``submit`` (the sampling thread, or any) and ``acknowledge`` (the uplink's link thread,
    through the delivery loop) only queue; ``flush`` waits, from any thread, for what was
    queued before it; everything that touches the outbox runs on the recorder's thread.

    ``window`` (seconds) is how long a warning draft may wait to be committed;
    ``bulk_window`` (at least ``window``; None: the same) how long telemetry, info and
    deletions may. Both are real time: they are about disk writes, whatever the clock.
    """

    def __init__(
        self,
        outbox: Outbox,
        clock: Clock,
        *,
        window: float,
        bulk_window: float | None = None,
        delivery: Committed | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        if bulk_window is not None and bulk_window < window:
            raise ValueError(f"bulk_window ({bulk_window} s) is shorter than window ({window} s)")
        self.outbox = outbox
        self.clock = clock
        self.window = window
        self.bulk_window = window if bulk_window is None else bulk_window
        self.delivery = delivery
        self.max_queued = max_queued
        self._drafts: deque[Draft] = deque()
        self._acks: deque[int] = deque()
        # How many of the queued drafts and acks the commit running now has taken (they
        # leave the queues once it succeeded): a full batch counts only what waits.
        self._drafts_taken = 0
        self._acks_taken = 0
        self._urgent = threading.Event()  # commit now: critical, a full batch, flush, stop
        self._hurry = threading.Event()  # commit within the window: a warning
        self._wake = threading.Event()  # either of those was set
        self._work = threading.Event()  # anything queued
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._flushes = 0  # flush() calls so far (under _idle)
        self._flushed = 0  # how many of them a full pass of the thread has served
        self._running = False
        self._thread: threading.Thread | None = None
        self._was_synced = False
        self.dropped = 0
        self._reported_dropped = 0
        self._aborted = False
        self._failing = 0  # consecutive failed commits
        self._full = False  # the last one failed on a full disk
        self.commits = 0
        self.failures = 0

    def start(self) -> None:
        self._was_synced = self.clock.synced()
        if self._was_synced:
            self._correct_timestamps()  # events left unsynced by an earlier run this boot
        self._running = True
        self._thread = threading.Thread(target=self._run, name="edgeline-recorder", daemon=True)
        self._thread.start()

    def submit(self, draft: Draft) -> None:
        """Queue a draft for the next group commit. Safe from any thread; never blocks."""
        if len(self._drafts) >= self.max_queued:
            # Memory is the last line: count it so it is reported, never silent.
            self.dropped += 1
            return
        self._drafts.append(draft)
        self._work.set()
        # A full batch gains nothing from waiting: its rows already share their pages.
        if draft.severity == "critical" or len(self._drafts) - self._drafts_taken >= MAX_BATCH:
            self._commit_now()
        elif draft.severity == "warning":
            self._commit_soon()

    def acknowledge(self, seqs: Collection[int]) -> None:
        """Queue delivered events for deletion. Safe from any thread."""
        self._acks.extend(seqs)
        self._work.set()
        if len(self._acks) - self._acks_taken >= ACK_BATCH and not self._urgent.is_set():
            self._commit_now()

    def _commit_now(self) -> None:
        self._urgent.set()
        self._wake.set()

    def _commit_soon(self) -> None:
        self._hurry.set()
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._drafts)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait (real time) until everything submitted so far is committed, handed to
        told to the delivery loop and, if the clock has synced, its timestamps corrected."""
        with self._idle:
            self._flushes += 1
            ticket = self._flushes
        self._commit_now()
        self._work.set()
        with self._idle:
            # A pass that began after the ticket was taken serves it; with no thread running,
            # nothing will change, so answer at once.
            self._idle.wait_for(lambda: self._flushed >= ticket or not self._running, timeout)
            if self._flushed >= ticket:
                return True
            return not self._running and not self._drafts and not self._acks

    def close(self) -> None:
        """Commit everything queued, then stop. Idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._commit_now()
        self._work.set()
        self._thread.join()
        self._thread = None

    def abort(self, timeout: float = 5.0) -> None:
        """Stop without committing what is queued (a power cut). Idempotent."""
        if self._thread is None:
            return
        self._aborted = True  # the thread drops the queues itself: no race on them
        self._stop.set()
        self._commit_now()
        self._work.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("the recorder did not stop within %.1f s (a commit stuck on disk?)", timeout)
        self._thread = None

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            with self._idle:
                self._running = False
                self._idle.notify_all()

    def _loop(self) -> None:
        tick = self.outbox.limits.expiry_interval if self.outbox.limits.ttl else None
        while True:
            if not self._work.wait(tick):
                if self.outbox.expiry_due():
                    self._commit_batch()  # nothing queued: expire what is stale
                continue
            self._gather()
            self._work.clear()
            self._urgent.clear()
            self._hurry.clear()
            if self._aborted:
                self._drafts.clear()
                self._acks.clear()
                return
            with self._idle:
                serving = self._flushes  # flushes asked before this pass began
            # Commit what was queued when the pass began. What arrives meanwhile waits for
            # the next window (unless urgent): committing it at once would chain commits
            # back to back, each new commit catching the PUBACKs of the one before.
            drafts, acks = len(self._drafts), len(self._acks)
            while drafts > 0 or acks > 0:
                taken = self._commit_batch()
                if taken is None:
                    self._stop.wait(RETRY_DELAY)
                    stopping = self._stop.is_set()
                    # A full disk: number and report what waits. Another failure (a lock,
                    # an I/O error) may pass: the drafts wait in memory, until shutdown.
                    if self._failing >= DISCARD_AFTER and (self._full or stopping):
                        drafts -= self._discard(critical_too=stopping)
                        if stopping:
                            return
                    continue
                drafts -= taken[0]
                acks -= taken[1]
            self._check_clock_sync()
            self._report_drops()
            with self._idle:
                self._flushed = serving
                self._idle.notify_all()
            # Checked after the commits: whatever was submitted before close() is stored.
            if self._stop.is_set() and not self._drafts and not self._acks:
                return

    def _gather(self) -> None:
        """Group commit: wait for more to join what is queued. The bulk window from the
        first arrival; cut to the commit window from the moment a warning arrives; over at
        once when something is urgent (a critical draft, a full batch, flush, close). Real
        time: it is about disk writes, whatever the scheduler's clock."""
        if self.bulk_window <= 0:
            return
        deadline = time.monotonic() + self.bulk_window
        hurried = False
        while True:
            self._wake.clear()  # before the checks: a later set() ends the wait below
            if self._urgent.is_set() or self._stop.is_set():
                return
            if not hurried and self._hurry.is_set():
                hurried = True
                deadline = min(deadline, time.monotonic() + self.window)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.wait(left)

    def _commit_batch(self) -> tuple[int, int] | None:
        """Commit the oldest queued drafts and acks; (drafts, acks) committed, or None."""
        batch = min(MAX_BATCH, self.outbox.max_batch)
        drafts = [self._drafts[i] for i in range(min(batch, len(self._drafts)))]
        acks = [self._acks[i] for i in range(min(MAX_BATCH * 10, len(self._acks)))]
        self._drafts_taken, self._acks_taken = len(drafts), len(acks)
        try:
            spare = self.delivery.spared if self.delivery is not None else None
            events = self.outbox.commit(drafts, acks, spare=spare)
        except OutboxFull as exc:  # expected on a full disk: the next commit makes room
            self._drafts_taken = self._acks_taken = 0
            self.failures += 1
            self._failing += 1
            self._full = True
            log.error("%s; %d events stay queued", exc, len(self._drafts))
            return None
        except Exception:
            self._drafts_taken = self._acks_taken = 0
            self.failures += 1
            self._failing += 1
            self._full = False
            log.exception("outbox commit failed; %d events stay queued", len(self._drafts))
            return None
        for _ in drafts:
            self._drafts.popleft()
        for _ in acks:
            self._acks.popleft()
        self._drafts_taken = self._acks_taken = 0
        self.commits += 1
        self._failing = 0
        if self.delivery is not None:
            try:
                self.delivery.stored(events, acks)
            except Exception:  # a listener's bug must not stop the recorder
                log.exception("the delivery loop failed on a commit")
        return len(drafts), len(acks)

    def _discard(self, *, critical_too: bool) -> int:
        """The disk stays full: number the waiting drafts and report them lost, so that
        each still gets its seq and the loss is named upstream. Critical drafts stay
        queued (the disk may come back) unless ``critical_too`` (shutdown). Returns how
        many drafts left the queue."""
        waiting = [self._drafts.popleft() for _ in range(len(self._drafts))]
        lost = [d for d in waiting if critical_too or d.severity != "critical"]
        kept = [d for d in waiting if not critical_too and d.severity == "critical"]
        self._drafts.extendleft(reversed(kept))  # ahead of what was submitted meanwhile
        if not lost:
            return 0
        try:
            reports = self.outbox.discard(lost)
        except Exception as exc:
            log.error("the disk is full: %d events are lost without a seq (%s)", len(lost), exc)
            self.dropped += len(lost)
            return len(lost)
        last = self.outbox.last_seq - len(reports)
        log.error("the disk is full: %d events were numbered and reported lost (seq %d to %d)",
                  len(lost), last - len(lost) + 1, last)  # fmt: skip
        if self.delivery is not None:
            try:
                self.delivery.stored(reports, ())
            except Exception:  # a listener's bug must not stop the recorder
                log.exception("the delivery loop failed on a commit")
        return len(lost)

    def _report_drops(self) -> None:
        """Once the queue has room again, say upstream how many drafts were dropped."""
        dropped = self.dropped - self._reported_dropped
        if not dropped or len(self._drafts) >= self.max_queued:
            return
        self._reported_dropped += dropped
        log.error("%d events were dropped: the outbox could not keep up", dropped)
        mono, wall, synced = self.clock.monotonic(), self.clock.wall(), self.clock.synced()
        fields = {"state": "dropped", "dropped": dropped, "total_dropped": self.dropped}
        draft = Draft(RUNTIME_SENSOR, "health", "critical", dropped, mono, wall, synced, fields)
        self._drafts.append(draft)
        self._work.set()
        self._commit_now()

    def _check_clock_sync(self) -> None:
        if not self._was_synced and self.clock.synced():
            self._was_synced = True
            self._correct_timestamps()

    def _correct_timestamps(self) -> None:
        try:
            count = self.outbox.correct_timestamps(self.clock.monotonic(), self.clock.wall())
        except Exception:
            log.exception("could not correct timestamps after the clock synced")
            return
        if count:
            log.info("clock synchronised: corrected the timestamps of %d stored events", count)
