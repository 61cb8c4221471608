"""``edge outbox``: look into a device's outbox and send a range of it again.

Library functions the CLI calls one each: ``stats`` (counters as ``edge outbox stats
--json`` prints them), ``tail`` (the newest events) and ``replay`` (publish a seq range once
more, for a consumer that lost data). They open the outbox read-only (upgrading an older
file in place first), so they are safe while the runtime runs.

Replay sends what the outbox still holds in the range: events pending delivery and
delivered events kept for replay (``[storage] keep_delivered``), with their stored
payloads, topics and (device, stream, seq), so a consumer deduplicates them as usual.
It uses a one-shot MQTT client of its own (``edge.uplink.republish``): it does not go
through the running runtime, which keeps sending as before, and it acknowledges nothing
in the outbox. Seqs in the range the outbox no longer holds (evicted, or trimmed to make
room) are listed in the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import Clock, RealClock
from .errors import OutboxError
from .events import Event
from .eviction import runs
from .limits import Limits
from .outbox import Outbox

if TYPE_CHECKING:
    from .config import UplinkConfig


def stats(state_dir: str | Path, limits: Limits | None = None) -> dict[str, Any]:
    """``edge outbox stats --json``: stream, last_seq, pending (and per priority), the age
    of the oldest pending event, delivered, kept, evicted (and per priority), bytes."""
    with Outbox.open_existing(state_dir, limits=limits) as outbox:
        return outbox.stats().as_json()


def tail(state_dir: str | Path, count: int, *, pending_only: bool = False) -> list[Event]:
    """The newest ``count`` stored events (or only pending ones), oldest first.

    Read with sqlite-utils on a read-only connection, after ``open_existing`` has checked
    the file and upgraded an older one (the runtime itself never imports sqlite-utils)."""
    import sqlite3

    from sqlite_utils import Database

    with Outbox.open_existing(state_dir) as outbox:
        path = outbox.path
    db = Database(sqlite3.connect(f"file:{path}?mode=ro", uri=True))
    try:
        source = "pending p CROSS JOIN events e ON e.seq = p.seq" if pending_only else "events e"
        rows = list(
            db.query(
                "SELECT e.seq, e.priority, e.sensor, e.kind, e.payload"
                f" FROM {source} ORDER BY e.seq DESC LIMIT :count",
                {"count": count},
            )
        )
    finally:
        db.close()
    return [
        Event(r["seq"], r["priority"], r["sensor"], r["kind"], r["payload"]) for r in reversed(rows)
    ]


@dataclass
class Replay:
    """What a replay sent."""

    device: str
    stream: str
    first: int
    last: int
    broker: str
    sent: int = 0
    acked: int = 0
    missing: list[list[int]] = field(default_factory=list)  # seq ranges not held

    def summary(self) -> str:
        text = (
            f"replayed {self.acked} of {self.sent} events of stream {self.stream}"
            f" (seq {self.first}-{self.last}) to {self.broker}"
        )
        if self.missing:
            shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in self.missing[:10])
            more = f", ... ({len(self.missing)} ranges)" if len(self.missing) > 10 else ""
            text += f"; not held (evicted or trimmed): {shown}{more}"
        return text


def replay(
    state_dir: str | Path,
    settings: UplinkConfig,
    *,
    first: int,
    last: int | None = None,
    clock: Clock | None = None,
) -> Replay:
    """Publish every stored event with ``first <= seq <= last`` (default: the newest) once
    more, in seq order, to ``settings.broker``."""
    from .uplink import republish  # paho is imported only by the commands that talk MQTT

    if first < 1:
        raise OutboxError(f"--from-seq must be at least 1, not {first}")
    with Outbox.open_existing(state_dir) as outbox:
        top = outbox.last_seq if last is None else min(last, outbox.last_seq)
        if top < first:
            raise OutboxError(
                f"nothing to replay: seq {first} is beyond the outbox's last seq {outbox.last_seq}"
            )
        result = Replay(outbox.device, outbox.stream, first, top, settings.broker)
        held: list[int] = []

        def events() -> Iterator[Event]:
            for event in outbox.stored(first, top):
                held.append(event.seq)
                result.sent += 1
                yield event

        result.acked = republish(
            settings, outbox.device, events(), clock=clock or RealClock(assume_synced=True)
        )
    present = set(held)
    result.missing = runs(s for s in range(first, top + 1) if s not in present)
    return result
