"""Frames on the wire (PROTOCOL.md): ``COBS(body) + b"\\x00"``, where
``body = ver:u8 | type:u8 | seq:u16 LE | payload | crc:u16 LE`` and the CRC is
CRC-16/IBM-3740 over everything before it.

COBS comes from the ``cobs`` package. The CRC is the standard library's
``binascii.crc_hqx`` started at 0xFFFF, which *is* CRC-16/IBM-3740 (poly 0x1021, init
0xFFFF, not reflected, no final xor) computed in C: the ``crc`` package gives the same
value (the tests check it on every frame they make) at about 1 µs a byte in Python, which
would cap the link far below what a co-processor sends.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from enum import IntEnum

from cobs import cobs

VERSION = 1
DELIMITER = b"\x00"
_HEAD = struct.Struct("<BBH")
_CRC = struct.Struct("<H")
HEADER_SIZE = _HEAD.size
OVERHEAD = _HEAD.size + _CRC.size  # a body without payload
SEQ_MODULO = 1 << 16


class FrameType(IntEnum):
    HELLO = 0x01
    READING = 0x02
    SAMPLES = 0x03
    COMMAND = 0x10
    ACK = 0x11
    NACK = 0x12
    TIME = 0x13
    HELLO_REQUEST = 0x14
    LOG = 0x20
    HEARTBEAT = 0x21


class FrameError(ValueError):
    """A frame that is dropped: ``reason`` is what the counters count it under
    (``cobs``, ``crc``, ``length``, ``version``, ``payload``)."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame: its type (a :class:`FrameType` value, or any byte for types this side does
    not know), its sequence number and its payload bytes."""

    type: int
    seq: int
    payload: bytes = b""
    version: int = VERSION


def crc16(data: bytes | bytearray | memoryview) -> int:
    """CRC-16/IBM-3740 (a.k.a. CCITT-FALSE) of ``data``: ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_body(frame: Frame) -> bytes:
    head = _HEAD.pack(frame.version, frame.type, frame.seq % SEQ_MODULO) + frame.payload
    return head + _CRC.pack(crc16(head))


def encode(frame: Frame) -> bytes:
    """The bytes on the wire, delimiter included."""
    stuffed: bytes = cobs.encode(encode_body(frame))
    return stuffed + DELIMITER


def decode_body(body: bytes) -> Frame:
    """The frame in an unstuffed ``body``; FrameError when it is short, its CRC is wrong or
    its version is not this protocol's."""
    if len(body) < OVERHEAD:
        raise FrameError("length", f"{len(body)} bytes, fewer than a header and a CRC")
    (expected,) = _CRC.unpack_from(body, len(body) - _CRC.size)
    if crc16(memoryview(body)[: -_CRC.size]) != expected:
        raise FrameError("crc", f"CRC mismatch in a {len(body)}-byte frame")
    version, kind, seq = _HEAD.unpack_from(body)
    if version != VERSION:
        raise FrameError("version", f"protocol version {version}, expected {VERSION}")
    return Frame(kind, seq, bytes(body[HEADER_SIZE : -_CRC.size]), version)


def decode(stuffed: bytes) -> Frame:
    """The frame in ``stuffed`` (one frame's bytes between delimiters, without them)."""
    try:
        body = cobs.decode(stuffed)
    except cobs.DecodeError as exc:
        raise FrameError("cobs", str(exc)) from None
    return decode_body(body)
