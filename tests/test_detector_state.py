"""A persistent detector's learning survives a restart of the runtime (simulated sensor,
virtual clock, real state files)."""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from edge.clock import VirtualClock
from edge.runtime.detector_state import SAVE_EVERY, DetectorStore
from edge.runtime.runtime import Runtime
from edge.runtime.watcher import Watcher
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from models import AdaptiveDetector
from models.adaptive import THRESHOLD

CONFIG = """
[device]
id = "p-01"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "mqtt://127.0.0.1:1"

[[sensors]]
id = "temp"
type = "i2c.tmp102"
interval = 1.0

[[detectors]]
sensor = "temp"
type = "adaptive"

[simulation.signals.temp]
points = [[0, 20.0], [400, 20.0], [400, 30.0], [402, 30.0], [402, 20.0], [100000, 20.0]]
noise = 0.2
"""


class Seen(Watcher):
    """The readings the detector was fed, and its score after each previous one."""

    def __init__(self, detector: AdaptiveDetector) -> None:
        self.detector = detector
        self.values: list[float] = []
        self.times: list[float] = []
        self.scores_before: list[float] = []

    def reading(self, sensor: str, value: Any, unit: str, t: float) -> None:
        self.scores_before.append(self.detector.anomaly_score)
        self.values.append(float(value))
        self.times.append(t)


class Run:
    """One life of the runtime on a state directory."""

    def __init__(self, state: Path) -> None:
        scenario = parse_scenario(CONFIG.format(state=state), "p.toml", overrides={})
        self.clock = VirtualClock()
        self.t0 = self.clock.monotonic()
        self.sim = SimulatedHardware(scenario, self.clock)
        self.seen = Seen(AdaptiveDetector())
        self.runtime = Runtime(
            scenario.config,
            hardware=self.sim.hardware,
            clock=self.clock,
            drive_clock=True,
            watcher=self.seen,
        )
        self.sim.schedule(self.runtime.scheduler)
        self.seen.detector = self.detector

    @property
    def detector(self) -> AdaptiveDetector:
        detector = self.runtime.detector_states.detectors["temp-adaptive"]
        assert isinstance(detector, AdaptiveDetector)
        return detector

    def run_until(self, seconds: float) -> None:
        if self.runtime._thread is None:
            self.runtime.start(until=self.t0 + seconds)
        else:
            self.runtime.sample(until=self.t0 + seconds)
        assert self.runtime.sampling_done(timeout=30)


@pytest.fixture
def runs(tmp_path: Path) -> Any:
    made: list[Run] = []

    def make() -> Run:
        run = Run(tmp_path / "state")
        made.append(run)
        return run

    yield make
    for run in made:
        run.runtime.close(timeout=1)


def saved(tmp_path: Path) -> dict[str, Any]:
    state = DetectorStore(tmp_path / "state").load("temp-adaptive")
    assert state is not None
    return state


def test_the_detector_resumes_where_it_stopped(tmp_path: Path, runs: Any) -> None:
    first = runs()
    assert first.detector.readings == 0
    first.run_until(300.0)
    first.runtime.close()
    assert saved(tmp_path)["readings"] == first.detector.readings == 301

    second = runs()
    assert second.detector.readings == 301  # restored as it was built
    second.run_until(600.0)  # the clock and the signal start again: its spike is at 400 s
    assert second.detector.readings == 902

    # An uninterrupted detector fed the same readings is in the very same state, and gave
    # the same score for every reading after the restart.
    whole = AdaptiveDetector(second.detector.params)
    times = first.seen.times + second.seen.times  # the clock restarts with the runtime
    values = first.seen.values + second.seen.values
    expected = []
    for t, v in zip(times, values, strict=True):
        whole.observe(t, v)
        expected.append(whole.anomaly_score)
    scores_after = [*second.seen.scores_before[1:], second.detector.anomaly_score]
    assert scores_after == expected[301:]
    assert max(scores_after[400:403]) >= THRESHOLD  # the spike, reported by the resumed one
    assert whole.snapshot() == second.detector.snapshot()


