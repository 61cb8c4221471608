"""A stream of bytes from a serial port, cut into messages: whatever arrives (partial reads,
garbage, line noise, a frame cut short by a reset) is survived, and every well-formed frame
after the next zero byte is found again."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

from firmware_bridge.messages import Message, Unknown, parse
from firmware_bridge.protocol import DELIMITER, OVERHEAD, Frame, FrameError, decode

# The largest stuffed frame accepted: a SAMPLES block of 16,384 floats and its overhead.
MAX_FRAME = 16_384 * 4 + 64
# Line noise with no zero in it runs into the next frame. When a chunk fails, a frame at its
# end is looked for, within this many bytes (a READING is 15 on the wire): bounded work, and
# a false find needs a COBS encoding, a CRC, the version and an exact length to all agree.
RESYNC_WINDOW = 320


class Received(NamedTuple):
    """A message and the sequence number of the frame it came in (ACK/NACK name it)."""

    seq: int
    message: Message


@dataclass
class Counters:
    """What a decoder has seen: frames taken, and each kind of frame dropped."""

    frames: int = 0
    bytes: int = 0
    cobs: int = 0
    crc: int = 0
    length: int = 0
    version: int = 0
    payload: int = 0
    unknown: int = 0  # well-formed frames of a type this side does not know (ignored)
    resynced: int = 0  # frames found at the end of a chunk that began with noise
    overrun: int = 0  # runs of bytes longer than any frame, without a delimiter

    @property
    def dropped(self) -> int:
        return self.cobs + self.crc + self.length + self.version + self.payload + self.overrun

    def as_json(self) -> dict[str, int]:
        return {**asdict(self), "dropped": self.dropped}


class FrameDecoder:
    """``feed(data)`` returns the messages completed by ``data``, in order, each with its
    frame's sequence number. Never raises on input: a bad frame is counted in
    :attr:`counters` and skipped."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self.counters = Counters()
        self._pending = bytearray()
        self._overrun = False  # discarding until the next delimiter

    def feed(self, data: bytes) -> list[Received]:
        self.counters.bytes += len(data)
        *complete, rest = bytes(data).split(DELIMITER)
        messages: list[Received] = []
        for chunk in complete:
            if self._overrun:
                self._overrun = False  # this delimiter ends the run: in step again
                continue
            if self._pending:
                chunk = bytes(self._pending) + chunk
                self._pending.clear()
            if chunk and len(chunk) <= self.max_frame:
                self._take(chunk, messages)
            elif chunk:
                self.counters.overrun += 1
        if not self._overrun:
            self._pending += rest
            if len(self._pending) > self.max_frame:
                self._pending.clear()
                self._overrun = True
                self.counters.overrun += 1
        return messages

    def reset(self) -> None:
        """Forget a partial frame (the port was reopened: what follows is a new stream)."""
        self._pending.clear()
        self._overrun = False

    def _take(self, chunk: bytes, messages: list[Received]) -> None:
        try:
            frame = decode(chunk)
            message = parse(frame)
        except FrameError as exc:
            setattr(self.counters, exc.reason, getattr(self.counters, exc.reason) + 1)
            found = self._resync(chunk)
            if found is None:
                return
            frame, message = found
            self.counters.resynced += 1
        if isinstance(message, Unknown):
            self.counters.unknown += 1
            return
        self.counters.frames += 1
        messages.append(Received(frame.seq, message))

    @staticmethod
    def _resync(chunk: bytes) -> tuple[Frame, Message | Unknown] | None:
        """The longest well-formed frame that ends ``chunk`` (noise before it), if any."""
        for start in range(max(1, len(chunk) - RESYNC_WINDOW), len(chunk) - OVERHEAD):
            try:
                frame = decode(chunk[start:])
                message = parse(frame)
            except FrameError:
                continue
            if not isinstance(message, Unknown):
                return frame, message
        return None
