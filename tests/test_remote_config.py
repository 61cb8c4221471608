"""Remote config through a real Mosquitto: refused with its problems, rolled back when
sampling breaks, live (and in the next birth message) when good; plus the command's
arguments and chunks under hypothesis.

The device runs as ``edge run`` runs it: a :class:`Reconfigurer` owns the runtime and
serves on its own thread, building each runtime on the same hardware. The hardware is a
simulated board with two TMP102s (0x48 and 0x49): a config may use one or both; a sensor at
0x4A finds no chip and every read fails, as on a board where it is not fitted. The clock is
the real one: the health check's timeout and the operator's signatures are real time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.clock import RealClock
from edge.config.device import Config, load
from edge.runtime.config_upload import (
    MAX_CONFIG_BYTES,
    Chunk,
    Uploads,
    Whole,
    chunks,
    config_commands,
    read_args,
)
from edge.runtime.reconfigure import Reconfigurer
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.uplink.commands import CommandRefused
from edge.uplink.operator import NoReply, send_command
from tests.waiting import wait_until

KEY_HEX = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
KEY = bytes.fromhex(KEY_HEX)
DEVICE = "rc-01"

BOARD = """
[device]
id = "rc-01"
[uplink]
broker = "mqtt://127.0.0.1:1883"
[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
[[sensors]]
id = "extra"
type = "i2c.tmp102"
address = 0x49
interval = 1.0
[simulation]
duration = 3600.0
"""

CONFIG = """
[device]
id = "{device}"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 0.5
[commands]
enabled = true
key_file = "{key}"

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = {interval}
telemetry = true
{more}
"""

EXTRA = """
[[sensors]]
id = "extra"
type = "i2c.tmp102"
address = 0x49
interval = 0.1
telemetry = true
"""

GHOST = """
[[sensors]]
id = "ghost"
type = "i2c.tmp102"
address = 0x4A
interval = 0.1
"""


class Device:
    """A device on the simulated board, served the way ``edge run`` serves it."""

    def __init__(self, tmp_path: Path, broker: str) -> None:
        self.tmp_path, self.broker = tmp_path, broker
        key = tmp_path / "command.key"
        key.write_text(KEY_HEX + "\n")
        key.chmod(0o600)
        self.path = tmp_path / "edge.toml"
        self.path.write_text(self.config())
        self.path.chmod(0o640)
        clock = RealClock(assume_synced=True)  # the operator dates commands by it too
        self.hardware = SimulatedHardware(parse_scenario(BOARD, "board.toml", overrides={}), clock)

        def build(config: Config) -> Runtime:
            return Runtime(config, hardware=self.hardware.hardware, clock=clock)

        self.service = Reconfigurer(self.path, build)
        self.service.start(build(load(self.path)))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.serve, args=(self.stop,))
        self.thread.start()

    def config(self, *, interval: float = 0.2, more: str = "", device: str = DEVICE) -> str:
        return CONFIG.format(
            device=device, state=self.tmp_path / "state", broker=self.broker,
            key=self.tmp_path / "command.key", interval=interval, more=more,
        )  # fmt: skip

    @property
    def runtime(self) -> Runtime:
        assert self.service.runtime is not None
        return self.service.runtime

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.service.close()
        self.hardware.close()


@pytest.fixture
def device(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Device]:
    (tmp_path / "device").mkdir()  # beside mosquitto's own files
    running = Device(tmp_path / "device", mosquitto.url)
    try:
        yield running
    finally:
        running.close()


def until_subscribed(url: str) -> None:
    """The device subscribes to its commands a moment after it starts: ping until it answers."""
    for _ in range(100):
        try:
            assert send_command(url, DEVICE, KEY, "ping", timeout=0.3)["ok"] is True
            return
        except NoReply:
            continue
    raise AssertionError("the device never answered")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def health(messages: list[Any], state: str) -> list[dict[str, Any]]:
    bodies = [json.loads(m.payload) for m in messages]
    return [b for b in bodies if b["kind"] == "health" and b.get("state") == state]


def test_a_config_that_fails_validation_is_refused_with_its_problems_and_nothing_changes(
    device: Device, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    events = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/health/runtime")
    until_subscribed(mosquitto.url)
    before, runtime = device.path.read_bytes(), device.runtime

    reply = send_command(mosquitto.url, DEVICE, KEY, "config", {"toml": "[device\nid = 1"})
    assert reply["ok"] is False
    assert reply["error"].startswith("refused: 1 problem: remote config: invalid TOML")
    assert len(reply["problems"]) == 1

    broken = device.config(interval=-1, more=GHOST.replace("i2c.tmp102", "i2c.tmp103"))
    reply = send_command(mosquitto.url, DEVICE, KEY, "config", {"toml": broken})
    assert reply["ok"] is False and reply["error"].startswith("refused: 2 problems:")
    assert reply["problems"][0].startswith("remote config: sensors[0].interval: expected")
    assert reply["problems"][1].startswith("remote config: sensors[1].type: expected")
    assert "did you mean 'i2c.tmp102'?" in reply["problems"][1]

    renamed = device.config(device="rc-02")
    reply = send_command(mosquitto.url, DEVICE, KEY, "config", {"toml": renamed})
    assert reply["ok"] is False
    assert reply["problems"] == [
        "remote config: device.id: may not change remotely (it is 'rc-01' on the device, the"
        " config says 'rc-02'); edit the file on the device to change it"
    ]

    # Nothing changed on disk, and the runtime was never restarted.
    assert device.path.read_bytes() == before
    files = sorted(p.name for p in device.tmp_path.iterdir())
    assert files == ["command.key", "edge.toml", "state"]
    assert device.runtime is runtime and runtime.sensors["probe"].readings > 0
    refused = health(events.wait_for(lambda ms: len(health(ms, "config_refused")) >= 3),
                     "config_refused")  # fmt: skip
    assert [len(e["problems"]) for e in refused] == [1, 2, 1]
    assert refused[2]["config_sha256"] == sha256(renamed)


def test_a_config_whose_sensor_cannot_be_read_is_rolled_back_within_the_timeout(
    device: Device, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    events = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/health/runtime")
    until_subscribed(mosquitto.url)
    before, old = device.path.read_bytes(), device.runtime
    ghostly = device.config(more=GHOST)
    started = time.monotonic()
    reply = send_command(mosquitto.url, DEVICE, KEY, "config", {"toml": ghostly, "timeout": 2},
                         timeout=30)  # fmt: skip
    took = time.monotonic() - started
    assert reply["ok"] is False
    assert reply["error"].startswith("rolled back: no reading from sensor 'ghost' within 2 s ("), (
        reply
    )
    assert 2 <= took < 12, took  # the timeout, then a restart on the old config
    # The old config is live again: the file, and a new runtime on it, sampling.
    assert device.path.read_bytes() == before
    assert device.path.with_name("edge.toml.previous").read_bytes() == before
    assert device.runtime is not old
    assert [s.id for s in device.runtime.config.sensors] == ["probe"]
    wait_until(lambda: device.runtime.sensors["probe"].readings > 0, timeout=10)
    rolled = health(events.wait_for(lambda ms: len(health(ms, "config_rolled_back")) == 1),
                    "config_rolled_back")  # fmt: skip
    assert rolled[0]["reason"] == reply["error"].removeprefix("rolled back: ")
    assert rolled[0]["config_sha256"] == sha256(ghostly)
    assert rolled[0]["previous_sha256"] == hashlib.sha256(before).hexdigest()
    assert send_command(mosquitto.url, DEVICE, KEY, "ping", timeout=5)["ok"] is True


def test_a_good_config_sent_in_chunks_is_live_in_the_next_birth_and_the_stream_goes_on(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    events = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/events/#")
    status = mqtt_subscriber(mosquitto.url, f"edgeline/{DEVICE}/status")
    (tmp_path / "device").mkdir()
    device = Device(tmp_path / "device", mosquitto.url)
    try:
        original = device.path.read_text()
        births = lambda ms: [json.loads(m.payload) for m in ms if b'"online"' in m.payload]  # noqa: E731
        first = births(status.wait_for(lambda ms: len(births(ms)) >= 1))[0]
        assert first["config_sha256"] == sha256(original)
        assert first["config_version"] == sha256(original)[:12]
        until_subscribed(mosquitto.url)
        wait_until(lambda: device.runtime.outbox.last_seq >= 5, timeout=10)
        stream = device.runtime.outbox.stream
        # A large file (a long comment): edge command sends it in chunks.
        good = device.config(interval=0.1, more=EXTRA) + "# " + "x" * 20_000 + "\n"
        new = tmp_path / "new.toml"
        new.write_text(good)
        key = tmp_path / "operator.key"
        key.write_text(KEY_HEX)
        key.chmod(0o600)
        assert len(config_commands(good)) == 4
        code = main(["command", "--broker", mosquitto.url, "--device", DEVICE, "--key-file",
                     str(key), "config", "--file", str(new), "--arg", "timeout=10"])  # fmt: skip
        result = json.loads(capsys.readouterr().out)
        assert code == 0
        assert result["state"] == "applied" and result["config_sha256"] == sha256(good)
        assert result["previous_sha256"] == sha256(original)
        assert device.path.read_text() == good
        assert device.path.with_name("edge.toml.previous").read_text() == original
        assert not (tmp_path / "state" / "config-upload").exists() or not any(
            (tmp_path / "state" / "config-upload").iterdir()
        )
        # The next birth names the new config; the same stream goes on, no seq missing.
        later = births(status.wait_for(lambda ms: len(births(ms)) >= 2))[-1]
        assert later["config_sha256"] == sha256(good) and later["sensors"] == ["probe", "extra"]
        assert later["stream"] == stream
        wait_until(lambda: device.runtime.sensors["extra"].readings >= 3, timeout=10)
        last = device.runtime.outbox.last_seq

        def seqs(messages: list[Any]) -> set[int]:
            return {json.loads(m.payload)["seq"] for m in messages}

        got = events.wait_for(lambda ms: seqs(ms) >= set(range(1, last + 1)))
        bodies = [json.loads(m.payload) for m in got]
        assert {b["stream"] for b in bodies} == {stream}
        assert any(b["sensor"] == "extra" for b in bodies)
        applied = health(got, "config_applied")
        assert applied and applied[0]["config_sha256"] == sha256(good)
    finally:
        device.close()


# -- the command's arguments and chunks (no broker) -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
keys = st.sampled_from(["toml", "sha256", "timeout", "chunk", "of", "data", "other"])


@given(st.dictionaries(keys, json_values, max_size=6))
def test_any_arguments_are_read_or_refused_with_a_reason(args: dict[str, Any]) -> None:
    try:
        found = read_args(args)
    except CommandRefused as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(found, Whole | Chunk)
    assert 1 <= found.timeout <= 600


@given(st.text(min_size=1, max_size=40).filter(lambda t: any(c not in B64 for c in t)))
def test_data_that_is_not_base64_is_refused(data: str) -> None:
    with pytest.raises(CommandRefused, match="data must be base64"):
        read_args({"sha256": "a" * 64, "chunk": 0, "of": 1, "data": data})


B64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


@given(st.text(max_size=200), st.text(max_size=200))
def test_a_whole_config_whose_sha256_is_not_its_own_is_refused(text: str, other: str) -> None:
    args = {"toml": text, "sha256": sha256(other)}
    if text == other:
        assert read_args(args) == Whole(text, sha256(text), 30.0)
    else:
        with pytest.raises(CommandRefused, match=f"its sha256 is {sha256(text)}"):
            read_args(args)


def test_a_huge_config_is_refused_whole_and_in_chunks(tmp_path: Path) -> None:
    with pytest.raises(CommandRefused, match=f"at most {MAX_CONFIG_BYTES} bytes"):
        read_args({"toml": "#" * (MAX_CONFIG_BYTES + 1)})
    uploads, piece = Uploads(tmp_path), b"#" * (MAX_CONFIG_BYTES // 2 + 1)
    assert uploads.add(Chunk("a" * 64, 0, 3, piece, 30.0)) is None
    with pytest.raises(CommandRefused, match="upload dropped"):
        uploads.add(Chunk("a" * 64, 1, 3, piece, 30.0))
    assert list(uploads.directory.iterdir()) == []
    with pytest.raises(CommandRefused, match="of must be the number of chunks, 1 to 1024"):
        read_args({"sha256": "a" * 64, "chunk": 0, "of": 1025, "data": "AA=="})


@given(st.binary(min_size=1, max_size=3000), st.integers(1, 700), st.randoms(), st.booleans())
def test_chunks_in_any_order_make_the_whole_or_a_refusal_when_one_was_altered(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, size: int, rng: random.Random,
    alter: bool,
) -> None:  # fmt: skip
    uploads = Uploads(tmp_path_factory.mktemp("state"))
    digest = hashlib.sha256(data).hexdigest()
    pieces = list(enumerate(chunks(data, size)))
    rng.shuffle(pieces)
    if alter:
        index, piece = pieces[-1]
        pieces[-1] = (index, bytes([piece[0] ^ 1]) + piece[1:])
    for n, (index, piece) in enumerate(pieces):
        encoded = base64.b64encode(piece).decode()
        chunk = read_args({"sha256": digest, "chunk": index, "of": len(pieces), "data": encoded})
        assert isinstance(chunk, Chunk)
        if n < len(pieces) - 1:
            assert uploads.add(chunk) is None and uploads.missing(chunk) == len(pieces) - n - 1
        elif alter:
            with pytest.raises(CommandRefused, match=f"not sha256 {digest}: upload dropped"):
                uploads.add(chunk)
        else:
            assert uploads.add(chunk) == data
    assert list(uploads.directory.iterdir()) == []  # done or dropped: nothing left behind


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=30_000))
def test_what_edge_command_sends_reads_back_as_the_same_config(text: str) -> None:
    sends = config_commands(text, 12)
    found = [read_args(args) for args in sends]
    if len(found) == 1 and isinstance(found[0], Whole):
        assert found[0].text == text and found[0].timeout == 12
        return
    pieces = [f for f in found if isinstance(f, Chunk)]
    assert len(pieces) == len(found) and all(f.sha256 == sha256(text) for f in pieces)
    assert b"".join(f.data for f in pieces).decode() == text
    assert all(len(json.dumps(args)) < 16_384 - 512 for args in sends)  # fits max_size
