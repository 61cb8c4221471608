"""Models to the fleet: ``model put`` on a detector, and ``edge model rollout`` across 20
devices through a real Mosquitto.

The fleet is 20 runtimes in this process, each the unchanged runtime on simulated hardware
on the real clock (the operator dates its commands by the wall clock, and each device judges
their age by its own), with its own state directory, command key (``keys/<id>.key``) and an
``onnx`` detector over a simulated TMP102. The running model scores a window by its mean
temperature against a threshold of 100 degC, so it never fires; a candidate with a threshold
of 90 agrees on every window, one with a threshold of 1 fires on every window and agrees on
none. The models are real ONNX files run by onnxruntime.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.clock import RealClock
from edge.modeltools.rollout import Plan, command_sender, rollout
from edge.runtime.model_put import MAX_PUT_BYTES, ModelPuts, read_put, stored_name
from edge.runtime.runtime import Runtime
from edge.runtime.uploads import Piece, chunk_args
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.uplink.commands import CommandRefused
from models.onnx_detector import OnnxDetector, OnnxParams
from tests.models.test_onnx_reload import write_mean_model

FLEET = [f"roll-{n:02d}" for n in range(1, 21)]
DETECTOR = "probe-model"
WINDOW = 4

DEVICE = """
[device]
id = "{name}"
[storage]
state_dir = "{state}"
status_interval = 0
[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 1.0
[commands]
enabled = true
key_file = "{key}"

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 0.05

[[detectors]]
id = "probe-model"
sensor = "probe"
type = "onnx"
model = "{model}"
backend = "onnxruntime"
window = 4
watch = 0
"""


class Device:
    """One device: its own models directory with the running model ``live.onnx``."""

    def __init__(self, root: Path, name: str, broker: str, keys: Path) -> None:
        self.name = name
        self.models = root / name / "models"
        self.models.mkdir(parents=True)
        live = write_mean_model(
            self.models / "live.onnx", gain=1.0, threshold=100.0, name="probe", version="1",
            n=WINDOW,
        )  # fmt: skip
        key = keys / f"{name}.key"
        key.write_text(secrets.token_hex(32) + "\n")
        key.chmod(0o600)
        text = DEVICE.format(
            name=name, state=root / name / "state", broker=broker, key=key, model=live
        )
        scenario = parse_scenario(text, f"{name}.toml", overrides={})
        clock = RealClock(assume_synced=True)
        hardware = SimulatedHardware(scenario, clock)
        self.runtime = Runtime(scenario.config, hardware=hardware.hardware, clock=clock)

    def stored(self) -> list[str]:
        """Model files the device was sent (every one but the configured one)."""
        return sorted(p.name for p in self.models.iterdir() if p.name != "live.onnx")


class Fleet:
    def __init__(self, root: Path, broker: str) -> None:
        self.broker = broker
        self.keys = root / "keys"
        self.keys.mkdir()
        self.csv = root / "devices.csv"
        self.csv.write_text("id,hostname\n" + "".join(f"{name},\n" for name in FLEET))
        self.devices = {name: Device(root, name, broker, self.keys) for name in FLEET}
        keys = {name: bytes.fromhex((self.keys / f"{name}.key").read_text()) for name in FLEET}
        self.send = command_sender(broker, keys, timeout=10)

    def status(self, name: str) -> dict[str, Any]:
        reply = self.send(name, "model", {"detector": DETECTOR, "action": "status"})
        assert reply["ok"] is True, reply
        result: dict[str, Any] = reply["result"]
        return result

    def rollout_cli(self, model: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
        code = main([
            "model", "rollout", "--broker", self.broker, "--fleet", str(self.csv),
            "--keys", str(self.keys), "--detector", DETECTOR, "--model", str(model),
            "--canary", "2", "--promote-after", "30", "--min-readings", "8",
            "--poll", "0.1", "--json",
        ])  # fmt: skip
        return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def fleet(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Fleet]:
    built = Fleet(tmp_path, mosquitto.url)
    started: list[Runtime] = []
    try:
        for device in built.devices.values():
            device.runtime.start()
            started.append(device.runtime)
        for name in FLEET:  # each answers: subscribed to its commands, one window scored
            wait_for_answer(built, name)
        yield built
    finally:
        for runtime in started:
            runtime.close(timeout=5)


def wait_for_answer(fleet: Fleet, name: str) -> None:
    from edge.uplink.operator import NoReply
    from tests.waiting import wait_until

    def answers() -> bool:
        try:
            reply = fleet.send(name, "model", {"detector": DETECTOR, "action": "status"})
        except NoReply:
            return False  # not subscribed yet
        return reply["ok"] is True and reply["result"]["score"] is not None

    wait_until(answers, timeout=30)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_model_that_agrees_goes_to_the_canaries_then_everywhere(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = sha256(fleet.devices[FLEET[0]].models / "live.onnx")
    score = fleet.status(FLEET[0])["score"]
    assert 1.0 < score < 90.0  # the simulated room: below both thresholds, above the bad one
    new = write_mean_model(tmp_path / "v2.onnx", gain=1.0, threshold=90.0, name="probe",
                           version="2", n=WINDOW)  # fmt: skip
    code, report = fleet.rollout_cli(new, capsys)
    assert code == 0 and report["ok"] is True and report["stopped"] is None
    assert [d["state"] for d in report["devices"]] == ["promoted"] * 20
    assert [d["wave"] for d in report["devices"]] == ["canary"] * 2 + ["rest"] * 18
    assert all(d["windows"] >= 8 and d["agreement"] == 1.0 for d in report["devices"])
    for name, device in fleet.devices.items():
        status = fleet.status(name)
        assert (status["sha256"], status["version"]) == (sha256(new), "2"), name
        assert "shadow" not in status and status["sha256"] != live
        assert device.stored() == [stored_name(sha256(new))]


def test_a_model_that_disagrees_stops_after_the_canaries(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = sha256(fleet.devices[FLEET[0]].models / "live.onnx")
    bad = write_mean_model(tmp_path / "v3.onnx", gain=1.0, threshold=1.0, name="probe",
                           version="3", n=WINDOW)  # fmt: skip
    code, report = fleet.rollout_cli(bad, capsys)
    assert code == 1 and report["ok"] is False
    assert report["stopped"].startswith(f"{FLEET[0]} disagrees: agreement 0.000 over")
    states = [(d["device"], d["state"], d["received"]) for d in report["devices"]]
    assert states == [(n, "dropped", True) for n in FLEET[:2]] + [
        (n, "not_sent", False) for n in FLEET[2:]
    ]
    for name, device in fleet.devices.items():
        status = fleet.status(name)
        assert (status["sha256"], status["version"]) == (live, "1"), name
        assert "shadow" not in status, name  # the canaries' shadow dropped
        assert device.stored() == ([stored_name(sha256(bad))] if name in FLEET[:2] else [])


def test_a_device_that_refuses_the_model_stops_the_rollout(fleet: Fleet, tmp_path: Path) -> None:
    """A model the canary cannot run (another window size): refused at put, nothing kept."""
    wrong = write_mean_model(tmp_path / "w.onnx", gain=1.0, threshold=90.0, name="probe",
                             version="9", n=WINDOW + 1)  # fmt: skip
    lines: list[str] = []
    plan = Plan(DETECTOR, wrong.read_bytes(), canary=2, promote_after=30, min_readings=8,
                poll=0.1)  # fmt: skip
    report = rollout(FLEET, plan, fleet.send, progress=lines.append)
    assert report.stopped is not None and report.stopped.startswith(
        f"{FLEET[0]}: the model was refused: refused:"
    )
    assert [o.state for o in report.devices] == ["failed"] + ["not_sent"] * 19
    assert lines[-1] == f"stopped: {report.stopped}"
    assert fleet.devices[FLEET[0]].stored() == []  # refused files are removed
    assert "shadow" not in fleet.status(FLEET[0])


# -- model put on one detector, no broker ----------------------------------------------------


@pytest.fixture
def detector(tmp_path: Path) -> OnnxDetector:
    models = tmp_path / "models"
    models.mkdir()
    write_mean_model(models / "live.onnx", gain=1.0, threshold=0.5, name="a", version="1",
                     n=WINDOW)  # fmt: skip
    params = OnnxParams(model=str(models / "live.onnx"), window=WINDOW, backend="onnxruntime")
    return OnnxDetector(params)


def put_all(puts: ModelPuts, detector: OnnxDetector, sends: list[dict[str, Any]]) -> Any:
    found = None
    for args in sends:
        found = puts.put(detector, read_put_args(args))
    return found


def read_put_args(args: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(args))  # as it arrives: through JSON


def test_put_in_any_order_stores_the_model_by_its_sha_and_starts_it_in_shadow(
    detector: OnnxDetector, tmp_path: Path
) -> None:
    model = write_mean_model(tmp_path / "b.onnx", gain=2.0, threshold=1.5, name="b",
                             version="2", n=WINDOW)  # fmt: skip
    data = model.read_bytes()
    sends = chunk_args(data, {"detector": "m", "action": "put"}, size=97)
    random.Random(4).shuffle(sends)
    puts = ModelPuts(tmp_path / "state", post=lambda work: work())
    for args in sends[:-1]:
        assert puts.put(detector, args)["missing"] > 0
    done = puts.put(detector, sends[-1])
    digest = hashlib.sha256(data).hexdigest()
    assert done["accepted"] is True and done["stored"] == f"{digest[:12]}.onnx"
    assert (tmp_path / "models" / done["stored"]).read_bytes() == data
    assert detector.candidate_sha256 == digest and detector.model_version == "1"
    assert list((tmp_path / "state" / "model-upload").iterdir()) == []


def test_put_of_a_file_that_is_no_model_is_refused_and_removed(
    detector: OnnxDetector, tmp_path: Path
) -> None:
    puts = ModelPuts(tmp_path / "state", post=lambda work: work())
    done = put_all(puts, detector, chunk_args(b"not a model", {"detector": "m"}))
    assert done["accepted"] is False and done["stored"] is None
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["live.onnx"]
    assert detector.candidate_sha256 is None


def test_put_larger_than_the_limit_is_refused_and_dropped(
    detector: OnnxDetector, tmp_path: Path
) -> None:
    puts = ModelPuts(tmp_path / "state", post=lambda work: work())
    half = base64.b64encode(b"\0" * (MAX_PUT_BYTES // 2 + 1)).decode()
    first = {"sha256": "a" * 64, "chunk": 0, "of": 2, "data": half}
    assert puts.put(detector, first)["missing"] == 1
    with pytest.raises(CommandRefused, match=f"a model is at most {MAX_PUT_BYTES} bytes"):
        puts.put(detector, {**first, "chunk": 1})
    assert list((tmp_path / "state" / "model-upload").iterdir()) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
put_keys = st.sampled_from(["detector", "action", "sha256", "chunk", "of", "data", "path"])


@given(st.dictionaries(put_keys, json_values, max_size=7))
def test_any_put_arguments_are_read_or_refused_with_a_reason(args: dict[str, Any]) -> None:
    try:
        piece = read_put(args, 1024)
    except CommandRefused as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(piece, Piece) and 0 <= piece.index < piece.of <= 1024
    assert len(piece.sha256) == 64 and len(piece.data) <= 1024 + 3


@given(st.binary(min_size=1, max_size=2000), st.integers(1, 500))
def test_what_rollout_sends_reads_back_as_the_same_file(data: bytes, size: int) -> None:
    sends = chunk_args(data, {"detector": "m", "action": "put"}, size=size)
    pieces = [read_put(args, 4096) for args in sends]
    assert b"".join(p.data for p in sorted(pieces, key=lambda p: p.index)) == data
    assert {p.sha256 for p in pieces} == {hashlib.sha256(data).hexdigest()}


def test_bad_rollout_arguments_exit_2_with_one_line_each(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "devices.csv"
    fleet.write_text("id\nroll-01\n")
    code = main([
        "model", "rollout", "--broker", "mqtt://127.0.0.1:9", "--fleet", str(fleet),
        "--keys", str(tmp_path), "--detector", DETECTOR, "--model", str(tmp_path / "none"),
        "--canary", "0", "--min-agreement", "nan",
    ])  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert [line.split(":")[1].strip() for line in lines] == [
        "--keys", "--model", "--canary", "--min-agreement"]  # fmt: skip
