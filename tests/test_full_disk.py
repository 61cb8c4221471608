"""A disk that really fills: a tmpfs mounted in the test, filled by the outbox itself or
by another file, with the broker down. Every event still gets a seq, lower priorities are
evicted and reported with reason ``disk``, critical events are kept, and once space and
the broker are back every kept event is delivered.

SQLite's ``max_page_count`` (tests/test_eviction.py) limits only the database file; a real
full disk also stops the WAL from growing, which is what wedged the outbox: the commit
that would evict could not be written either.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.clock import VirtualClock
from edge.events import Draft, Event
from edge.outbox.store import Outbox, OutboxLimits
from edge.runtime.recorder import Recorder
from tests.test_eviction_e2e import CappedRig

WAIT = 60.0


@contextlib.contextmanager
def small_disk(path: Path, size: str, kind: str = "tmpfs") -> Iterator[Path]:
    """A filesystem of ``size`` mounted at ``path``, unmounted afterwards: a tmpfs, or an
    ext4 image on a loop device (no blocks reserved for root: the runtime is no root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir(parents=True, exist_ok=True)
    if kind == "tmpfs":
        command = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)]
    else:
        image = path.with_name(f"{path.name}.img")
        subprocess.run(["truncate", "-s", size, str(image)], check=True)
        made = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if made.returncode != 0:
            pytest.skip(f"cannot make an ext4 image here: {made.stderr.strip()}")
        command = ["mount", "-o", "loop", str(image), str(path)]
    mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a {kind} here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=False)


def free_bytes(directory: Path) -> int:
    found = os.statvfs(directory)
    return found.f_bavail * found.f_frsize


def fill_up(directory: Path) -> Path:
    """Another program fills the disk to the last block."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    block = b"f" * 65536
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, block)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, block[:512])
    finally:
        os.close(fd)
    assert free_bytes(directory) == 0
    return filler


class Commits:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def stored(self, events: list[Event], deleted: Any) -> None:
        self.events.extend(events)

    def spared(self) -> list[int]:
        return []


def named(bodies: list[dict[str, Any]]) -> set[int]:
    seqs: set[int] = set()
    for body in bodies:
        if body.get("state") == "evicted":
            for first, last in body["ranges"]:
                seqs.update(range(first, last + 1))
    return seqs


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_a_disk_filled_by_another_file_does_not_wedge_the_outbox(tmp_path: Path, kind: str) -> None:
    clock = VirtualClock()
    commits = Commits()

    def draft(n: int) -> Draft:
        severity = "critical" if n % 100 == 0 else "info"
        return Draft("s", "telemetry", severity, n, clock.monotonic(), clock.wall(), True,
                     {"pad": "x" * 150})  # fmt: skip

    with (
        small_disk(tmp_path / "disk", "4m", kind) as disk,
        Outbox.open(disk, "pi", clock=clock) as box,
    ):
        recorder = Recorder(box, clock, window=0.01, delivery=commits)
        recorder.start()
        try:
            for n in range(5000):
                recorder.submit(draft(n))
            assert recorder.flush(timeout=WAIT)
            fill_up(disk)
            for n in range(5000, 20000):
                recorder.submit(draft(n))
                clock.advance(0.01)
            assert recorder.flush(timeout=WAIT)
            assert recorder.queued == 0 and recorder.dropped == 0
        finally:
            recorder.close()
        reports = [e.body() for e in commits.events if e.sensor == "outbox"]
        assert box.last_seq == 20000 + len(reports)  # every draft got its seq
        assert {r["reason"] for r in reports if r["state"] == "evicted"} == {"disk"}
        assert "disk_full" in [r["state"] for r in reports]
        stored = {e.seq: e for e in box}
        assert set(stored) | named(reports) == set(range(1, box.last_seq + 1))
        assert not set(stored) & named(reports)
        critical = [e for e in commits.events if e.sensor == "s" and e.priority == 0]
        assert len(critical) == 200 and all(e.seq in stored for e in critical)


def test_a_small_disk_is_the_cap_and_is_used_to_most_of_its_size(tmp_path: Path) -> None:
    size = 2 * 1024 * 1024
    limits = OutboxLimits(max_bytes=64 * 1024 * 1024)  # the default: far more than the disk
    with (
        small_disk(tmp_path / "disk", f"{size}") as disk,
        Outbox.open(disk, "pi", limits=limits) as box,
    ):
        stored = 0
        while True:
            pad = {"pad": "x" * 200}
            drafts = [Draft("s", "telemetry", "info", 1.0, 0.0, 0.0, True, pad)] * 50
            events = box.commit(drafts)
            reports = [e.body() for e in events if e.sensor == "outbox"]
            if reports:
                break
            stored += sum(len(e.payload) for e in events)
        assert [r["reason"] for r in reports] == ["disk"]
        # payloads of 0.92 MB on a 2 MiB disk before the first eviction (rows count their
        # texts and 48 bytes more, critical events keep a tenth, the reserve 290 KiB)
        assert stored > size * 0.4
        files = sum(p.stat().st_size for p in disk.iterdir())
        assert files <= size - free_bytes(disk)


SCENARIO = """
[device]
id = "disk-01"

[storage]
state_dir = "{state_dir}"
commit_window_ms = 20

