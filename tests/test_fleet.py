"""`edge simulate --devices N`: a fleet of simulated devices, each its own id, stream and
command key, against one real Mosquitto, checked by a subscriber of the test's own."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import stat
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import edge.sim
from edge.bench.mosquitto import Mosquitto
from edge.config.command_key import read_key_file
from edge.outbox.store import Outbox
from edge.sim.fleet import FILES_BESIDE, FILES_PER_DEVICE
from tests.brokers import Received, Subscriber, need_mosquitto

EDGE = [sys.executable, "-m", "edge.cli"]
FLEET = re.compile(
    r"^fleet: (?P<devices>\d+) devices, (?P<streams>\d+) streams; .* upstream received"
    r" (?P<got>\d+) distinct, \d+ duplicates, (?P<missing>\d+) missing",
    re.MULTILINE,
)


@contextlib.contextmanager
def open_files_for(devices: int) -> Iterator[None]:
    """Room for the broker's connections: it inherits this process's open-files limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = devices * FILES_PER_DEVICE + FILES_BESIDE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"the open-files limit ({hard}) is below {wanted}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


class Arrivals:
    """The seqs of each (device, stream) among event messages, each message parsed once
    however often it is asked (a predicate for ``Subscriber.wait_for``)."""

    def __init__(self) -> None:
        self.seqs: dict[tuple[str, str], set[int]] = defaultdict(set)
        self._parsed = 0

    def add(self, messages: list[Received]) -> dict[tuple[str, str], set[int]]:
        for message in messages[self._parsed :]:
            body = json.loads(message.payload)
            self.seqs[(body["device"], body["stream"])].add(body["seq"])
        self._parsed = len(messages)
        return self.seqs


@pytest.mark.parametrize(
    ("count", "timeout"), [(100, 120.0), pytest.param(1000, 300.0, marks=pytest.mark.slow)]
)
def test_every_device_of_a_fleet_arrives_whole_with_its_own_id_stream_and_key(
    tmp_path: Path, count: int, timeout: float
) -> None:
    # The default scenario with a 1 MB outbox cap: each outbox then reserves 256 KiB of disk
    # (three of its WALs), not the 3 MiB a 64 MiB cap reserves.
    default = Path(edge.sim.__file__).parent / "scenarios" / "default.toml"
    scenario = tmp_path / "fleet.toml"
    scenario.write_text(
        default.read_text().replace("[storage]\n", "[storage]\nmax_bytes = 1_000_000\n", 1)
    )
    state = tmp_path / "fleet"
    with (
        open_files_for(count),
        Mosquitto(tmp_path / "mosquitto", executable=need_mosquitto(), log=False) as broker,
        Subscriber(broker.url, "edgeline/+/events/#") as events,
    ):
        result = subprocess.run(
            [*EDGE, "simulate", "--scenario", str(scenario), "--speed", "max", "--duration",
             "60", "--quiet", "--devices", str(count), "--broker", broker.url,
             "--state-dir", str(state)],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        ids = [f"sim-01-{index:03d}" for index in range(1, count + 1)]
        outboxes = {}
        for device in ids:  # each device's own outbox says what it made, and that it is done
            with Outbox.open_existing(state / device) as outbox:
                stats = outbox.stats()
            assert stats.device == device and stats.last_seq > 0 and stats.pending == 0, stats
            outboxes[(device, stats.stream)] = set(range(1, stats.last_seq + 1))
        assert len({stream for _, stream in outboxes}) == count  # a stream each
        # The test's own subscriber saw every seq of every stream (duplicates allowed).
        arrivals = Arrivals()
        events.wait_for(lambda messages: arrivals.add(messages) == outboxes, timeout=60)

    fleet = FLEET.search(result.stdout)
    assert fleet, result.stdout
    total = sum(len(seqs) for seqs in outboxes.values())
    assert fleet["devices"] == fleet["streams"] == str(count)
    assert (int(fleet["got"]), int(fleet["missing"])) == (total, 0)
    assert "summary sim-01" not in result.stdout  # no device lacks anything: none named

    keys = state / "keys"
    assert f"command keys: {keys}/<device>.key" in result.stdout
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert {path.name for path in keys.iterdir()} == {f"{device}.key" for device in ids}
    for path in keys.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert len({read_key_file(keys / f"{device}.key") for device in ids}) == count
