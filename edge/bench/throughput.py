"""Figure 1: durable throughput at QoS 1, edgeline against what a user would write.

- edgeline: the runtime's own recorder (group commits), outbox and uplink, wired as
  ``Runtime`` wires them; every draft is submitted at once, and the clock stops at the last
  PUBACK. Every event was on disk (durability ``full``) before it was sent.
- raw paho-mqtt: the same payloads published at QoS 1 (in-flight 20), no storage.
- naive loop: insert and commit one row (WAL, FULL), publish, wait for the PUBACK.

Rounds alternate between the three so that a noisy neighbour hits them alike; the figure
is the median of the rounds, and the ratios are taken from those medians.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.bench import measure, mqtt
from edge.bench.rig import DEVICE
from edge.clock import RealClock
from edge.config.device import UplinkConfig
from edge.events import Draft
from edge.outbox.store import Outbox
from edge.runtime.delivery import Delivery

PREFIX = "edgeline"


class Pipeline:
    """Recorder -> outbox -> uplink, as the runtime wires them, without the sampling loop."""

    def __init__(
        self, url: str, state_dir: str, *, durability: str = "full", window_ms: int = 100
    ) -> None:
        self.outbox = Outbox.open(state_dir, DEVICE, durability=durability)
        self.delivery = Delivery(
            self.outbox,
            RealClock(assume_synced=True),
            UplinkConfig(broker=url, backoff_min=0.1, backoff_max=1.0),
            device=DEVICE,
            window=window_ms / 1000,
        )
        self.recorder, self.uplink = self.delivery.recorder, self.delivery.uplink

    def start(self, timeout: float = 10.0) -> Pipeline:
        self.delivery.start()
        deadline = time.monotonic() + timeout
        while not self.uplink.online:
            if time.monotonic() > deadline:
                self.close()
                raise mqtt.BaselineError(f"the uplink did not connect within {timeout:g} s")
            time.sleep(0.005)
        return self

    def wait_acked(self, count: int, timeout: float, poll: float = 0.002) -> None:
        deadline = time.monotonic() + timeout
        while self.uplink.stats.acked < count:
            if time.monotonic() > deadline:
                raise mqtt.BaselineError(
                    f"{self.uplink.stats.acked} of {count} events acknowledged within {timeout:g} s"
                )
            time.sleep(poll)

    def close(self) -> None:
        self.delivery.close()
        self.outbox.close()


def edgeline_seconds(url: str, state_dir: str, drafts: Sequence[Draft]) -> float:
    """Seconds from submitting every draft to the last one's PUBACK."""
    pipeline = Pipeline(url, state_dir).start()
    try:
        started = time.perf_counter()
        for draft in drafts:
            pipeline.recorder.submit(draft)
        pipeline.wait_acked(len(drafts), timeout=120.0)
        return time.perf_counter() - started
    finally:
        pipeline.close()


def messages(drafts: Sequence[Draft]) -> list[tuple[str, str]]:
    """The (topic, payload) pairs edgeline would send for ``drafts``: the same bytes."""
    stream = "0123456789abcdef"
    return [
        (f"{PREFIX}/{DEVICE}/events/{d.kind}/{d.sensor}", d.payload(DEVICE, stream, i + 1))
        for i, d in enumerate(drafts)
    ]


def run(url: str, workdir: Path, *, events: int, naive_events: int, rounds: int) -> dict[str, Any]:
    drafts = measure.drafts(events)
    pairs = messages(drafts)
    naive_pairs = pairs[:naive_events]
    raw: list[float] = []
    durable: list[float] = []
    naive: list[float] = []
    cpu: dict[str, list[float]] = {"edgeline": [], "raw_paho": [], "naive": []}
    for _ in range(rounds):
        meter = measure.CpuMeter()
        raw.append(len(pairs) / mqtt.raw_publish(url, pairs))
        cpu["raw_paho"].append(1e6 * meter.cpu_seconds() / len(pairs))
        meter = measure.CpuMeter()
        with tempfile.TemporaryDirectory(dir=workdir) as state:
            durable.append(len(drafts) / edgeline_seconds(url, state, drafts))
        cpu["edgeline"].append(1e6 * meter.cpu_seconds() / len(drafts))
        meter = measure.CpuMeter()
        with tempfile.TemporaryDirectory(dir=workdir) as scratch:
            seconds = mqtt.naive_loop(url, Path(scratch) / "naive.sqlite3", naive_pairs)
            naive.append(len(naive_pairs) / seconds)
        cpu["naive"].append(1e6 * meter.cpu_seconds() / len(naive_pairs))
    edge, paho, loop = measure.median(durable), measure.median(raw), measure.median(naive)
    return {
        "events": events,
        "naive_events": naive_events,
        "rounds": rounds,
        "payload_bytes": round(sum(len(p) for _, p in pairs) / len(pairs)),
        "edgeline_per_s": edge,
        "raw_paho_per_s": paho,
        "naive_per_s": loop,
        "edgeline_vs_raw": edge / paho,
        "edgeline_vs_naive": edge / loop,
        # CPU of this process per event (every thread; set-up and close included)
        "cpu_us_per_event": {name: measure.median(values) for name, values in cpu.items()},
        "all_rounds": {"edgeline": durable, "raw_paho": raw, "naive": naive},
    }
