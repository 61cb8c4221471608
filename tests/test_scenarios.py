"""The built-in field scenarios, each run for its simulated hour on the virtual clock.

Their detectors (threshold rules, and the shipped models where a scenario uses one) catch
every label and raise no false alarm, and the same scenario and seed give the same
recording, byte for byte.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.runtime.watcher import Watcher
from edge.sim import scenarios
from edge.sim.labels import score
from edge.sim.recording import Recording, read_recording, sensor_infos
from edge.sim.scenario import Scenario, labels, load_scenario
from edge.sim.simulator import DeviceRun, Simulator

FIELD_SCENARIOS = ("factory-vibration", "patient-vitals", "perimeter", "wildfire")


Simulate = Callable[[str, int | None], Path]


def scenario_named(name: str, state_dir: Path, seed: int | None = None) -> Scenario:
    overrides = {
        "storage": {"state_dir": str(state_dir)},
        "uplink": {"broker": "mqtt://127.0.0.1:1"},  # nobody there: events stay stored
    }
    scenario = load_scenario(name, overrides=overrides)
    if seed is None:
        return scenario
    settings = dataclasses.replace(scenario.settings, seed=seed)
    return dataclasses.replace(scenario, settings=settings)


def simulate(name: str, folder: Path, seed: int | None = None) -> Path:
    """Run a built-in scenario at full speed for its duration, recorded to a file."""
    folder.mkdir(parents=True)
    scenario = scenario_named(name, folder / "state", seed)
    path = folder / "run.jsonl"
    recordings: list[Recording] = []

    def watcher(device: Scenario, t0: float) -> Watcher:
        recording = Recording(
            path,
            t0,
            labels(device),
            name=device.name,
            device=device.config.device.id,
            seed=device.settings.seed,
            start_wall=device.settings.start_epoch,
            duration=device.settings.duration,
        )
        recordings.append(recording)
        return recording

    def started(run: DeviceRun) -> None:
        recordings[-1].describe(sensor_infos(run.runtime.sensors))

    simulator = Simulator(
        scenario,
        speed=None,
        duration=scenario.settings.duration,
        watcher=watcher,
        on_start=started,
    )
    try:
        simulator.run(drain_timeout=0.1)
    finally:
        for recording in recordings:
            recording.close()
    return path


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Simulate:
    """Each scenario and seed simulated once per module: the runs are the slow part."""
    runs: dict[tuple[str, int | None], Path] = {}

    def get(name: str, seed: int | None = None) -> Path:
        if (name, seed) not in runs:
            folder = tmp_path_factory.mktemp("scenario") / f"{name}-{seed}"
            runs[name, seed] = simulate(name, folder, seed)
        return runs[name, seed]

    return get


def test_every_field_scenario_is_built_in() -> None:
    assert set(FIELD_SCENARIOS) <= set(scenarios.names())


@pytest.mark.parametrize("name", FIELD_SCENARIOS)
def test_a_scenario_file_opens_with_what_it_models_and_its_labels(name: str) -> None:
    text = scenarios.path(name).read_text("utf-8")
    head = text.split("\n\n", 1)[0].splitlines()
    assert head[0].startswith(f"# {name}: ")
    assert all(line.startswith("#") for line in head)
    assert any(line.startswith("# Labels") for line in head)
    for label in labels(scenario_named(name, Path("unused"))):
        assert any(label.label in line for line in head), label


@pytest.mark.parametrize("name", FIELD_SCENARIOS)
def test_a_scenario_lasts_an_hour_of_labelled_trouble(name: str) -> None:
    scenario = scenario_named(name, Path("unused"))
    assert scenario.settings.duration == 3600.0
    assert scenario.settings.speed == 60.0
    truth = labels(scenario)
    assert any(label.kind == "anomaly" for label in truth)
    assert all(0 <= label.start < label.end and label.start < 3600.0 for label in truth)


@pytest.mark.parametrize("name", FIELD_SCENARIOS)
def test_thresholds_catch_the_labels_and_raise_no_false_alarm(
    name: str, recorded: Simulate
) -> None:
    data = read_recording(recorded(name, None))
    truth = labels(scenario_named(name, Path("unused")))
    assert data.labels == truth
    result = score(truth, data.events, grace=60.0, duration=3600.0)
    assert result.false_positives == 0
    assert result.missed == ()  # the vibration labels by the shipped vibration model
    assert result.true_positives == result.labels > 0


def test_patient_vitals_reports_the_glitching_oximeter(recorded: Simulate) -> None:
    data = read_recording(recorded("patient-vitals", None))
    health = [(e.t, e.fields["state"]) for e in data.events if e.kind == "health"]
    assert [state for _, state in health] == ["degraded", "recovered"]
    degraded, recovered = (t for t, _ in health)
    assert 3000.0 <= degraded < 3002.0  # the first poll into the NACKs
    assert 3020.0 <= recovered <= 3030.0  # retried within retry_max once the chip answers
    presses = [(r.t, r.value) for r in data.readings_of("nurse-call")]
    assert presses == [(1290.0, True), (1291.5, False)]


def test_perimeter_triggers_the_camera_for_the_intrusion_only(recorded: Simulate) -> None:
    data = read_recording(recorded("perimeter", None))
    camera = [(e.t, e.value) for e in data.events if e.sensor == "camera"]
    alarms = [e.t for e in data.events if e.kind == "threshold" and e.fields["state"] == "active"]
    assert len(alarms) == 1 and 2400.0 <= alarms[0] <= 2430.0
    assert camera == [(0.0, False), (alarms[0], True), (alarms[0] + 10.0, False)]
    sparse = [r.value["rate"] for r in data.readings_of("pir") if not 2400 <= r.t <= 2560]
    assert any(rate > 0 for rate in sparse)  # animals and wind did move it, alone
    assert max(sparse) <= 0.2


@pytest.mark.parametrize("name", FIELD_SCENARIOS)
def test_the_same_seed_records_the_same_bytes(
    name: str, recorded: Simulate, tmp_path: Path
) -> None:
    again = simulate(name, tmp_path / "again")
    assert again.read_bytes() == recorded(name, None).read_bytes()


def test_another_seed_records_another_run(recorded: Simulate) -> None:
    first = read_recording(recorded("wildfire", None))
    other = read_recording(recorded("wildfire", 7))
    assert other.header.seed == 7 != first.header.seed
    weather, weather_7 = list(first.readings_of("weather")), list(other.readings_of("weather"))
    assert [r.t for r in weather_7] == [r.t for r in weather]  # the same polls, other noise
    assert [r.value for r in weather_7] != [r.value for r in weather]
