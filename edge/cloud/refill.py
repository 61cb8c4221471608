"""Asking devices back what a sink's database is missing (``edge sink --fill-gaps``).

Every ``every`` seconds a ``GapFiller`` reads the missing seq ranges of each (device, stream)
(``edge.cloud.gaps``: not stored, not reported evicted, not recorded lost). A range it has
seen missing for ``grace`` seconds is asked back with the signed ``replay`` downlink command
(``{"from_seq", "to_seq", "stream"}``), signed with the device's command key from
``keys/<device>.key`` (the layout ``edge flash --fleet`` writes); a device without a key file
is skipped and counted. Holes close together go in one request (``coalesce``). The device
publishes the range once more and the sink's own ingest
stores it, exactly once as always. What the device answers as ``missing`` (its outbox no
longer holds it) goes into the ``lost`` table. A range is asked at most ``max_asks`` times,
``grace * 2**n`` seconds (at most ``MAX_BACKOFF``) after its n-th ask.

Threads: ``start`` and ``close`` belong to the owner's thread; the asking runs on the
filler's own thread, with its own store connection and, per request, its own MQTT client
(``edge.uplink.operator.send_command``), so it never holds up ingest.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.cloud.gaps import Ranges, find_gaps, intersect, merge, subtract
from edge.cloud.store import Store, open_store
from edge.config.command_key import CommandKeyError, read_key_file
from edge.config.device import UplinkConfig
from edge.errors import UplinkError
from edge.events import format_ts

log = logging.getLogger(__name__)

MAX_RANGE = 100_000  # seqs one request asks for: the device's own limit (MAX_REPLAY)
MAX_BACKOFF = 3600.0  # seconds between two asks of a range, at most
# Holes this close together go in one request: after a shared sink's outage or a broker
# restart a stream has many one-seq holes, and one request per hole would be a flood. The
# device publishes the events between them again too; the sink stores those once, as ever.
BRIDGE = 1000
LOST_REASON = "not held"  # what the device's replay answer said of a range


@dataclass
class Ask:
    """One missing range and how often it was asked: first noticed at ``noticed``, asked
    ``attempts`` times, next due at ``due`` (the filler's clock)."""

    first: int
    last: int
    noticed: float
    due: float
    attempts: int = 0


def backoff(attempts: int, grace: float) -> float:
    """Seconds from a range's ``attempts``-th ask to its next one."""
    return min(grace * 2.0 ** min(attempts, 64), MAX_BACKOFF)


def track(asks: list[Ask], missing: Ranges, now: float, grace: float) -> list[Ask]:
    """The asks for ``missing`` at ``now``: what is left of each old ask keeps its state (a
    range partly filled splits), a seq newly missing starts a new ask, due ``grace`` seconds
    on; each new ask covers at most ``MAX_RANGE`` seqs. Sorted by ``first``."""
    missing = merge(missing)
    kept = [
        dataclasses.replace(ask, first=first, last=last)
        for ask in asks
        for first, last in intersect([(ask.first, ask.last)], missing)
    ]
    new = [
        Ask(start, min(start + MAX_RANGE - 1, last), noticed=now, due=now + grace)
        for first, last in subtract(missing, [(a.first, a.last) for a in asks])
        for start in range(first, last + 1, MAX_RANGE)
    ]
    return sorted(kept + new, key=lambda ask: ask.first)


def coalesce(asks: list[Ask], bridge: int = BRIDGE, span: int = MAX_RANGE) -> list[list[Ask]]:
    """Sorted ``asks`` in groups of one request each: the next ask joins a group while at
    most ``bridge`` seqs lie between it and the group, and the group spans at most
    ``span`` seqs."""
    groups: list[list[Ask]] = []
    for ask in asks:
        group = groups[-1] if groups else None
        if (
            group is not None
            and ask.first - group[-1].last - 1 <= bridge
            and ask.last - group[0].first + 1 <= span
        ):
            group.append(ask)
        else:
            groups.append([ask])
    return groups


@dataclass
class FillStats:
    """What a filler did; ``no_key``: the devices skipped for want of a key file."""

    asked: int = 0  # replay requests sent
    answered: int = 0  # replies with ok
    refused: int = 0  # replies without (the error logged)
    unanswered: int = 0  # no reply in time, or the broker not reachable
    lost: int = 0  # seqs recorded lost
    no_key: set[str] = field(default_factory=set)


Send = Callable[..., dict[str, Any]]  # send_command's signature


class GapFiller:
    """Asks devices back the ranges missing from the database at ``db`` (see the module)."""

    def __init__(
        self,
        db: str,
        broker: str,
        keys: Path,
        *,
        prefix: str = "edgeline",
        grace: float = 30.0,
        max_asks: int = 5,
        timeout: float = 10.0,
        every: float | None = None,
        login: UplinkConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.db, self.broker, self.keys, self.prefix = db, broker, keys, prefix
        self.grace, self.max_asks, self.timeout = grace, max_asks, timeout
        self.every = every if every is not None else max(0.05, min(grace / 4, 5.0))
        self.login = login
        self.clock, self.wall = clock, wall
        self.stats = FillStats()
        self.asks: dict[tuple[str, str], list[Ask]] = {}
        self._store: Store | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GapFiller:
        self._store = open_store(self.db)
        self._thread = threading.Thread(target=self._run, name="edge-gap-filler", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop asking (waits for a request under way, up to its timeout); idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> GapFiller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check()
            except Exception:  # a database hiccup: the next pass tries again
                log.exception("edge sink: asking gaps back failed")

    def check(self) -> None:
        """One pass: track every stream's missing ranges and ask the due ones back."""
        assert self._store is not None, "start() first"
        now = self.clock()
        seen = set()
        for gaps in find_gaps(self._store):
            key = (gaps.device, gaps.stream)
            seen.add(key)
            asks = self.asks[key] = track(self.asks.get(key, []), gaps.missing, now, self.grace)
            due = [a for a in asks if a.due <= now and a.attempts < self.max_asks]
            if not due or self._stop.is_set():
                continue
            command_key = self._key(gaps.device)
            for group in coalesce(due) if command_key is not None else []:
                if self._stop.is_set():
                    return
                self._ask(gaps.device, gaps.stream, group, command_key, now)  # type: ignore[arg-type]
        for key in set(self.asks) - seen:
            del self.asks[key]

    def _key(self, device: str) -> bytes | None:
        path = self.keys / f"{device}.key"
        if not path.exists():
            self.stats.no_key.add(device)
            return None
        try:
            return read_key_file(path)
        except CommandKeyError as exc:
            self.stats.no_key.add(device)
            log.warning("edge sink: cannot ask %s for its gaps: %s", device, exc)
            return None

    def _ask(self, device: str, stream: str, group: list[Ask], key: bytes, now: float) -> None:
        """One replay request for a group of asks (see ``coalesce``)."""
        from edge.uplink.client import read_password
        from edge.uplink.operator import send_command

        for ask in group:
            ask.attempts += 1
            ask.due = now + backoff(ask.attempts, self.grace)
        self.stats.asked += 1
        login = self.login or UplinkConfig(broker=self.broker)
        first, last = group[0].first, group[-1].last
        args = {"from_seq": first, "to_seq": last, "stream": stream}
        try:
            reply = send_command(
                self.broker, device, key, "replay", args, prefix=self.prefix,
                timeout=self.timeout, username=login.username, password=read_password(login),
                ca_file=login.ca_file, cert_file=login.cert_file, key_file=login.key_file,
                wall=self.wall,
            )  # fmt: skip
        except UplinkError as exc:
            self.stats.unanswered += 1
            log.warning("edge sink: asking %s for %s-%s: %s", device, first, last, exc)
            return
        result = reply.get("result")
        if not reply.get("ok") or not isinstance(result, dict):
            self.stats.refused += 1
            log.warning("edge sink: %s refused replay %s-%s: %s", device, first, last,
                        reply.get("error"))  # fmt: skip
            return
        self.stats.answered += 1
        # Lost: what the device no longer holds of the holes (not of the stored seqs between)
        gone = intersect(_ranges(result.get("missing")), [(a.first, a.last) for a in group])
        if gone:
            assert self._store is not None
            self._store.record_lost(device, stream, gone, LOST_REASON, format_ts(self.wall()))
            self.stats.lost += sum(last - first + 1 for first, last in gone)


def _ranges(value: Any) -> Ranges:
    """The ``[[first, last], ...]`` of a reply, what is well formed of it."""
    found = []
    for item in value if isinstance(value, list) else []:
        if (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in item)
            and 1 <= item[0] <= item[1]
        ):
            found.append((item[0], item[1]))
    return merge(found)
