"""Fuzz: hostile command payloads and MQTT 5 properties through the command path and
``edge command``'s arguments.

Every case is a refusal or an answer, never an exception; at most one reply; a reply to
anything unauthenticated goes only to the device's own reply topic.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edge.bench.mosquitto import free_port
from edge.uplink.commands import (
    NAME,
    Checker,
    Commands,
    Policy,
    Request,
    response_topic_problem,
    sign,
)
from tests.oracles import has_traceback, run_cli

pytestmark = pytest.mark.fuzz

KEY = b"f" * 32
DEVICE = "fuzz-01"
NOW = 1_790_000_000.0
TS = "2026-09-21T14:13:20.000Z"

nasty_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "\ud800",
            "\udfff",
            "\x00",
            "\x01",
            "\x7f",
            "\ufdd0",
            "\uffff",
            "\u202e",
            "\u2028",
            "\n",
            "\r\n",
            "$SYS/x",
            "#",
            "+",
            "é" * 64,
            "0" * 64,
        ]
    ),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)
numbers = st.one_of(st.integers(-(10**40), 10**40), st.floats())
leaves = st.one_of(st.none(), st.booleans(), numbers, nasty_text)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(nasty_text, inner, max_size=4),
    max_leaves=12,
)
fields = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(nasty_text, values),
        "ts": st.one_of(st.just(TS), nasty_text, values),
        "args": st.one_of(st.dictionaries(nasty_text, values, max_size=4), values),
        "sig": st.one_of(nasty_text, st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)),
        "extra": values,
    },
)
names = st.one_of(st.sampled_from(["ping", "status", "model", "nope"]), nasty_text)
response_topics = st.none() | nasty_text | st.sampled_from(["answers/me", "victim/#", "$SYS/x"])
correlations = st.none() | st.binary(max_size=32)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """JSON built from hostile pieces, sometimes not valid UTF-8, sometimes nested deep."""
    body = draw(fields)
    ascii_only = draw(st.booleans())
    text = json.dumps(body, ensure_ascii=ascii_only)
    if draw(st.booleans()):  # deep nesting spliced in where a value goes
        depth = draw(st.integers(1, 3000))
        opener = draw(st.sampled_from(["[", '{"a":']))
        closer = "]" if opener == "[" else "}"
        key = draw(st.sampled_from(["id", "args", "ts", "sig"]))
        text = text.replace("{", f'{{"{key}":{opener * depth}1{closer * depth},', 1)
    if draw(st.booleans()):  # a huge number
        text = text.replace("{", '{"n":' + "9" * draw(st.integers(1, 5000)) + ",", 1)
    return text.encode("utf-8", "surrogatepass")


class Sent:
    def __init__(self) -> None:
        self.replies: list[tuple[str, dict[str, Any], Request | None]] = []

    def __call__(self, name: str, data: bytes, request: Request | None) -> None:
        self.replies.append((name, json.loads(data), request))


def commands(sent: Sent) -> Commands:
    checker = Checker(DEVICE, Policy(KEY, max_age=300.0))
    handlers = {"ping": lambda args: {"pong": True}, "status": lambda args: {}}
    return Commands(checker, handlers, sent, wall=lambda: NOW, synced=lambda: True)


def assert_contained(sent: Sent, *, authenticated: bool) -> None:
    assert len(sent.replies) <= 1
    for name, body, request in sent.replies:
        assert NAME.fullmatch(name)  # the reply goes under {prefix}/{device}/reply/{name}
        assert isinstance(body.get("id"), str) and isinstance(body.get("ok"), bool)
        topic = request.response_topic if request else None
        if topic is not None:
            assert authenticated and request is not None and request.authenticated
            assert response_topic_problem(topic) is None


@given(name=names, data=st.binary(max_size=2000), topic=response_topics, corr=correlations)
def test_fuzz_commands_any_bytes(
    name: str, data: bytes, topic: str | None, corr: bytes | None
) -> None:
    sent = Sent()
    commands(sent).handle(name, data, topic, corr)
    assert_contained(sent, authenticated=False)


@given(name=names, data=payloads(), topic=response_topics, corr=correlations)
def test_fuzz_commands_hostile_json(
    name: str, data: bytes, topic: str | None, corr: bytes | None
) -> None:
    sent = Sent()
    box = commands(sent)
    box.handle(name, data, topic, corr)
    box.received(name, data, topic, corr)  # the network thread's side: size check, queue
    assert_contained(sent, authenticated=False)


@given(
    name=names,
    request_id=nasty_text,
    args=st.dictionaries(nasty_text, values, max_size=4),
    topic=response_topics,
    corr=correlations,
)
def test_fuzz_commands_signed_hostile_content(
    name: str, request_id: str, args: dict[str, Any], topic: str | None, corr: bytes | None
) -> None:
    try:
        sig = sign(KEY, DEVICE, name, request_id, TS, args)
    except (UnicodeEncodeError, ValueError):
        sig = "0" * 64  # not signable (a lone surrogate): sent anyway
    body = {"id": request_id, "ts": TS, "args": args, "sig": sig}
    sent = Sent()
    commands(sent).handle(name, json.dumps(body).encode(), topic, corr)
    assert_contained(sent, authenticated=True)


KEYS = Path(tempfile.mkdtemp(prefix="fuzz-command-keys-"))
(KEYS / "good.key").write_text("ab" * 32 + "\n")
(KEYS / "good.key").chmod(0o600)
(KEYS / "open.key").write_text("ab" * 32)
(KEYS / "binary.key").write_bytes(bytes(range(32)))
(KEYS / "binary.key").chmod(0o600)
CLOSED = f"mqtt://127.0.0.1:{free_port()}"  # nothing listens: a connection is refused at once


@given(
    broker=st.one_of(st.sampled_from([CLOSED, "mqtt://", "http://x", "mqtt://u:p@h"]), nasty_text),
    device=st.one_of(st.just(DEVICE), nasty_text),
    key=st.sampled_from(["good.key", "open.key", "binary.key", "missing.key"]),
    name=names,
    extra=st.lists(
        st.one_of(
            nasty_text,
            st.sampled_from(["--arg", "--timeout", "--json", "--prefix", "0.01", "nan", "-1"]),
        ),
        max_size=6,
    ),
)
# An argument that reads "Traceback" is echoed in argparse's usage error: not a traceback.
@example(broker=CLOSED, device=DEVICE, key="good.key", name="ping", extra=["", "Traceback"])
def test_fuzz_commands_cli_arguments(
    broker: str, device: str, key: str, name: str, extra: list[str]
) -> None:
    argv = ["command", "--broker", broker, "--device", device, "--key-file", str(KEYS / key),
            "--timeout", "0.05", *extra, "--", name]  # fmt: skip
    code, printed = run_cli(argv)
    assert code in (0, 1, 2)
    assert not has_traceback(printed)