def test_it_saves_periodically_off_the_sampling_thread_and_at_close(
    tmp_path: Path, runs: Any
) -> None:
    run = runs()
    run.run_until(SAVE_EVERY + 30.0)
    states = run.runtime.detector_states
    assert run.runtime.recorder.flush(timeout=5)
    for _ in range(250):  # the writer thread is asynchronous
        if states.saved:
            break
        time.sleep(0.02)
    assert states.saved == 1
    at_save = saved(tmp_path)["readings"]  # taken at t = SAVE_EVERY, by the poll due then
    assert at_save in (int(SAVE_EVERY), int(SAVE_EVERY) + 1)
    run.runtime.close()
    assert saved(tmp_path)["readings"] == int(SAVE_EVERY) + 31
    assert [p.name for p in (tmp_path / "state" / "detectors").iterdir()] == ["temp-adaptive.json"]


def test_a_crash_keeps_the_last_snapshot_saved(tmp_path: Path, runs: Any) -> None:
    run = runs()
    run.run_until(SAVE_EVERY + 30.0)
    assert run.detector.readings == int(SAVE_EVERY) + 31
    run.runtime.crash()
    at_save = saved(tmp_path)["readings"]
    assert at_save in (int(SAVE_EVERY), int(SAVE_EVERY) + 1)
    again = runs()
    assert again.detector.readings == at_save


def test_an_unreadable_snapshot_is_logged_and_the_detector_starts_afresh(
    tmp_path: Path, runs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "state" / "detectors"
    folder.mkdir(parents=True)
    (folder / "temp-adaptive.json").write_text('{"type": "adaptive", "version": 1}')
    with caplog.at_level(logging.WARNING, logger="edge.runtime.detector_state"):
        run = runs()
    assert "temp-adaptive: saved state not restored" in caplog.text
    assert run.detector.readings == 0
    run.run_until(10.0)
    run.runtime.close()
    assert saved(tmp_path)["readings"] == 11


def test_the_store_writes_whole_files_and_tolerates_garbage(tmp_path: Path) -> None:
    store = DetectorStore(tmp_path)
    assert store.load("x") is None
    store.save("x", {"a": [1.5, 2]})
    assert json.loads(store.path("x").read_text()) == {"a": [1.5, 2]}
    assert [p.name for p in store.directory.iterdir()] == ["x.json"]
    store.path("x").write_text("{not json")
    assert store.load("x") is None
    store.path("x").write_text("[1, 2]")
    assert store.load("x") is None
    with pytest.raises(ValueError):
        store.save("y", {"nan": float("nan")})


def test_a_planted_symlink_at_the_temporary_name_is_never_written_through(
    tmp_path: Path,
) -> None:
    store = DetectorStore(tmp_path / "state")
    store.save("x", {"a": 1})
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (store.directory / ".x.json.tmp").symlink_to(victim)  # the name the writer once used
    store.save("x", {"a": 2})
    assert victim.read_text() == "precious"
    assert json.loads(store.path("x").read_text()) == {"a": 2}
    assert not store.path("x").is_symlink()


def test_snapshots_are_private_and_their_rename_is_made_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[bool] = []  # for each fsync: was it a directory's?
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    store = DetectorStore(tmp_path / "state")
    store.save("x", {"a": 1})
    assert synced == [False, True]  # the file's data, then the directory after the rename
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path("x").stat().st_mode) == 0o600
    assert [p.name for p in store.directory.iterdir()] == ["x.json"]


def test_every_file_the_runtime_leaves_in_a_state_dir_it_made_is_private(
    tmp_path: Path, runs: Any
) -> None:
    run = runs()
    run.run_until(20.0)
    run.runtime.close()
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    found = {p.relative_to(state).as_posix(): stat.S_IMODE(p.stat().st_mode)
             for p in state.rglob("*")}  # fmt: skip
    assert {"outbox.sqlite3", "outbox.reserve", "detectors/temp-adaptive.json"} <= set(found)
    assert found == {name: 0o700 if (state / name).is_dir() else 0o600 for name in found}
