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
from edge.uplink.commands import (
    Checker,
    CommandRefused,
    Commands,
    Policy,
    Request,
    sign,
    signing_text,
    signing_text_v1,
)
from models.onnx_detector import OnnxDetector, OnnxParams
from tests.models.test_onnx_reload import WINDOW, flip_weight_byte, write_mean_model
from tests.waiting import wait_until

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
BAD_ID = ("Cc", "Cf", "Cs", "Zl", "Zp", "Cn")  # control, format, separators, unassigned
arg_maps = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


def payload(name: str, request_id: str, args: dict[str, Any], *, ts: str = TS,
            key: bytes = KEY, device: str = DEVICE) -> bytes:  # fmt: skip
    sig = sign(key, device, name, request_id, ts, args)
    return json.dumps({"id": request_id, "ts": ts, "args": args, "sig": sig}).encode()


def checker(key: bytes | None = KEY) -> Checker:
    return Checker(DEVICE, Policy(key, max_age=300.0))


@given(
    name=st.sampled_from(["ping", "model", "status"]),
    request_id=st.text(st.characters(exclude_categories=BAD_ID), min_size=1, max_size=20),
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


# -- hostile payloads: each a refusal, never a dead worker ------------------------------------

HOSTILE = {
    "nested JSON": b"[" * 2000 + b"]" * 2000,
    "nested id": b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "lone surrogate in id": b'{"id": "\\ud800", "ts": "2026-09-21T14:13:20.000Z", "sig": "00"}',
    "non-ASCII sig": json.dumps({"id": "s-1", "ts": TS, "args": {}, "sig": "\u00e9" * 64}).encode(),
    "huge number": b'{"id": "n-1", "ts": "' + TS.encode() + b'", "args": {"x": 1' + b"0" * 5000
    + b"}}",
    "surrogate in args": b'{"id": "a-1", "ts": "' + TS.encode() + b'", "args": {"\\udfff": 1},'
    b' "sig": "' + b"0" * 64 + b'"}',
}  # fmt: skip


@pytest.mark.parametrize("what", sorted(HOSTILE))
def test_a_hostile_payload_is_refused_and_the_worker_goes_on(what: str) -> None:
    sent = Sent()
    box = commands({"ping": ping}, sent)
    with pytest.raises(CommandRefused):
        checker().check("ping", HOSTILE[what], now=NOW, synced=True)
    box.start()
    try:
        box.received("ping", HOSTILE[what])
        box.received("ping", payload("ping", "after", {}))
    finally:
        box.close()
    assert box._thread is None and box.restarts == 0
    assert [body["id"] for _, body, _ in sent.replies][-1:] == ["after"]
    assert sent.replies[-1][1]["ok"] is True


@pytest.mark.parametrize("bad", ["a\x01b", "\x7f", "line\nfeed", "\ufdd0", "x\uffff", "\u2028",
                                 "\u202eevil", "\ud800"])  # fmt: skip
def test_control_and_non_characters_in_an_id_are_refused(bad: str) -> None:
    body = {"id": bad, "ts": TS, "args": {}, "sig": "0" * 64}  # the id is refused first
    raw = json.dumps(body).encode()  # ASCII escapes: even a lone surrogate travels
    with pytest.raises(CommandRefused, match="id must not contain"):
        checker().check("ping", raw, now=NOW, synced=True)


def test_signed_fields_cannot_shift_into_each_other() -> None:
    # Version 1 joined fields with newlines: an id ending in "\n<ts>" signed the same text as
    # the id alone with that ts. Version 2 prefixes each field with its length.
    shifted = ("r-1\n2026-09-21T14:13:20.000Z", "x")
    plain = ("r-1", "2026-09-21T14:13:20.000Z\nx")
    assert signing_text_v1(DEVICE, "ping", *shifted, {}) == signing_text_v1(
        DEVICE, "ping", *plain, {}
    )
    assert sign(KEY, DEVICE, "ping", *shifted, {}) != sign(KEY, DEVICE, "ping", *plain, {})
    assert signing_text(DEVICE, "ping", "r-1", TS, {"a": 1}) == (
        b"edgeline-cmd-v2\n8:press-07\n4:ping\n3:r-1\n24:" + TS.encode() + b'\n7:{"a":1}\n'
    )


def test_refusals_are_rate_limited_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    sent = Sent()
    now = [0.0]
    box = Commands(checker(), {"ping": ping}, sent, wall=lambda: NOW, monotonic=lambda: now[0])
    with caplog.at_level("WARNING", logger="edge.uplink.commands"):
        for i in range(100):
            box.handle("ping", payload("ping", f"f{i}", {}, key=b"forged" * 6))
    assert len(sent.replies) == 10 and box.refused == 100 and box.suppressed == 90
    assert len(caplog.records) == 10
    now[0] = 2.0  # two tokens back: the next line says how many were not shown
    box.handle("ping", payload("ping", "later", {}, key=b"forged" * 6))
    assert "90 more refusals not shown" in caplog.records[-1].getMessage()


def test_a_log_line_cannot_be_forged_by_a_command_name_or_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = commands({"ping": ping}, Sent())
    forged = "x\nWARNING edge.uplink.commands: command ping accepted"
    with caplog.at_level("WARNING", logger="edge.uplink.commands"):
        box.handle(forged, b'{"id": "r", "' + b"k" * 5000 + b'": 1}')
        box.handle("ping", b'{"id": "r", "' + b"\n" * 50 + b'": 1}')
    for record in caplog.records:
        line = record.getMessage()
        assert "\n" not in line and len(line) < 400


def test_an_unauthenticated_request_never_chooses_where_its_reply_goes() -> None:
    sent = Sent()
    open_box = Commands(Checker(DEVICE, Policy(None)), {"ping": ping}, sent, wall=lambda: NOW)
    open_box.handle("ping", b'{"id": "u-1"}', "elsewhere/victim", b"c")
    signed = commands({"ping": ping}, sent)
    signed.handle("ping", payload("ping", "f-1", {}, key=b"forged" * 6), "elsewhere/victim", b"c")
    signed.handle("ping", payload("ping", "ok-1", {}), "answers/me", b"c")
    signed.handle("ping", payload("ping", "ok-2", {}), "answers/#", b"c")  # not publishable
    routes = {body["id"]: (r.response_topic if r else None) for _, body, r in sent.replies}
    assert routes == {"u-1": None, "f-1": None, "ok-1": "answers/me", "ok-2": None}


def test_an_oversized_payload_is_dropped_before_it_is_queued() -> None:
    sent = Sent()
    box = commands({"ping": ping}, sent)
    box.received("ping", b"{" + b" " * 40_000_000 + b"}")  # the worker is not even running
    assert box._queue.qsize() == 0 and box.oversized == 1 and sent.replies == []


def test_a_worker_that_dies_anyway_is_replaced_and_reported() -> None:
    sent = Sent()
    deaths: list[str] = []

    def fatal(args: Any) -> Any:
        raise SystemExit("handler called exit")

    box = Commands(checker(), {"ping": ping, "exit": fatal}, sent, wall=lambda: NOW,
                   died=deaths.append)  # fmt: skip
    box.start()
    try:
        box.received("exit", payload("exit", "x-1", {}))
        box.received("ping", payload("ping", "p-1", {}))
        wait_until(lambda: len(sent.replies) == 1, timeout=10)
    finally:
        box.close()
    assert deaths == ["SystemExit: handler called exit"] and box.restarts == 1
    assert [body["id"] for _, body, _ in sent.replies] == ["p-1"]


# -- the command key file -------------------------------------------------------------------


def test_a_binary_key_file_is_refused_not_silently_shortened(tmp_path: Path) -> None:
    from edge.config.device import CommandsConfig

    path = tmp_path / "command.key"
    path.write_bytes(b" " + bytes(range(100, 130)) + b"\n")  # whitespace at both ends
    path.chmod(0o600)
    with pytest.raises(OSError, match="expected hex text") as caught:
        CommandsConfig(enabled=True, key_file=str(path)).key()
    assert bytes(range(100, 130)).hex() not in str(caught.value)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    from edge.config.device import CommandsConfig

    path = tmp_path / "command.key"
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o640)
    with pytest.raises(OSError, match=f"run: chmod 600 {path}"):
        CommandsConfig(enabled=True, key_file=str(path)).key()
