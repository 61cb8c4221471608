"""Frames on the wire (firmware_bridge/PROTOCOL.md), for the co-processor's firmware.

A frame is ``COBS(body) + b"\\x00"`` with ``body = ver:u8 | type:u8 | seq:u16 LE |
payload | crc:u16 LE`` and the CRC (CRC-16/IBM-3740) over everything before it.

This file runs unchanged under MicroPython and CPython: no typing, no dataclasses, only the
``struct`` formats MicroPython has, bytes and bytearray only. The host's own library
(firmware_bridge/protocol.py) uses the ``cobs`` package instead; the tests check both
against the same vectors.
"""

import struct

VERSION = 1
DELIMITER = b"\x00"

# Frame types. MCU -> host:
HELLO = 0x01
READING = 0x02
SAMPLES = 0x03
ACK = 0x11
NACK = 0x12
LOG = 0x20
HEARTBEAT = 0x21
# Host -> MCU:
COMMAND = 0x10
TIME = 0x13
HELLO_REQUEST = 0x14

HEADER_SIZE = 4  # ver, type, seq
CRC_SIZE = 2
MIN_BODY = HEADER_SIZE + CRC_SIZE


class FrameError(ValueError):
    """A frame that is dropped. ``reason`` is the counter it is counted under: ``cobs``,
    ``crc``, ``length`` or ``version``."""

    def __init__(self, reason, detail):
        super().__init__(reason + ": " + detail)
        self.reason = reason


# --- CRC-16/IBM-3740 (CCITT-FALSE): poly 0x1021, init 0xFFFF, not reflected, xorout 0.
# Table-driven, one table lookup a byte; crc16(b"123456789") == 0x29B1.


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data, crc=0xFFFF):
    """CRC-16/IBM-3740 of ``data``; pass the previous result as ``crc`` to continue it."""
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


# --- COBS (consistent overhead byte stuffing): the encoded bytes hold no zero, so a zero
# byte can delimit frames. Each block is a code byte N then N-1 data bytes; a code below
# 0xFF stands for "these bytes, then a zero" (the last zero is implied and dropped).


def cobs_encode(data):
    """``data`` stuffed: no zero byte in the result (the delimiter is not added)."""
    out = bytearray(b"\x01")
    code_at = 0  # where the current block's code byte sits
    code = 1
    last = len(data) - 1
    for i in range(len(data)):
        byte = data[i]
        if byte == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(1)
            code = 1
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:  # a full block: 254 data bytes and no implied zero
            out[code_at] = code
            if i == last:
                return bytes(out)  # no empty block after a full one at the end
            code_at = len(out)
            out.append(1)
            code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """The bytes stuffed in ``data`` (one frame, without its delimiter); FrameError when
    ``data`` is not valid COBS."""
    data = bytes(data)
    out = bytearray()
    i = 0
    end = len(data)
    while i < end:
        code = data[i]
        if code == 0:
            raise FrameError("cobs", "zero byte inside a frame")
        stop = i + code
        if stop > end:
            raise FrameError("cobs", "block runs past the end of the frame")
        block = data[i + 1 : stop]
        if block.find(b"\x00") >= 0:
            raise FrameError("cobs", "zero byte inside a frame")
        out.extend(block)
        i = stop
        if code < 0xFF and i < end:
            out.append(0)
    return bytes(out)


# --- Frames: build one for the wire, parse one from between two delimiters.


def body(ftype, seq, payload=b""):
    """The unstuffed body: header, payload and CRC."""
    head = struct.pack("<BBH", VERSION, ftype, seq & 0xFFFF) + bytes(payload)
    return head + struct.pack("<H", crc16(head))


def build(ftype, seq, payload=b""):
    """The bytes on the wire for one frame, delimiter included."""
    return cobs_encode(body(ftype, seq, payload)) + DELIMITER


def parse(stuffed):
    """``(type, seq, payload)`` of the frame in ``stuffed`` (the bytes between two
    delimiters); FrameError when it must be dropped."""
    data = cobs_decode(stuffed)
    if len(data) < MIN_BODY:
        raise FrameError("length", "shorter than a header and a CRC")
    (expected,) = struct.unpack("<H", data[-CRC_SIZE:])
    if crc16(data[:-CRC_SIZE]) != expected:
        raise FrameError("crc", "CRC mismatch")
    version, ftype, seq = struct.unpack("<BBH", data[:HEADER_SIZE])
    if version != VERSION:
        raise FrameError("version", "protocol version " + str(version))
    return ftype, seq, data[HEADER_SIZE:-CRC_SIZE]


class Decoder:
    """Turns a byte stream into frames. ``feed(data)`` returns the ``(type, seq, payload)``
    of every frame completed by ``data``; a bad frame is dropped and counted in
    ``dropped[reason]``, and decoding starts again after the next zero byte. A frame longer
    than ``max_size`` stuffed bytes is dropped (``length``) without being held. An empty
    frame (two zeros in a row) is not a frame and is skipped silently."""

    def __init__(self, max_size=1024):
        self.max_size = max_size
        self.frames = 0
        self.dropped = {"cobs": 0, "crc": 0, "length": 0, "version": 0}
        self._buffer = bytearray()
        self._overflow = False  # the frame being received is too long: skip to its end

    def feed(self, data):
        frames = []
        data = bytes(data)
        start = 0
        while start < len(data):
            zero = data.find(DELIMITER, start)
            if zero < 0:
                self._hold(data[start:])
                break
            self._hold(data[start:zero])
            self._complete(frames)
            start = zero + 1
        return frames

    def _hold(self, chunk):
        if self._overflow:
            return
        if len(self._buffer) + len(chunk) > self.max_size:
            self._overflow = True
            self._buffer = bytearray()
            return
        self._buffer.extend(chunk)

    def _complete(self, frames):
        stuffed = self._buffer
        self._buffer = bytearray()
        if self._overflow:
            self._overflow = False
            self.dropped["length"] += 1
            return
        if not stuffed:
            return
        try:
            frames.append(parse(stuffed))
        except FrameError as exc:
            self.dropped[exc.reason] += 1
            return
        self.frames += 1


# --- Payloads the firmware sends (all little-endian).


def reading_payload(channel, t_ms, value):
    """READING: channel:u8 | t_ms:u32 | value:f32."""
    return struct.pack("<BIf", channel, t_ms & 0xFFFFFFFF, value)


def samples_payload(channel, t0_ms, period_us, values):
    """SAMPLES: channel:u8 | t0_ms:u32 | period_us:u32 | n:u16 | n x f32."""
    head = struct.pack("<BIIH", channel, t0_ms & 0xFFFFFFFF, period_us, len(values))
    return head + b"".join([struct.pack("<f", value) for value in values])


def answer_payload(seq, reason=None):
    """ACK (``reason`` None) or NACK: the seq answered, u16, then a NACK's UTF-8 reason."""
    answered = struct.pack("<H", seq & 0xFFFF)
    return answered if reason is None else answered + reason.encode("utf-8")


def heartbeat_payload(uptime_ms):
    """HEARTBEAT: uptime_ms:u32."""
    return struct.pack("<I", uptime_ms & 0xFFFFFFFF)
