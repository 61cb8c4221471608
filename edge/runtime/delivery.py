"""The delivery loop: every event from stored to published to acknowledged to deleted.

::

    sampling ──submit──► Recorder ──commit (drafts + deletions)──► outbox (SQLite)
                            ▲    │                                   │ claim (priority, seq)
              acknowledge   │    │ stored(events, deleted)           ▼
                            │    └──────────►  Delivery  ──stored──► Uplink ──publish──► broker
                            └──────────────────  acknowledged ◄──────── PUBACK ◄───────┘

One object owns the hand-offs, so the recorder and the uplink never call each other:

- **stored**: after each commit the recorder says what was appended (the drafts, and the
  outbox's own reports: evictions, alarms) and which acknowledged events were deleted.
  The delivery loop forgets the deleted ones, wakes the uplink's sender, and tells its
  listeners (the runtime drives the ``full_output`` on an outbox alarm; watchers print).
- **published**: the uplink claims events and holds them (``Uplink.holding``) until the
  broker acknowledges them or the connection ends.
- **acknowledged**: on each PUBACK the uplink says which seq the broker has. The delivery
  loop keeps it as acknowledged-not-yet-deleted (``undeleted``: never claimed again) and
  queues its deletion for the recorder's next commit.
- **deleted**: that commit marks it delivered (kept for replay, or deleted) and says so
  in ``stored``, which closes the loop.

Eviction runs inside a commit and asks ``spared``: what the uplink holds (claimed, in
flight, or in doubt: published on a connection that died before its PUBACK) and what is
acknowledged but not yet deleted is never evicted (it is on its way, or may be upstream
already), so no eviction report names an event the broker received (a power cut aside: the
next boot cannot know what was in flight).

Threads: ``stored`` and ``spared`` run on the recorder's thread (``spared`` with the outbox
locked), ``acknowledged`` on the uplink's link thread (its lock held), ``undeleted`` on the
uplink's sender thread (its lock held). One small lock guards the acknowledged set; it is
never held while calling out, so the lock order stays outbox, then uplink, then this.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from edge.clock import Clock
from edge.config.device import UplinkConfig
from edge.events import Event
from edge.outbox.store import Outbox
from edge.runtime.recorder import MAX_QUEUED, Recorder
from edge.uplink.link import CommandSink, Uplink

# Told the events of each commit (recorder thread): must return quickly, never block.
CommitListener = Callable[[Sequence[Event]], None]


class Delivery:
    """The recorder and the uplink of one outbox, and the hand-offs between them."""

    def __init__(
        self,
        outbox: Outbox,
        clock: Clock,
        settings: UplinkConfig,
        *,
        device: str,
        window: float,
        bulk_window: float | None = None,
        birth: Mapping[str, Any] | None = None,
        commands: CommandSink | None = None,
        rng: random.Random | None = None,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.outbox = outbox
        self._lock = threading.Lock()
        self._acknowledged: set[int] = set()  # by the broker; deletion not yet committed
        self._listeners: list[CommitListener] = []
        self.recorder = Recorder(
            outbox,
            clock,
            window=window,
            bulk_window=bulk_window,
            delivery=self,
            max_queued=max_queued,
        )
        self.uplink = Uplink(
            settings,
            device=device,
            outbox=outbox,
            clock=clock,
            delivery=self,
            birth=birth,
            commands=commands,
            rng=rng,
        )

    def listen(self, listener: CommitListener) -> None:
        """Tell ``listener`` the events of every commit, on the recorder's thread."""
        self._listeners.append(listener)

    # -- lifecycle (the runtime's thread) ----------------------------------------------------

    def start(self) -> None:
        self.recorder.start()
        self.uplink.start()

    def close(self, timeout: float = 5.0) -> None:
        """Commit what is queued, publish ``offline``, commit the last deletions. Idempotent."""
        try:
            self.recorder.flush(timeout)  # every event sampled so far is on disk
            self.uplink.close(timeout)  # offline published; in-flight PUBACKs came before it
        finally:
            self.recorder.close()  # and their deletions are committed too

    def abort(self) -> None:
        """Stop at once, as a power cut does: nothing committed or said."""
        self.recorder.abort()
        self.uplink.abort()

    # -- the hand-offs ------------------------------------------------------------------------

    def stored(self, events: Sequence[Event], deleted: Collection[int]) -> None:
        """A commit appended ``events`` and deleted ``deleted`` (recorder thread)."""
        if deleted:
            with self._lock:
                self._acknowledged.difference_update(deleted)
        if events or deleted:
            self.uplink.stored(events, bool(deleted))
        if events:
            for listener in self._listeners:
                listener(events)

    def spared(self) -> set[int]:
        """What eviction must leave alone now (recorder thread, the outbox locked).

        The uplink's holdings are read first: it adds a seq to the acknowledged set before
        it stops holding it, so a seq acknowledged meanwhile is in one set or the other.
        """
        held = self.uplink.holding()
        with self._lock:
            return held | self._acknowledged

    def acknowledged(self, seqs: Collection[int]) -> None:
        """The broker has ``seqs``: keep them from being sent again, and delete them."""
        with self._lock:
            self._acknowledged.update(seqs)
        self.recorder.acknowledge(seqs)

    def undeleted(self) -> set[int]:
        """Acknowledged by the broker, deletion not yet committed (sender thread)."""
        with self._lock:
            return set(self._acknowledged)
