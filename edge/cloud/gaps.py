"""What a sink's database is missing: per (device, stream), the seqs that never arrived,
told apart from those the device reported evicted (``edge sink gaps``).

A device numbers every event of a stream 1, 2, 3, ...; a seq it had to drop (its outbox's
cap, a time to live, a full disk) is named in a ``health`` event from sensor ``outbox`` with
``state = "evicted"`` and its ``ranges``. So a seq below the highest one stored is either
stored, reported evicted, or missing (lost upstream, or not yet delivered). Seqs above the
highest stored cannot be seen from here, except those an eviction report names. A missing
seq that the sink asked back (``edge.cloud.refill``) and the device answered it no longer
holds is lost: recorded in the ``lost`` table, listed apart.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from edge.cloud.store import Store

Ranges = list[tuple[int, int]]  # [first, last] runs, sorted, not overlapping


@dataclass
class StreamGaps:
    device: str
    stream: str
    events: int  # distinct seqs stored
    last_seq: int  # the highest stored
    missing: Ranges = field(default_factory=list)
    evicted: Ranges = field(default_factory=list)  # reported evicted and never stored
    lost: Ranges = field(default_factory=list)  # answered "no longer held" to a replay

    def as_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "stream": self.stream,
            "events": self.events,
            "last_seq": self.last_seq,
            "missing": [list(r) for r in self.missing],
            "evicted": [list(r) for r in self.evicted],
            "lost": [list(r) for r in self.lost],
        }

    def as_text(self) -> str:
        def show(ranges: Ranges) -> str:
            return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges) or "none"

        return (
            f"{self.device} {self.stream}: {self.events} events to seq {self.last_seq};"
            f" missing {show(self.missing)}; evicted {show(self.evicted)}; lost {show(self.lost)}"
        )


def find_gaps(store: Store) -> list[StreamGaps]:
    """Every stream in ``store`` with its missing, evicted and lost seq ranges: a seq never
    stored is evicted when a report names it, else lost when the device answered a replay
    request without it, else missing."""
    reported: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for device, stream, payload in store.evictions():
        reported[device, stream].extend(_evicted_ranges(payload))
    holes: dict[tuple[str, str], Ranges] = defaultdict(list)
    for device, stream, first, last in store.holes():
        holes[device, stream].append((int(first), int(last)))
    gone: dict[tuple[str, str], Ranges] = defaultdict(list)
    for device, stream, first, last, _reason in store.lost():
        gone[device, stream].append((int(first), int(last)))
    result = []
    for device, stream, count, low, high in store.streams():
        key = (device, stream)
        unseen = ([(1, int(low) - 1)] if low > 1 else []) + holes[key]
        evicted = merge(reported.get(key, []))
        beyond = intersect(evicted, [(int(high) + 1, 2**63 - 1)])
        result.append(
            StreamGaps(
                device,
                stream,
                int(count),
                int(high),
                missing=subtract(subtract(unseen, evicted), gone[key]),
                evicted=merge(intersect(unseen, evicted) + beyond),
                lost=intersect(subtract(unseen, evicted), gone[key]),
            )
        )
    return result


def _evicted_ranges(payload: str) -> Ranges:
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        return []
    if not isinstance(body, dict) or body.get("state") != "evicted":
        return []
    ranges = body.get("ranges")
    found = []
    for item in ranges if isinstance(ranges, list) else []:
        if (
            isinstance(item, list)
            and len(item) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in item)
            and item[0] <= item[1]
        ):
            found.append((item[0], item[1]))
    return found


def merge(ranges: Ranges) -> Ranges:
    """Sorted, with overlapping and adjacent runs joined."""
    result: Ranges = []
    for first, last in sorted(ranges):
        if result and first <= result[-1][1] + 1:
            result[-1] = (result[-1][0], max(result[-1][1], last))
        else:
            result.append((first, last))
    return result


def intersect(a: Ranges, b: Ranges) -> Ranges:
    a, b = merge(a), merge(b)
    result, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        first, last = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if first <= last:
            result.append((first, last))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def subtract(a: Ranges, b: Ranges) -> Ranges:
    """The seqs of ``a`` not in ``b``."""
    result: Ranges = []
    b = merge(b)
    for first, last in merge(a):
        start = first
        for cut_first, cut_last in b:
            if cut_last < start or cut_first > last:
                continue
            if cut_first > start:
                result.append((start, cut_first - 1))
            start = cut_last + 1
            if start > last:
                break
        if start <= last:
            result.append((start, last))
    return result
