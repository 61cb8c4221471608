"""The co-processor's reference firmware (firmware_bridge/firmware/), run under CPython with
the ``machine`` shim of tests/firmware_shim.

- its framing, byte for byte, against the worked examples of firmware_bridge/PROTOCOL.md
  (parsed from the document) and against an oracle made of the ``cobs`` and ``crc`` packages;
- properties: encode then decode is the identity, the stream decoder never raises and finds
  exactly the oracle's frames, frames hidden in garbage come through;
- the firmware's loop on a virtual clock: rates, commands, answers, hostile input;
- the whole firmware on one end of a real pty, pyserial on the other, as the Pi would see it.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import select
import struct
import subprocess
import sys
import threading
import time
import tty
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import crc
import pytest
import serial
from cobs import cobs
from hypothesis import example, given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = ROOT / "firmware_bridge" / "firmware"
SHIM_DIR = Path(__file__).resolve().parent / "firmware_shim"
PROTOCOL = (ROOT / "firmware_bridge" / "PROTOCOL.md").read_text(encoding="utf-8")


def load_firmware() -> dict[str, types.ModuleType]:
    """Import the firmware's files as the board does (top-level ``framing``, ``config``,
    ``main``, ``machine``), then take those generic names out of sys.modules again."""
    names = ("machine", "framing", "config", "main")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    sys.path[:0] = [str(SHIM_DIR), str(FIRMWARE_DIR)]
    try:
        return {name: importlib.import_module(name) for name in names}
    finally:
        del sys.path[:2]
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


_modules = load_firmware()
framing: Any = _modules["framing"]
firmware: Any = _modules["main"]
config: Any = _modules["config"]
machine: Any = _modules["machine"]
assert Path(firmware.__file__).parent == FIRMWARE_DIR

Frame = tuple[int, int, bytes]

# --- the oracle: the cobs and crc packages, and the spec read literally

CRC = crc.Calculator(crc.Crc16.IBM_3740)


def oracle_build(ftype: int, seq: int, payload: bytes) -> bytes:
    head = struct.pack("<BBH", 1, ftype, seq) + payload
    return bytes(cobs.encode(head + CRC.checksum(head).to_bytes(2, "little"))) + b"\x00"


def oracle_frames(stream: bytes, max_size: int = 1024) -> list[Frame]:
    """Every good frame in ``stream``: split at zeros (what follows the last zero is not
    a frame yet), drop what is not COBS, short, of another version or of a wrong CRC."""
    found = []
    for chunk in stream.split(b"\x00")[:-1]:
        if not chunk or len(chunk) > max_size:
            continue
        try:
            body = bytes(cobs.decode(chunk))
        except cobs.DecodeError:
            continue
        if len(body) < 6 or body[0] != 1:
            continue
        if CRC.checksum(body[:-2]) != int.from_bytes(body[-2:], "little"):
            continue
        found.append((body[1], int.from_bytes(body[2:4], "little"), body[4:-2]))
    return found


def test_the_oracle_is_crc16_ibm_3740() -> None:
    assert CRC.checksum(b"123456789") == 0x29B1
    assert framing.crc16(b"123456789") == 0x29B1
    assert framing.crc16(b"") == 0xFFFF
    assert framing.crc16(b"6789", framing.crc16(b"12345")) == 0x29B1  # continued
    assert "0x29B1" in PROTOCOL


# --- 1. known vectors: built by hand from the spec here, written out in PROTOCOL.md


def f32(hexbytes: str) -> bytes:
    return bytes.fromhex(hexbytes)


HELLO_JSON = (
    b'{"proto":1,"fw":"1.0.0","board":"rp2040-pico","channels":[{"id":0,"name":"adc0",'
    b'"unit":"V"}],"outputs":[{"name":"relay","type":"bool"}]}'
)
# name -> (type, seq, payload), every multi-byte field spelt out little-endian by hand.
VECTORS: dict[str, Frame] = {
    "HELLO_REQUEST": (0x14, 0, b""),
    "HELLO": (0x01, 0, HELLO_JSON),
    # channel 2 | t_ms 1000 = 0x3e8 | 1.5 = 0x3fc00000
    "READING": (0x02, 0x0102, bytes([2, 0xE8, 0x03, 0, 0]) + f32("0000c03f")),
    # channel 0 | t0_ms 2000 = 0x7d0 | period_us 1000 | n 3 | 0.0, 1.0, -2.5
    "SAMPLES": (
        0x03,
        3,
        bytes([0, 0xD0, 0x07, 0, 0, 0xE8, 0x03, 0, 0, 3, 0])
        + f32("00000000")
        + f32("0000803f")
        + f32("000020c0"),
    ),
    "COMMAND": (0x10, 7, b'{"set": {"relay": true}}'),
    "ACK": (0x11, 0x0103, bytes([7, 0])),
    "NACK": (0x12, 0x0104, bytes([8, 0]) + b'unknown output "pump"'),
    # host_ms 1,700,000,000,000 = 0x18bcfe56800
    "TIME": (0x13, 9, bytes([0x00, 0x68, 0xE5, 0xCF, 0x8B, 0x01, 0, 0])),
    "LOG": (0x20, 5, b"booted"),
    # uptime_ms 3,600,000 = 0x36ee80; seq 65535, the last before the wrap
    "HEARTBEAT": (0x21, 0xFFFF, bytes([0x80, 0xEE, 0x36, 0x00])),
}


def documented_vectors() -> dict[str, dict[str, Any]]:
    """The ```frame blocks of PROTOCOL.md: ``key: value`` lines, hex fields continued on
    indented lines."""
    blocks = re.findall(r"^```frame\n(.*?)^```", PROTOCOL, flags=re.S | re.M)
    vectors = {}
    for block in blocks:
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith(" ") and key:
                fields[key] += " " + line.strip()
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        parsed: dict[str, Any] = dict(fields)
        for name in ("header", "payload", "crc", "wire"):
            parsed[name] = bytes.fromhex(fields[name])
        vectors[fields["name"]] = parsed
    return vectors


DOCUMENTED = documented_vectors()


def test_protocol_md_shows_exactly_the_known_vectors() -> None:
    assert list(DOCUMENTED) == list(VECTORS)


def test_the_hand_built_payloads_are_the_spec_fields() -> None:
    """The hand-written bytes above are what the spec's field lists pack to, and what the
    firmware's payload functions make."""
    assert VECTORS["READING"][2] == struct.pack("<BIf", 2, 1000, 1.5)
    assert VECTORS["READING"][2] == framing.reading_payload(2, 1000, 1.5)
    samples = struct.pack("<BIIH3f", 0, 2000, 1000, 3, 0.0, 1.0, -2.5)
    assert VECTORS["SAMPLES"][2] == samples == framing.samples_payload(0, 2000, 1000, [0, 1, -2.5])
    assert VECTORS["ACK"][2] == struct.pack("<H", 7) == framing.answer_payload(7)
    nack = framing.answer_payload(8, 'unknown output "pump"')
    assert VECTORS["NACK"][2] == nack
    assert VECTORS["TIME"][2] == struct.pack("<Q", 1_700_000_000_000)
    assert VECTORS["HEARTBEAT"][2] == struct.pack("<I", 3_600_000)
    assert VECTORS["HEARTBEAT"][2] == framing.heartbeat_payload(3_600_000)
    assert json.loads(VECTORS["HELLO"][2])["channels"] == [{"id": 0, "name": "adc0", "unit": "V"}]


@pytest.mark.parametrize("name", list(VECTORS))
def test_a_known_vector_byte_for_byte(name: str) -> None:
    ftype, seq, payload = VECTORS[name]
    doc = DOCUMENTED[name]
    assert doc["header"] == bytes([1, ftype, seq & 0xFF, seq >> 8])
    assert doc["payload"] == payload
    head = doc["header"] + payload
    assert doc["crc"] == framing.crc16(head).to_bytes(2, "little")
    assert doc["crc"] == CRC.checksum(head).to_bytes(2, "little")
    body = head + doc["crc"]
    assert framing.body(ftype, seq, payload) == body
    assert doc["wire"] == framing.cobs_encode(body) + b"\x00" == cobs.encode(body) + b"\x00"
    assert doc["wire"] == framing.build(ftype, seq, payload) == oracle_build(ftype, seq, payload)
    assert b"\x00" not in doc["wire"][:-1]
    assert framing.parse(doc["wire"][:-1]) == (ftype, seq, payload)
    decoder = framing.Decoder()
    frames = [frame for byte in doc["wire"] for frame in decoder.feed(bytes([byte]))]
    assert frames == [(ftype, seq, payload)]


# The COBS examples everyone quotes (they are in the COBS paper's successors and on
# Wikipedia), data -> encoded, delimiter not included.
COBS_VECTORS = [
    ("", "01"),
    ("00", "01 01"),
    ("00 00", "01 01 01"),
    ("00 11 00", "01 02 11 01"),
    ("11 22 00 33", "03 11 22 02 33"),
    ("11 22 33 44", "05 11 22 33 44"),
    ("11 00 00 00", "02 11 01 01 01"),
    (bytes(range(1, 255)).hex(), "ff" + bytes(range(1, 255)).hex()),
    (bytes(range(0, 255)).hex(), "01 ff" + bytes(range(1, 255)).hex()),
    (bytes(range(1, 256)).hex(), "ff" + bytes(range(1, 255)).hex() + "02 ff"),
    (bytes(range(2, 256)).hex() + "00", "ff" + bytes(range(2, 256)).hex() + "01 01"),
    (bytes(range(3, 256)).hex() + "00 01", "fe" + bytes(range(3, 256)).hex() + "02 01"),
]


@pytest.mark.parametrize(("data", "stuffed"), COBS_VECTORS, ids=range(len(COBS_VECTORS)))
def test_cobs_known_vectors(data: str, stuffed: str) -> None:
    raw, encoded = bytes.fromhex(data), bytes.fromhex(stuffed)
    assert framing.cobs_encode(raw) == encoded == cobs.encode(raw)
    assert framing.cobs_decode(encoded) == raw == cobs.decode(encoded)


@pytest.mark.parametrize(
    ("stuffed", "reason"),
    [
        (b"\x03\x01", "cobs"),  # the block runs past the end
        (b"\x02\x00", "cobs"),  # a zero inside
        (cobs.encode(bytes([1, 0x14, 0, 0])), "length"),  # no room for a CRC
        (cobs.encode(bytes([1, 0x14, 0, 0, 0x12, 0x34])), "crc"),
    ],
    ids=["cobs-short-block", "cobs-zero", "length", "crc"],
)
def test_a_bad_frame_is_refused_with_its_reason(stuffed: bytes, reason: str) -> None:
    with pytest.raises(framing.FrameError) as raised:
        framing.parse(stuffed)
    assert raised.value.reason == reason
    assert isinstance(raised.value, ValueError)


def test_another_version_is_refused() -> None:
    head = struct.pack("<BBH", 2, 0x14, 0)
    stuffed = cobs.encode(head + CRC.checksum(head).to_bytes(2, "little"))
    with pytest.raises(framing.FrameError) as raised:
        framing.parse(stuffed)
    assert raised.value.reason == "version"


# --- 2. properties

frame_types = st.integers(0, 255)
seqs = st.integers(0, 0xFFFF)
payloads = st.binary(max_size=300)


@given(frame_types, seqs, payloads)
def test_build_then_parse_is_the_identity(ftype: int, seq: int, payload: bytes) -> None:
    wire = framing.build(ftype, seq, payload)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    assert framing.parse(wire[:-1]) == (ftype, seq, payload)


@given(frame_types, seqs, payloads)
def test_framing_agrees_with_the_oracle(ftype: int, seq: int, payload: bytes) -> None:
    assert framing.crc16(payload) == CRC.checksum(payload)
    assert framing.build(ftype, seq, payload) == oracle_build(ftype, seq, payload)
    assert oracle_frames(framing.build(ftype, seq, payload)) == [(ftype, seq, payload)]


@pytest.mark.fuzz
@given(st.binary(max_size=600))
@example(b"\x01" * 254)
@example(b"\xff" + b"\x01" * 254)
def test_cobs_agrees_with_the_oracle_on_any_bytes(data: bytes) -> None:
    assert framing.cobs_encode(data) == cobs.encode(data)
    try:
        expected: bytes | None = cobs.decode(data)
    except cobs.DecodeError:
        expected = None
    try:
        got: bytes | None = framing.cobs_decode(data)
    except framing.FrameError as exc:
        assert exc.reason == "cobs"
        got = None
    assert got == expected


def feed_in_pieces(decoder: Any, stream: bytes, cuts: list[int]) -> list[Frame]:
    frames: list[Frame] = []
    start = 0
    for cut in [*sorted({min(cut, len(stream)) for cut in cuts}), len(stream)]:
        frames += decoder.feed(stream[start:cut])
        start = cut
    return frames


@pytest.mark.fuzz
@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=20))
@example(b"\x00" * 10, [])
@example(b"\x01" * 2000 + b"\x00", [1000])  # longer than max_size: dropped, not held
def test_the_decoder_never_raises_and_finds_the_oracles_frames(
    stream: bytes, cuts: list[int]
) -> None:
    decoder = framing.Decoder(max_size=1024)
    frames = feed_in_pieces(decoder, stream, cuts)
    assert frames == oracle_frames(stream, max_size=1024)
    delimited = [chunk for chunk in stream.split(b"\x00")[:-1] if chunk]
    assert decoder.frames + sum(decoder.dropped.values()) == len(delimited)


garbage = st.binary(max_size=80)
hidden = st.lists(st.tuples(garbage, st.booleans(), frame_types, seqs, payloads), max_size=8)


@pytest.mark.fuzz
@given(hidden, st.lists(st.integers(0, 3000), max_size=10))
def test_frames_hidden_in_garbage_come_through(
    parts: list[tuple[bytes, bool, int, int, bytes]], cuts: list[int]
) -> None:
    """A frame is sure to come through when the bytes before it end in a zero (or there
    are none): garbage without a zero at its end swallows the start of the next frame,
    and decoding starts again at the next zero, the one ending that frame."""
    stream = b""
    sure = []
    for noise, delimited, ftype, seq, payload in parts:
        stream += noise + (b"\x00" if delimited else b"")
        if not stream or stream.endswith(b"\x00"):
            sure.append((ftype, seq, payload))
        stream += framing.build(ftype, seq, payload)
    frames = feed_in_pieces(framing.Decoder(), stream, cuts)
    assert frames == oracle_frames(stream)
    remaining = iter(frames)
    assert all(frame in remaining for frame in sure)  # in order, each once


# --- 3. the firmware's loop on a virtual clock


class Bench:
    """The firmware on a fresh shim board, driven one step at a time by a virtual clock.
    The host's side writes with the oracle and reads what the firmware wrote."""

    def __init__(self, settings: Any = config) -> None:
        machine.reset()
        self.now = 0  # ms
        self.micros = 0
        self.inbox = bytearray()
        self.wire = bytearray()
        self.seq = 0
        self.firmware = firmware.Firmware(
            self._read, self.wire.extend, machine, lambda: self.now,
            ticks_us=self._ticks_us, config=settings,
        )  # fmt: skip

    def _read(self) -> bytes:
        data = bytes(self.inbox)
        self.inbox.clear()
        return data

    def _ticks_us(self) -> int:
        self.micros += 50  # each look at the clock takes 50 us of virtual time
        return self.micros

    def send(self, ftype: int, payload: bytes = b"") -> int:
        seq = self.seq
        self.inbox += oracle_build(ftype, seq, payload)
        self.seq += 1
        return seq

    def run(self, ms: int, step: int = 10) -> list[Frame]:
        """Steps over ``ms`` of virtual time; the frames sent meanwhile."""
        for _ in range(max(1, ms // step)):
            self.now += step
            self.firmware.step()
        return self.take()

    def take(self) -> list[Frame]:
        frames = oracle_frames(bytes(self.wire))
        assert bytes(self.wire).endswith(b"\x00") or not self.wire  # whole frames only
        self.wire.clear()
        return frames


def of_type(frames: list[Frame], ftype: int) -> list[Frame]:
    return [frame for frame in frames if frame[0] == ftype]


def of_types(frames: list[Frame], *ftypes: int) -> list[Frame]:
    return [frame for frame in frames if frame[0] in ftypes]


def answer(frames: list[Frame], seq: int) -> tuple[int, str]:
    """The one ACK or NACK answering ``seq``: its type and reason."""
    answered = struct.pack("<H", seq)
    answers = of_types(frames, 0x11, 0x12)
    found = [(f[0], f[2][2:].decode()) for f in answers if f[2][:2] == answered]
    assert len(found) == 1, frames
    return found[0]


def settings_like_config() -> types.SimpleNamespace:
    """A copy of config.py's settings, to change some of them."""
    return types.SimpleNamespace(**{k: getattr(config, k) for k in dir(config) if k.isupper()})


def test_boot_sends_a_delimiter_then_hello_with_the_channels_and_outputs() -> None:
    bench = Bench()
    bench.firmware.boot()
    assert bench.wire.startswith(b"\x00")
    [(ftype, seq, payload)] = bench.take()
    assert (ftype, seq) == (0x01, 0)
    hello = json.loads(payload)
    assert hello["proto"] == 1 and hello["fw"] == config.FIRMWARE_VERSION
    assert hello["board"] == config.BOARD
    assert hello["channels"] == [
        {"id": c["id"], "name": c["name"], "unit": c["unit"]} for c in config.CHANNELS
    ]
    assert hello["outputs"] == [{"name": "relay", "type": "bool"}]
    assert machine.PINS[16].value() == 0 and machine.PINS[16].mode == machine.Pin.OUT


def test_readings_and_heartbeats_come_at_their_rates_with_their_values() -> None:
    bench = Bench()
    machine.ANALOG.update({26: 0, 27: 32768, 28: 65535, 4: round(0.706 / 3.3 * 65535)})
    pulses = machine.PINS[15]
    frames: list[Frame] = []
    for _ in range(10):  # 10 s: 50 pulses each second
        pulses.pulse(50)
        frames += bench.run(1000)
    readings: dict[int, list[tuple[int, float]]] = {}
    for _, _, payload in of_type(frames, 0x02):
        channel, t_ms, value = struct.unpack("<BIf", payload)
        readings.setdefault(channel, []).append((t_ms, value))
    assert {c: len(r) for c, r in readings.items()} == {0: 10, 1: 10, 2: 10, 3: 10, 4: 2}
    assert [t for t, _ in readings[0]] == list(range(1000, 10_001, 1000))
    assert [v for _, v in readings[0]] == [0.0] * 10
    assert [v for _, v in readings[1]] == [pytest.approx(32768 * 3.3 / 65535, rel=1e-6)] * 10
    assert [v for _, v in readings[2]] == [pytest.approx(3.3, rel=1e-6)] * 10
    assert [v for _, v in readings[3]] == [pytest.approx(50.0)] * 10  # Hz
    assert [v for _, v in readings[4]] == [pytest.approx(27.0, abs=0.05)] * 2  # degC
    beats = [struct.unpack("<I", p)[0] for _, _, p in of_type(frames, 0x21)]
    assert beats == list(range(1000, 10_001, 1000))
    assert [seq for _, seq, _ in frames] == list(range(len(frames)))  # one count, no gap


def test_a_late_loop_skips_missed_readings_instead_of_bunching_them() -> None:
    bench = Bench()
    frames = bench.run(3500, step=3500)  # one step after 3.5 s
    assert len(of_type(frames, 0x21)) == 1
    assert len(of_type(bench.run(400), 0x21)) == 0  # next one due at 4.5 s
    assert len(of_type(bench.run(600), 0x21)) == 1


def test_samples_blocks_of_a_fast_channel() -> None:
    settings = settings_like_config()
    settings.SAMPLES = {"channel": 1, "period_us": 500, "n": 16, "every_ms": 250}
    bench = Bench(settings)
    machine.ANALOG[27] = 65535
    blocks = of_type(bench.run(1000), 0x03)
    assert len(blocks) == 4
    for i, (_, _, payload) in enumerate(blocks):
        channel, t0, period, n = struct.unpack_from("<BIIH", payload)
        values = struct.unpack_from(f"<{n}f", payload, 11)
        assert (channel, t0, period, n, len(payload)) == (1, 250 * (i + 1), 500, 16, 11 + 64)
        assert values == (pytest.approx(3.3),) * 16
    assert bench.micros >= 4 * 15 * 500  # each block waited for its samples' times


def test_samples_must_name_an_adc_channel() -> None:
    settings = settings_like_config()
    settings.SAMPLES = {"channel": 3, "period_us": 500, "n": 16, "every_ms": 250}
    with pytest.raises(ValueError, match="not an adc channel"):
        Bench(settings)


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ({"id": 9, "name": "x", "kind": "adc", "pin": 26, "unit": "V", "period_ms": 1}, ""),
        ({"id": 9, "name": "x", "kind": "thermo", "unit": "C", "period_ms": 1}, "kind is one of"),
        ({"id": 0, "name": "x", "kind": "adc", "pin": 26, "unit": "V", "period_ms": 1}, "id is"),
        ({"id": 256, "name": "x", "kind": "adc", "pin": 26, "unit": "V", "period_ms": 1}, "id is"),
    ],
    ids=["fine", "kind", "taken-id", "big-id"],
)
def test_a_bad_channel_in_config_is_named(channel: dict[str, Any], message: str) -> None:
    settings = settings_like_config()
    settings.CHANNELS = [*config.CHANNELS, channel]
    if not message:
        Bench(settings)
        return
    with pytest.raises(ValueError, match=f"config.CHANNELS x: {message}"):
        Bench(settings)


def test_commands_set_the_relay_and_are_answered() -> None:
    bench = Bench()
    relay = machine.PINS[16]
    on = bench.send(0x10, b'{"set": {"relay": true}}')
    assert answer(bench.run(10), on) == (0x11, "")
    assert relay.value() == 1
    off = bench.send(0x10, b'{"set": {"relay": false}}')
    assert answer(bench.run(10), off) == (0x11, "")
    assert relay.states == [0, 1, 0]

    refused = {
        b'{"set": {"pump": true}}': 'unknown output "pump"',
        b'{"set": {"relay": true, "pump": true}}': 'unknown output "pump"',  # nothing done
        b'{"set": {"relay": 1}}': "bad value for relay: expected true or false",
        b'{"set": {"relay": "on"}}': "bad value for relay: expected true or false",
        b'{"set": {}}': '"set" takes an object of output: true|false',
        b'{"set": ["relay"]}': '"set" takes an object of output: true|false',
        b'{"get": "relay"}': 'unknown command: expected {"set": {output: true|false}}',
        b"[1, 2]": 'unknown command: expected {"set": {output: true|false}}',
        b'{"set": {"relay": tru': "bad JSON",
        b"\xff\xfe": "bad JSON",
        b"[" * 400: "bad JSON",
    }
    for payload, reason in refused.items():
        seq = bench.send(0x10, payload)
        assert answer(bench.run(10), seq) == (0x12, reason), payload
    assert relay.states == [0, 1, 0]


def test_an_active_low_output_is_driven_low_for_true() -> None:
    settings = settings_like_config()
    settings.OUTPUTS = [{"name": "valve", "pin": 17, "active_high": False}]
    bench = Bench(settings)
    assert machine.PINS[17].value() == 1  # off
    seq = bench.send(0x10, b'{"set": {"valve": true}}')
    assert answer(bench.run(10), seq) == (0x11, "")
    assert machine.PINS[17].value() == 0


def test_time_is_recorded_and_acknowledged_hello_request_answered() -> None:
    bench = Bench()
    bench.run(500)
    seq = bench.send(0x13, struct.pack("<Q", 1_700_000_000_000))
    assert answer(bench.run(10), seq) == (0x11, "")
    assert bench.firmware.host_time == (1_700_000_000_000, 510)
    short = bench.send(0x13, b"\x01\x02")
    assert answer(bench.run(10), short) == (0x12, "TIME takes 8 bytes, got 2")
    bench.send(0x14)
    hellos = of_type(bench.run(10), 0x01)
    assert len(hellos) == 1 and json.loads(hellos[0][2])["proto"] == 1


def test_unknown_types_are_counted_and_bad_frames_dropped_and_counted() -> None:
    bench = Bench()
    for ftype in (0x00, 0x02, 0x11, 0x7F, 0xFF):
        bench.send(ftype, b"x")
    good = framing.build(0x14, 0, b"")
    bench.inbox += good[:5] + bytes([good[5] ^ 0x40]) + good[6:]  # a bit of the CRC flipped
    bench.inbox += b"\x03\x01\x00"  # bad COBS
    bench.inbox += b"\x02\x01\x00"  # too short
    assert bench.run(10) == []
    assert bench.firmware.unknown == 5
    assert bench.firmware.decoder.dropped == {"cobs": 1, "crc": 1, "length": 1, "version": 0}


def test_the_sequence_number_wraps() -> None:
    bench = Bench()
    bench.firmware.seq = 0xFFFF
    bench.send(0x14)
    bench.send(0x14)
    assert [seq for _, seq, _ in bench.run(10)] == [0xFFFF, 0]


def test_a_step_that_fails_is_logged_and_the_loop_goes_on() -> None:
    """serve() turns an exception in a step into a LOG frame and keeps answering."""
    bench = Bench()
    broken = iter([OSError("the line hiccuped")])

    def read() -> bytes:
        for error in broken:
            raise error
        return bench._read()

    bench.firmware._read = read
    bench.send(0x14)
    steps = iter(range(3))
    bench.firmware.serve(lambda: next(steps, None) is not None)
    frames = bench.take()
    assert [f[0] for f in frames] == [0x01, 0x20, 0x01]  # boot HELLO, LOG, answer HELLO
    assert frames[1][2] == b"error: OSError('the line hiccuped')"
    assert bench.firmware.errors == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
commands = st.one_of(
    st.binary(max_size=60),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["relay", "pump", ""]), json_values, max_size=3).map(
        lambda changes: json.dumps({"set": changes}).encode()
    ),
)


@pytest.mark.fuzz
@given(st.lists(st.one_of(st.binary(max_size=64), commands.map(lambda c: (0x10, c))), max_size=8))
def test_hostile_input_never_stops_the_firmware(inputs: list[bytes | tuple[int, bytes]]) -> None:
    """Garbage and hostile commands: no step raises, every well-formed COMMAND gets exactly
    one answer (unless it is too long to take: 512 bytes on the wire), and afterwards the
    firmware still answers a HELLO_REQUEST."""
    bench = Bench()
    asked = []
    for item in inputs:
        if isinstance(item, bytes):
            bench.inbox += item + b"\x00"
            continue
        seq = bench.send(*item)
        if len(oracle_build(item[0], seq, item[1])) - 1 <= 512:
            asked.append(seq)
    frames = bench.run(20)
    for seq in asked:
        ftype, _ = answer(frames, seq)
        assert ftype in (0x11, 0x12)
    bench.send(0x14)
    assert of_type(bench.run(10), 0x01)


# --- 4. the firmware on a real pty, pyserial on the Pi's end


class Link:
    """The host's end of the line: pyserial on the pty, frames decoded by the oracle."""

    def __init__(self, port: serial.Serial) -> None:
        self.port = port
        self.seq = 0
        self.received: list[Frame] = []
        self._pending = b""

    def send(self, ftype: int, payload: bytes = b"") -> int:
        seq = self.seq
        self.port.write(oracle_build(ftype, seq, payload))
        self.seq += 1
        return seq

    def expect(self, match: Callable[[Frame], bool], since: int = 0, timeout: float = 5.0) -> Frame:
        """The first frame received (from index ``since`` on) that matches, waiting for it
        up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.received[since:]:
                if match(frame):
                    return frame
            since = len(self.received)
            assert time.monotonic() < deadline, f"no such frame in {self.received}"
            self._pending += self.port.read(max(1, self.port.in_waiting))  # within its timeout
            complete, _, self._pending = self._pending.rpartition(b"\x00")
            if complete:
                self.received += oracle_frames(complete + b"\x00")


ANALOG = {26: 13107, 27: 32768, 28: 52428, 4: 14000}  # raw levels: 0.66, 1.65, 2.64 V
MICROPYTHON = Path(sys.executable).parent / "micropython"  # the dev extra's unix port


class PtyBoard:
    """A pty, its slave end opened by pyserial as the Pi opens /dev/ttyACM0; the firmware
    on the master end, the Pico's side."""

    pins: dict[int, Any] | None = None  # the shim's pins, when the test can see them

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.port = serial.Serial(os.ttyname(self.slave), baudrate=115200, timeout=0.05)
        self.link = Link(self.port)

    def close(self) -> None:
        self.port.close()
        os.close(self.master)
        os.close(self.slave)

    def check(self) -> None:
        """After the test: the firmware ran throughout and reported no error."""
        assert not [f for f in self.link.received if f[0] == 0x20 and f[2].startswith(b"error")]


class FirmwareLoop:
    """The firmware's own loop (Firmware.serve) under CPython, in a thread, on a pty's
    master end (the Pico's side), with the shim's ADCs at ``ANALOG``."""

    def __init__(self, master: int) -> None:
        self.master = master
        machine.reset()
        machine.ANALOG.update(ANALOG)
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self.firmware = firmware.Firmware(
            self._read, self._write, machine, lambda: int(time.monotonic() * 1000)
        )
        self.thread = threading.Thread(target=self._serve, name="firmware", daemon=True)
        self.thread.start()

    def _read(self) -> bytes:
        readable, _, _ = select.select([self.master], [], [], 0)
        return os.read(self.master, 4096) if readable else b""

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.master, view) :]

    def _idle(self) -> bool:
        # Wait for input or 5 ms, whichever first: the loop's pace, as sleep_ms(1) on a Pico.
        select.select([self.master], [], [], 0.005)
        return not self.stop.is_set()

    def _serve(self) -> None:
        try:
            self.firmware.serve(self._idle)
        except BaseException as exc:
            self.failures.append(exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def check(self) -> None:
        """It ran until stopped, and nothing in it failed."""
        assert not self.thread.is_alive()
        assert self.failures == []
        assert self.firmware.errors == 0


class ThreadBoard(PtyBoard):
    """The firmware's loop under CPython, in a thread (:class:`FirmwareLoop`)."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = FirmwareLoop(self.master)
        self.firmware = self.loop.firmware
        self.pins = machine.PINS

    def close(self) -> None:
        self.loop.close()
        super().close()

    def check(self) -> None:
        super().check()
        self.loop.check()


class MicroPythonBoard(PtyBoard):
    """The shipped firmware as the board starts it (main.run(), the USB link: stdin and
    stdout, select.poll, kbd_intr, time.ticks_ms) in MicroPython's unix port, in a process
    whose stdin and stdout are the pty's master end."""

    def __init__(self) -> None:
        if not MICROPYTHON.exists():
            pytest.skip("no MicroPython unix port (the dev extra has it on x86_64 Linux)")
        super().__init__()
        script = f"import machine\nmachine.ANALOG.update({ANALOG!r})\nimport main\nmain.run()\n"
        self.process = subprocess.Popen(
            [str(MICROPYTHON), "-c", script],
            stdin=self.master,
            stdout=self.master,
            stderr=subprocess.PIPE,
            env={**os.environ, "MICROPYPATH": f"{SHIM_DIR}:{FIRMWARE_DIR}"},
        )
        self.running_at_end: bool | None = None

    def close(self) -> None:
        self.running_at_end = self.process.poll() is None
        self.process.terminate()
        _, self.stderr = self.process.communicate(timeout=10)
        super().close()

    def check(self) -> None:
        super().check()
        assert self.running_at_end, self.stderr.decode(errors="replace")
        assert self.stderr == b""


@pytest.fixture(params=[ThreadBoard, MicroPythonBoard], ids=["cpython", "micropython"])
def board(request: pytest.FixtureRequest) -> Iterator[PtyBoard]:
    board: PtyBoard = request.param()
    try:
        yield board
    finally:
        board.close()
    board.check()


def of(ftype: int) -> Callable[[Frame], bool]:
    return lambda frame: frame[0] == ftype


def answering(seq: int) -> Callable[[Frame], bool]:
    return lambda frame: frame[0] in (0x11, 0x12) and frame[2][:2] == struct.pack("<H", seq)


def relay_is(board: PtyBoard, level: int) -> bool:
    """The relay pin's level, where the test can see the board's pins (not in the
    MicroPython process: there the ACK is all the test sees)."""
    return board.pins is None or board.pins[16].value() == level


def test_on_a_pty_the_firmware_says_hello_and_answers_commands(board: PtyBoard) -> None:
    link = board.link
    boot = link.expect(of(0x01))
    assert boot[1] == 0 and link.received[0] == boot  # HELLO is the first frame at boot

    mark = len(link.received)
    link.send(0x14)
    hello = json.loads(link.expect(of(0x01), since=mark)[2])
    names = [channel["name"] for channel in hello["channels"]]
    assert names == ["adc0", "adc1", "adc2", "pulses", "temperature"]
    assert hello["outputs"] == [{"name": "relay", "type": "bool"}]
    assert (hello["proto"], hello["fw"], hello["board"]) == (1, "1.0.0", "rp2040-pico")

    assert relay_is(board, 0)
    seq = link.send(0x10, b'{"set": {"relay": true}}')
    assert link.expect(answering(seq))[0] == 0x11
    assert relay_is(board, 1)

    seq = link.send(0x10, b'{"set": {"pump": true}}')
    nack = link.expect(answering(seq))
    assert nack[0] == 0x12 and nack[2][2:] == b'unknown output "pump"'

    seq = link.send(0x10, b'{"set": {"relay": "yes"}}')
    nack = link.expect(answering(seq))
    assert nack[0] == 0x12 and nack[2][2:] == b"bad value for relay: expected true or false"

    seq = link.send(0x13, struct.pack("<Q", 1_700_000_000_000))
    assert link.expect(answering(seq))[0] == 0x11
    assert relay_is(board, 1)


def test_on_a_pty_readings_and_heartbeats_arrive(board: PtyBoard) -> None:
    link = board.link
    started = time.monotonic()
    beat = link.expect(of(0x21), timeout=5)
    uptime = struct.unpack("<I", beat[2])[0]
    assert 1000 <= uptime <= (time.monotonic() - started) * 1000 + 500
    values: dict[int, float] = {}
    for channel in (0, 1, 2, 3):
        reading = link.expect(lambda f, c=channel: f[0] == 0x02 and f[2][0] == c, timeout=5)
        _, t_ms, values[channel] = struct.unpack("<BIf", reading[2])
        assert t_ms >= 1000
    assert values[0] == pytest.approx(0.66, rel=1e-4)  # 13107 of 65535 at 3.3 V
    assert values[1] == pytest.approx(1.65, rel=1e-4)
    assert values[2] == pytest.approx(2.64, rel=1e-4)
    assert values[3] == 0.0  # no pulses
    seqs = [seq for _, seq, _ in link.received]
    assert seqs == list(range(len(seqs)))  # nothing lost on the way


def test_on_a_pty_garbage_does_not_stop_the_firmware(board: PtyBoard) -> None:
    link = board.link
    link.expect(of(0x01))
    noise = random.Random(15).randbytes(4000)
    board.port.write(noise)
    corrupt = bytearray(oracle_build(0x10, link.seq, b'{"set": {"relay": true}}'))
    corrupt[10] ^= 0x01  # inside the JSON: the CRC no longer holds
    corrupted_seq = link.seq
    link.seq += 1
    board.port.write(b"\x00" + bytes(corrupt))
    mark = len(link.received)
    link.send(0x14)
    link.expect(of(0x01), since=mark)
    if isinstance(board, ThreadBoard):
        dropped = board.firmware.decoder.dropped
        assert dropped["crc"] >= 1 and sum(dropped.values()) >= 2
    assert not any(answering(corrupted_seq)(f) for f in link.received)
    assert relay_is(board, 0)  # the corrupted command did nothing
    seq = link.send(0x10, b'{"set": {"relay": true}}')
    assert link.expect(answering(seq))[0] == 0x11
    assert relay_is(board, 1)


def test_under_micropython_framing_makes_the_documented_vectors() -> None:
    """framing.py in MicroPython's own interpreter builds and parses every worked example
    of PROTOCOL.md byte for byte, and its decoder finds them in a stream."""
    if not MICROPYTHON.exists():
        pytest.skip("no MicroPython unix port (the dev extra has it on x86_64 Linux)")
    script = "\n".join(
        [
            "import framing",
            f"vectors = {list(VECTORS.values())!r}",
            "print(hex(framing.crc16(b'123456789')))",
            "for t, s, p in vectors:",
            "    w = framing.build(t, s, p)",
            "    assert framing.parse(w[:-1]) == (t, s, p)",
            "    print(w.hex())",
            "d = framing.Decoder()",
            "found = d.feed(b'junk\\x00' + b''.join([framing.build(*v) for v in vectors]))",
            "print(found == [tuple(v) for v in vectors], d.dropped['cobs'] + d.dropped['crc'])",
        ]
    )
    done = subprocess.run(
        [str(MICROPYTHON), "-c", script],
        env={**os.environ, "MICROPYPATH": str(FIRMWARE_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "0x29b1"
    assert [bytes.fromhex(line) for line in lines[1:-2]] == [v["wire"] for v in DOCUMENTED.values()]
    assert lines[-2:] == ["True", "1"]
