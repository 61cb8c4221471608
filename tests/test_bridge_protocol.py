"""firmware_bridge's wire format: every message survives encode → decode, no input makes the
decoder raise, and frames are found again in any garbage that a delimiter ends; the CRC is
the one the ``crc`` package calls CRC-16/IBM-3740."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from crc import Calculator, Crc16
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.messages import (
    Ack,
    Channel,
    Command,
    Heartbeat,
    Hello,
    HelloRequest,
    Log,
    Nack,
    Reading,
    Samples,
    Time,
    Unknown,
    parse,
)
from firmware_bridge.protocol import (
    Frame,
    FrameError,
    FrameType,
    crc16,
    decode,
    decode_body,
    encode,
    encode_body,
)
from firmware_bridge.stream import FrameDecoder

REFERENCE_CRC = Calculator(Crc16.IBM_3740)  # type: ignore[attr-defined]

u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
f32 = st.floats(width=32, allow_nan=False)
text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12)

messages = st.one_of(
    st.builds(Hello, st.just(1), text, text,
              st.lists(st.builds(Channel, u8, names, text), max_size=4).map(tuple),
              st.lists(names, max_size=3).map(tuple)),
    st.builds(Reading, u8, u32, f32),
    st.builds(Samples, u8, u32, u32,
              st.lists(f32, max_size=64).map(lambda v: np.array(v, dtype=np.float32))),
    st.builds(Ack, u16),
    st.builds(Nack, u16, text),
    st.builds(Log, text),
    st.builds(Heartbeat, u32),
    st.builds(Command, st.dictionaries(names, st.booleans() | st.integers() | text, max_size=3)),
    st.builds(Time, st.integers(0, 2**64 - 1)),
    st.just(HelloRequest()),
)  # fmt: skip


def test_the_crc_is_crc16_ibm_3740_by_its_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1 == REFERENCE_CRC.checksum(b"123456789")


@given(st.binary(max_size=300))
def test_the_crc_agrees_with_the_crc_package(data: bytes) -> None:
    assert crc16(data) == REFERENCE_CRC.checksum(data)


@given(messages, u16)
def test_every_message_survives_encode_then_decode(message: object, seq: int) -> None:
    frame = message.frame(seq)  # type: ignore[attr-defined]
    wire = encode(frame)
    assert wire.endswith(b"\x00") and b"\x00" not in wire[:-1]
    back = decode(wire[:-1])
    assert back == frame
    assert parse(back) == message


@given(messages, u16)
def test_a_body_is_version_type_seq_payload_crc(message: object, seq: int) -> None:
    frame = message.frame(seq)  # type: ignore[attr-defined]
    body = encode_body(frame)
    assert body[0] == 1 and body[1] == frame.type
    assert int.from_bytes(body[2:4], "little") == seq
    assert body[4:-2] == frame.payload
    assert int.from_bytes(body[-2:], "little") == REFERENCE_CRC.checksum(body[:-2])


@given(st.binary(max_size=2000), st.integers(1, 64))
def test_no_bytes_make_the_decoder_raise(data: bytes, piece: int) -> None:
    decoder = FrameDecoder(max_frame=256)
    for at in range(0, len(data), piece):
        decoder.feed(data[at : at + piece])
    counted = decoder.counters
    assert counted.bytes == len(data)


@given(
    st.lists(st.tuples(st.binary(max_size=60), messages), min_size=1, max_size=8),
    st.binary(max_size=60),
    st.integers(1, 50),
)
def test_frames_after_any_garbage_are_all_found(
    sent: list[tuple[bytes, object]], tail: bytes, piece: int
) -> None:
    """Garbage, then a delimiter (a zero in the noise, or the one ending a frame before),
    then a frame: the frame is found, in order, whatever the reads' sizes."""
    stream = b""
    frames = []
    for seq, (noise, message) in enumerate(sent):
        frame = message.frame(seq)  # type: ignore[attr-defined]
        frames.append(frame.seq)
        stream += noise + b"\x00" + encode(frame)
    stream += tail
    decoder = FrameDecoder()
    got = []
    for at in range(0, len(stream), piece):
        got += decoder.feed(stream[at : at + piece])
    assert [r.seq for r in got if r.seq in frames][-len(frames) :] == frames
    assert [r.message for r in got][-len(frames) :] == [m for _, m in sent]