[uplink]
broker = "{broker}"
backoff_min = 0.2
backoff_max = 1.0

[[sensors]]
id = "temp"
type = "i2c.tmp102"
interval = 0.01
telemetry = true

[[detectors]]
sensor = "temp"
type = "threshold"
above = 30.0
hysteresis = 0.5
severity = "critical"

[simulation]
duration = 600.0

[simulation.signals.temp]
points = [[0, 25.0], [10, 35.0], [15, 25.0], [20, 35.0], [25, 25.0], [30, 35.0], [35, 25.0],
          [40, 35.0], [45, 25.0], [50, 35.0], [55, 25.0]]
"""


def outage(state_dir: Path, broker: str, *, fill_at: float | None = None) -> CappedRig:
    """60 s at 100 readings/s with the broker down; the disk filled at ``fill_at``."""
    rig = CappedRig(state_dir, broker, SCENARIO)
    if fill_at is not None:
        rig.run_until(fill_at)
        assert rig.runtime.recorder.flush(timeout=WAIT)
        fill_up(state_dir)
    rig.run_until(60.0)
    assert rig.runtime.recorder.flush(timeout=WAIT)
    return rig


def critical_alarm(event: Event) -> bool:
    return event.sensor != "outbox" and event.body()["severity"] == "critical"


def drafts_numbered(rig: CappedRig) -> int:
    """Seqs given to the runtime's events: all of them, less the outbox's own reports."""
    reports = sum(1 for e in rig.runtime.outbox if e.sensor == "outbox")
    return rig.runtime.outbox.last_seq - reports


@pytest.mark.parametrize("kind", ["tmpfs", "ext4"])
def test_a_disk_that_fills_during_an_outage_loses_only_reported_events_and_delivers_the_rest(
    tmp_path: Path, mqtt_subscriber: Any, kind: str
) -> None:
    roomy = outage(tmp_path / "roomy", "mqtt://127.0.0.1:1")
    try:
        expected = drafts_numbered(roomy)
        critical = [e.body()["seq"] for e in roomy.runtime.outbox if critical_alarm(e)]
        assert roomy.runtime.outbox.stats().evicted == 0
    finally:
        roomy.runtime.close()

    broker = Mosquitto(tmp_path / "broker", persistence=True).start()
    subscriber = mqtt_subscriber(broker.url, "edgeline/disk-01/events/#", client_id="disk-sink",
                                 clean_session=False)  # fmt: skip
    subscriber.wait_subscribed()
    with small_disk(tmp_path / "disk", "3m" if kind == "tmpfs" else "4m", kind) as disk:
        broker.stop()  # the outage
        rig = outage(disk / "state", broker.url, fill_at=20.0)
        try:
            outbox = rig.runtime.outbox
            assert drafts_numbered(rig) == expected  # as many seqs as on the roomy disk
            held = {e.seq: e.body() for e in outbox}
            reports = [b for b in held.values() if b["sensor"] == "outbox"]
            assert {r["reason"] for r in reports if r["state"] == "evicted"} == {"disk"}
            assert "disk_full" in [r["state"] for r in reports]
            gone = named(reports)
            assert gone and not set(held) & gone
            assert len(held) > 1000  # it kept using the disk: ~2000 events filled it
            assert set(held) | gone == set(range(1, outbox.last_seq + 1))
            kept = [e.seq for e in outbox if critical_alarm(e)]
            assert len(kept) == len(critical) >= 5  # every critical alarm is kept

            (disk / "state" / "filler").unlink()  # space returns, and the broker
            broker.start()
            subscriber.wait_subscribed(count=2)
            assert rig.runtime.drain(timeout=WAIT)
            last = outbox.last_seq

            def received() -> dict[int, dict[str, Any]]:
                return {b["seq"]: b for b in (json.loads(m.payload) for m in subscriber.messages)}

            subscriber.wait_for(lambda _: set(received()) >= set(held), timeout=WAIT)
            got = received()
            assert set(got) <= set(range(1, last + 1)) - gone
            assert all(got[s] == body for s, body in held.items())
        finally:
            rig.runtime.close()
            broker.stop()


def test_once_space_returns_the_reserve_is_taken_back_and_the_cap_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("edge.outbox.store.RESERVE_CHECK", 0.0)  # look at every commit
    pad = {"pad": "x" * 200}
    drafts = [Draft("s", "telemetry", "info", 1.0, 0.0, 0.0, True, pad)] * 50
    with small_disk(tmp_path / "disk", "2m") as disk, Outbox.open(disk, "pi") as box:
        reserve = disk / "outbox.reserve"
        box.commit(drafts * 4)
        filler = fill_up(disk)
        states: list[str] = []
        while "disk_full" not in states:
            states += [e.body()["state"] for e in box.commit(drafts) if e.sensor == "outbox"]
        assert not reserve.exists()  # spent on the commit that met the full disk
        held = box.stats().bytes
        filler.unlink()
        box.commit(drafts)
        assert reserve.stat().st_size > 0  # taken back
        for _ in range(10):  # and the cap is the disk's again, not what was held then
            assert not [e for e in box.commit(drafts) if e.sensor == "outbox"]
        assert box.stats().bytes > held
