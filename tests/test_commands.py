"""Downlink commands: signing, freshness, replay, parsing of any bytes, and the model command."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.runtime.command_handlers import model_handler, ping
from edge.uplink.commands import Checker, CommandRefused, Commands, Policy, Request, sign
from models.onnx_detector import OnnxDetector, OnnxParams
from tests.models.test_onnx_reload import WINDOW, flip_weight_byte, write_mean_model

KEY = b"k" * 32
DEVICE = "press-07"
NOW = 1_790_000_000.0  # 2026-09-21
TS = "2026-09-21T14:13:20.000Z"  # NOW as UTC ISO

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
arg_maps = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def payload(name: str, request_id: str, args: dict[str, Any], *, ts: str = TS,
            key: bytes = KEY, device: str = DEVICE) -> bytes:  # fmt: skip
    sig = sign(key, device, name, request_id, ts, args)
    return json.dumps({"id": request_id, "ts": ts, "args": args, "sig": sig}).encode()


def checker(key: bytes | None = KEY) -> Checker:
    return Checker(DEVICE, Policy(key, max_age=300.0))


@given(
    name=st.sampled_from(["ping", "model", "status"]),
    request_id=st.text(min_size=1, max_size=20),
    args=arg_maps,
)
def test_a_signed_command_is_accepted_as_sent(
    name: str, request_id: str, args: dict[str, Any]
) -> None:
    request = checker().check(name, payload(name, request_id, args), now=NOW, synced=True)
    assert (request.name, request.id, request.args) == (name, request_id, args)


@given(args=arg_maps, change=st.sampled_from(["name", "device", "id", "ts", "args", "key"]))
def test_any_change_to_what_was_signed_is_refused(args: dict[str, Any], change: str) -> None:
    sent = {"name": "model", "device": DEVICE, "id": "r-1", "ts": TS, "args": args, "key": KEY}
    signed = dict(sent)
    signed[change] = {
        "name": "ping", "device": "press-08", "id": "r-2", "ts": "2026-09-21T14:13:21.000Z",
        "args": {**args, "extra": 1}, "key": b"x" * 32,
    }[change]  # fmt: skip
    sig = sign(signed["key"], signed["device"], signed["name"], signed["id"], signed["ts"],
               signed["args"])  # fmt: skip
    body = json.dumps({"id": sent["id"], "ts": sent["ts"], "args": sent["args"], "sig": sig})
    with pytest.raises(CommandRefused, match="bad signature"):
        checker().check("model", body.encode(), now=NOW, synced=True)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_request_or_refused_never_a_crash(data: bytes) -> None:
    try:
        request = checker(key=None).check("ping", data, now=NOW, synced=True)
    except CommandRefused as exc:
        assert str(exc)  # refused, with a reason
    else:
        assert json.loads(data)["id"] == request.id and isinstance(request.args, dict)


def test_unsigned_stale_and_replayed_commands_are_refused() -> None:
    unsigned = json.dumps({"id": "r-1", "args": {}}).encode()
    with pytest.raises(CommandRefused, match="unsigned"):
        checker().check("ping", unsigned, now=NOW, synced=True)
    assert checker(key=None).check("ping", unsigned, now=NOW, synced=True).id == "r-1"

    old = payload("ping", "r-2", {}, ts="2026-09-21T14:00:00.000Z")  # 800 s before NOW
    with pytest.raises(CommandRefused, match="stale"):
        checker().check("ping", old, now=NOW, synced=True)
    # An unsynchronised clock cannot judge age: the id still guards against replay.
    fresh = checker()
    assert fresh.check("ping", old, now=NOW, synced=False).id == "r-2"
    with pytest.raises(CommandRefused, match="replayed"):
        fresh.check("ping", old, now=NOW, synced=False)
    # Past max_age an id is forgotten, and its timestamp is what refuses the replay.
    with pytest.raises(CommandRefused, match="stale"):
        fresh.check("ping", payload("ping", "r-9", {}), now=NOW + 301, synced=True)


class Sent:
    def __init__(self) -> None:
        self.replies: list[tuple[str, dict[str, Any], Request | None]] = []

    def __call__(self, name: str, data: bytes, request: Request | None) -> None:
        self.replies.append((name, json.loads(data), request))


def commands(handlers: dict[str, Callable[[Any], Any]], sent: Sent) -> Commands:
    return Commands(checker(), handlers, sent, wall=lambda: NOW, synced=lambda: True)


def test_every_readable_command_gets_one_reply() -> None:
    sent = Sent()
    box = commands({"ping": ping, "boom": lambda args: 1 / 0}, sent)
    assert box.handle("ping", payload("ping", "a", {"echo": 5})) == {
        "id": "a", "ok": True, "result": {"pong": True, "echo": 5}}  # fmt: skip
    assert box.handle("nope", payload("nope", "b", {}))["error"].startswith("unknown command")  # type: ignore[index]
    assert box.handle("boom", payload("boom", "c", {}))["error"].startswith("ZeroDivisionError")  # type: ignore[index]
    refused = box.handle("ping", payload("ping", "d", {}, key=b"wrong"))
    assert refused == {"id": "d", "ok": False, "error": "refused: bad signature"}
    assert box.handle("ping", b"\xff garbage") is None and box.unreadable == 1
    assert [(name, body["id"]) for name, body, _ in sent.replies] == [
        ("ping", "a"), ("nope", "b"), ("boom", "c"), ("ping", "d")]  # fmt: skip


def test_the_worker_answers_in_order_and_keeps_the_mqtt5_correlation() -> None:
    sent = Sent()
    box = commands({"ping": ping}, sent)
    box.start()
    try:
        for i in range(5):
            box.received("ping", payload("ping", f"r{i}", {}), "resp/topic", f"c{i}".encode())
    finally:
        box.close()
    assert [body["id"] for _, body, _ in sent.replies] == [f"r{i}" for i in range(5)]
    assert [(r.response_topic, r.correlation) for _, _, r in sent.replies if r] == [
        ("resp/topic", f"c{i}".encode()) for i in range(5)]  # fmt: skip


# -- the model command, on real .onnx files -----------------------------------------------------


@pytest.fixture
def detector(tmp_path: Path) -> OnnxDetector:
    models = tmp_path / "models"
    models.mkdir()
    write_mean_model(models / "live.onnx", gain=1.0, threshold=0.5, name="a", version="1")
    write_mean_model(models / "b.onnx", gain=2.0, threshold=1.5, name="b", version="2")
    flip_weight_byte(models / "b.onnx", models / "bad.onnx", "w")
    shutil.copyfile(models / "b.onnx", tmp_path / "elsewhere.onnx")
    params = OnnxParams(model=str(models / "live.onnx"), window=WINDOW, backend="onnxruntime")
    return OnnxDetector(params)


def run_model(detector: OnnxDetector, **args: Any) -> dict[str, Any]:
    sent = Sent()
    box = commands({"model": model_handler({"m": detector}, post=lambda work: work())}, sent)
    reply = box.handle("model", payload("model", "r", {"detector": "m", **args}))
    assert reply is not None
    return reply


def test_model_commands_reload_shadow_promote_and_refuse(
    detector: OnnxDetector, tmp_path: Path
) -> None:
    assert run_model(detector, action="status")["result"]["version"] == "1"
    refused = run_model(detector, action="reload", path="bad.onnx")["result"]
    assert refused["accepted"] is False and "weights" in refused["reason"]
    assert detector.model_version == "1"
    outside = run_model(detector, action="reload", path=str(tmp_path / "elsewhere.onnx"))
    assert outside["ok"] is False and "path must be in" in outside["error"]
    assert run_model(detector, action="shadow", path="b.onnx")["result"]["accepted"] is True
    assert run_model(detector, action="status")["result"]["shadow"]["candidate"] == "b"
    promoted = run_model(detector, action="promote")
    assert promoted["ok"] is True and promoted["result"]["candidate"] == "b"
    assert detector.model_version == "2"
    assert "no model is running in shadow" in run_model(detector, action="drop")["error"]
    assert run_model(detector, action="explode")["ok"] is False
    assert "onnx detector (m)" in commands_for_unknown(detector)


def commands_for_unknown(detector: OnnxDetector) -> str:
    sent = Sent()
    box = commands({"model": model_handler({"m": detector}, post=lambda work: work())}, sent)
    reply = box.handle("model", payload("model", "x", {"detector": "zz", "action": "status"}))
    assert reply is not None
    return str(reply["error"])


def test_a_command_dated_ahead_is_remembered_until_it_could_no_longer_pass() -> None:
    ahead = "2026-09-21T14:17:30.000Z"  # NOW + 250 s
    guard = checker()
    assert guard.check("ping", payload("ping", "f1", {}, ts=ahead), now=NOW, synced=True).id
    with pytest.raises(CommandRefused, match="replayed"):  # still within its own age
        guard.check("ping", payload("ping", "f1", {}, ts=ahead), now=NOW + 301, synced=True)


def test_a_short_or_empty_command_key_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge.config.device import CommandsConfig

    (tmp_path / "key").write_bytes(b"  \n")
    with pytest.raises(OSError, match="at least 16 bytes"):
        CommandsConfig(enabled=True, key_file=str(tmp_path / "key")).key()
    monkeypatch.setenv("EDGE_KEY", "x" * 16)
    assert CommandsConfig(enabled=True, key_env="EDGE_KEY").key() == b"x" * 16


def test_a_task_the_sampling_loop_never_took_does_not_run_after_the_refusal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edge.uplink.commands as commands_module

    monkeypatch.setattr(commands_module, "ON_SAMPLER_TIMEOUT", 0.01)
    posted: list[Callable[[], None]] = []
    ran: list[int] = []
    with pytest.raises(CommandRefused, match="did not take"):
        commands_module.on_sampler(posted.append, lambda: ran.append(1))
    posted[0]()  # the loop gets to it late
    assert ran == []