@given(st.binary(min_size=1, max_size=100).filter(lambda b: b"\x00" not in b), messages)
def test_a_frame_run_into_by_noise_without_a_zero_is_found_at_the_end(
    noise: bytes, message: object
) -> None:
    frame = message.frame(7)  # type: ignore[attr-defined]
    wire = encode(frame)
    if len(wire) > 300:
        return  # beyond the resync window: lost with the noise, by design
    decoder = FrameDecoder()
    got = decoder.feed(noise + wire)
    assert [r.message for r in got] == [message]


def test_each_kind_of_bad_frame_is_counted_and_skipped() -> None:
    good = encode(Reading(0, 1000, 1.5).frame(1))
    body = bytearray(encode_body(Reading(0, 1000, 1.5).frame(2)))
    body[6] ^= 0x40  # a bit flipped in the payload: the CRC no longer matches
    from cobs import cobs

    bad_crc = cobs.encode(bytes(body)) + b"\x00"
    wrong_version = cobs.encode(encode_body(Frame(FrameType.READING, 3, b"x" * 9, 2))) + b"\x00"
    short_reading = encode(Frame(FrameType.READING, 4, b"\x00\x01"))
    unknown = encode(Frame(0x7E, 5, b"future"))
    bad_cobs = b"\x05\x01\x00"
    not_json = encode(Frame(FrameType.HELLO, 6, b"{nope"))
    decoder = FrameDecoder()
    got = decoder.feed(
        bad_crc + wrong_version + short_reading + unknown + bad_cobs + not_json + good
    )
    assert [r.message for r in got] == [Reading(0, 1000, 1.5)]
    counted = decoder.counters
    assert (counted.crc, counted.version, counted.length, counted.unknown, counted.cobs,
            counted.payload, counted.frames) == (1, 1, 1, 1, 1, 1, 1)  # fmt: skip


def test_noise_longer_than_any_frame_is_dropped_until_the_next_delimiter() -> None:
    decoder = FrameDecoder(max_frame=64)
    got = decoder.feed(b"\x01" * 100)
    got += decoder.feed(b"\x01" * 100 + b"\x00" + encode(Heartbeat(5).frame(9)))
    assert [r.message for r in got] == [Heartbeat(5)] and decoder.counters.overrun == 1


def test_an_unknown_type_parses_to_unknown_and_payloads_that_do_not_fit_are_refused() -> None:
    assert parse(Frame(0x55, 0, b"abc")) == Unknown(0x55, b"abc")
    for frame in (Frame(FrameType.ACK, 0, b"\x01"), Frame(FrameType.TIME, 0, b"\x00" * 7),
                  Frame(FrameType.SAMPLES, 0, bytes(11) + b"\x02\x00" + bytes(4))):  # fmt: skip
        with pytest.raises(FrameError) as raised:
            parse(frame)
        assert raised.value.reason == "length"
    with pytest.raises(FrameError, match="crc"):
        decode_body(b"\x01\x02\x00\x00\xff\xff")


# --- PROTOCOL.md's worked examples, byte for byte, through the host's own code --------------


def documented() -> list[dict[str, Any]]:
    from tests.test_firmware import DOCUMENTED

    return list(DOCUMENTED.values())


@pytest.mark.parametrize("vector", documented(), ids=lambda v: v["name"])
def test_protocol_md_examples_are_what_the_host_encodes_and_decodes(
    vector: dict[str, Any],
) -> None:
    version, kind, seq = struct.unpack("<BBH", vector["header"])
    frame = Frame(kind, seq, vector["payload"], version)
    assert FrameType(kind).name == vector["name"]
    assert encode_body(frame)[-2:] == vector["crc"]
    assert encode(frame) == vector["wire"]
    assert decode(vector["wire"][:-1]) == frame
    message = parse(frame)
    if isinstance(message, Hello):  # JSON: the same object, not necessarily the same bytes
        assert len(message.channels) == 1 and len(message.outputs) == 1 and message.proto == 1
    elif isinstance(message, Command):
        assert message.body == {"set": {"relay": True}}
    else:
        assert message.frame(seq) == frame  # type: ignore[union-attr]
    decoder = FrameDecoder()
    got = [r for byte in vector["wire"] for r in decoder.feed(bytes([byte]))]
    assert [(r.seq, r.message) for r in got] == [(seq, message)]
