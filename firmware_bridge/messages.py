"""What each frame type carries (PROTOCOL.md), as objects: ``parse(frame)`` and
``message.frame(seq)``. A payload whose length does not fit its type raises
FrameError("length"), one whose content does not (not UTF-8, not a JSON object)
FrameError("payload"); a type this side does not know parses to :class:`Unknown`."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_bridge.protocol import Frame, FrameError, FrameType

_READING = struct.Struct("<BIf")
_SAMPLES = struct.Struct("<BIIH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
U32_MODULO = 1 << 32


@dataclass(frozen=True)
class Channel:
    """A channel the MCU declares in HELLO: its number on the wire, name and unit."""

    id: int
    name: str
    unit: str = ""


@dataclass(frozen=True)
class Hello:
    proto: int
    fw: str
    board: str
    channels: tuple[Channel, ...] = ()
    outputs: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def frame(self, seq: int) -> Frame:
        body = {
            **self.extra,
            "proto": self.proto,
            "fw": self.fw,
            "board": self.board,
            "channels": [{"id": c.id, "name": c.name, "unit": c.unit} for c in self.channels],
            "outputs": list(self.outputs),
        }
        return Frame(FrameType.HELLO, seq, _json(body))

    @classmethod
    def parse(cls, payload: bytes) -> Hello:
        body = _from_json(payload, "HELLO")
        try:
            channels = tuple(
                Channel(int(c["id"]), str(c["name"]), str(c.get("unit", "")))
                for c in body.get("channels", [])
            )
            # An output is its name, or an object with one (room for more fields later).
            outputs = tuple(
                str(o["name"]) if isinstance(o, dict) else str(o) for o in body.get("outputs", [])
            )
            proto = int(body["proto"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FrameError("payload", f"HELLO without a well-formed {exc}") from None
        if any(not 0 <= c.id <= 255 for c in channels):
            raise FrameError("payload", "HELLO: a channel id outside 0..255")
        known = {"proto", "fw", "board", "channels", "outputs"}
        extra = {k: v for k, v in body.items() if k not in known}
        return cls(proto, str(body.get("fw", "")), str(body.get("board", "")), channels,
                   outputs, extra)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reading:
    channel: int
    t_ms: int
    value: float

    def frame(self, seq: int) -> Frame:
        payload = _READING.pack(self.channel, self.t_ms % U32_MODULO, self.value)
        return Frame(FrameType.READING, seq, payload)

    @classmethod
    def parse(cls, payload: bytes) -> Reading:
        _exact(payload, _READING.size, "READING")
        return cls(*_READING.unpack(payload))


@dataclass(frozen=True)
class Samples:
    """A block of ``len(values)`` samples of one channel, ``period_us`` apart, the first at
    ``t0_ms``: an accelerometer's burst at kHz rates in one frame."""

    channel: int
    t0_ms: int
    period_us: int
    values: np.ndarray  # float32

    def frame(self, seq: int) -> Frame:
        values = np.asarray(self.values, dtype="<f4")
        head = _SAMPLES.pack(self.channel, self.t0_ms % U32_MODULO, self.period_us, len(values))
        return Frame(FrameType.SAMPLES, seq, head + values.tobytes())

    @classmethod
    def parse(cls, payload: bytes) -> Samples:
        if len(payload) < _SAMPLES.size:
            raise FrameError("length", f"SAMPLES of {len(payload)} bytes, shorter than its head")
        channel, t0_ms, period_us, n = _SAMPLES.unpack_from(payload)
        _exact(payload, _SAMPLES.size + 4 * n, f"SAMPLES of {n}")
        values = np.frombuffer(payload, dtype="<f4", count=n, offset=_SAMPLES.size)
        return cls(channel, t0_ms, period_us, values)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Samples)
            and (self.channel, self.t0_ms, self.period_us)
            == (other.channel, other.t0_ms, other.period_us)
            and np.array_equal(self.values, other.values, equal_nan=True)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int  # of the frame answered

    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.ACK, seq, _U16.pack(self.seq))

    @classmethod
    def parse(cls, payload: bytes) -> Ack:
        _exact(payload, _U16.size, "ACK")
        return cls(_U16.unpack(payload)[0])


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int
    reason: str = ""

    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.NACK, seq, _U16.pack(self.seq) + self.reason.encode())

    @classmethod
    def parse(cls, payload: bytes) -> Nack:
        if len(payload) < _U16.size:
            raise FrameError("length", f"NACK of {len(payload)} bytes")
        return cls(_U16.unpack_from(payload)[0], _text(payload[_U16.size :], "NACK"))


@dataclass(frozen=True, slots=True)
class Log:
    text: str

    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.LOG, seq, self.text.encode())

    @classmethod
    def parse(cls, payload: bytes) -> Log:
        return cls(_text(payload, "LOG"))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    uptime_ms: int

    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.HEARTBEAT, seq, _U32.pack(self.uptime_ms % U32_MODULO))

    @classmethod
    def parse(cls, payload: bytes) -> Heartbeat:
        _exact(payload, _U32.size, "HEARTBEAT")
        return cls(_U32.unpack(payload)[0])


@dataclass(frozen=True)
class Command:
    body: dict[str, Any]

    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.COMMAND, seq, _json(self.body))

    @classmethod
    def parse(cls, payload: bytes) -> Command:
        return cls(_from_json(payload, "COMMAND"))


@dataclass(frozen=True, slots=True)
class Time:
    host_ms: int

    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.TIME, seq, _U64.pack(self.host_ms))

    @classmethod
    def parse(cls, payload: bytes) -> Time:
        _exact(payload, _U64.size, "TIME")
        return cls(_U64.unpack(payload)[0])


@dataclass(frozen=True, slots=True)
class HelloRequest:
    def frame(self, seq: int) -> Frame:
        return Frame(FrameType.HELLO_REQUEST, seq)

    @classmethod
    def parse(cls, payload: bytes) -> HelloRequest:
        _exact(payload, 0, "HELLO_REQUEST")
        return cls()


@dataclass(frozen=True, slots=True)
class Unknown:
    """A frame of a type this side does not know: ignored (and counted) by the link."""

    type: int
    payload: bytes


Message = Hello | Reading | Samples | Ack | Nack | Log | Heartbeat | Command | Time | HelloRequest
_PARSERS: dict[int, Any] = {
    FrameType.HELLO: Hello,
    FrameType.READING: Reading,
    FrameType.SAMPLES: Samples,
    FrameType.ACK: Ack,
    FrameType.NACK: Nack,
    FrameType.LOG: Log,
    FrameType.HEARTBEAT: Heartbeat,
    FrameType.COMMAND: Command,
    FrameType.TIME: Time,
    FrameType.HELLO_REQUEST: HelloRequest,
}


def parse(frame: Frame) -> Message | Unknown:
    """The message ``frame`` carries; FrameError("length") when its payload does not fit."""
    parser = _PARSERS.get(frame.type)
    if parser is None:
        return Unknown(frame.type, frame.payload)
    message: Message = parser.parse(frame.payload)
    return message


def _exact(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise FrameError("length", f"{what}: {len(payload)} bytes of payload, expected {size}")


def _text(payload: bytes, what: str) -> str:
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise FrameError("payload", f"{what}: not UTF-8") from None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _from_json(payload: bytes, what: str) -> dict[str, Any]:
    try:
        body = json.loads(_text(payload, what))
    except (ValueError, RecursionError):
        raise FrameError("payload", f"{what}: not JSON") from None
    if not isinstance(body, dict):
        raise FrameError("payload", f"{what}: not a JSON object")
    return body
