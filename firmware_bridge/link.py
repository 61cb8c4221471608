"""The host's end of the serial link to a microcontroller (pyserial): open the port (a path
or a glob such as ``/dev/serial/by-id/usb-MicroPython*``), ask for HELLO and check the
protocol version, then read frames on a thread of its own, map the MCU's clock onto the
host's, and hand each reading and block on, stamped in host time. A port that vanishes (a USB
cable pulled, an MCU that resets its USB) is reopened until it is back; an MCU that restarts
says HELLO again and its clock is mapped afresh.

Commands go the other way: :meth:`McuLink.command` sends a COMMAND and waits for the ACK
or NACK that names its sequence number, sending the same frame again when none comes."""

from __future__ import annotations

import glob
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware_bridge.clock import ClockMap
from firmware_bridge.messages import (
    Ack,
    Channel,
    Command,
    Heartbeat,
    Hello,
    HelloRequest,
    Log,
    Message,
    Nack,
    Reading,
    Samples,
    Time,
)
from firmware_bridge.protocol import SEQ_MODULO, encode
from firmware_bridge.stream import FrameDecoder

log = logging.getLogger(__name__)

PROTO = 1
REBOOT_BEHIND_S = 10.0  # a stamp this far behind the newest, with no HELLO: the MCU restarted


class LinkError(RuntimeError):
    """A command the MCU refused (NACK) or never answered, or a link that is not up."""


@dataclass(frozen=True, slots=True)
class StampedReading:
    """One READING in host time: ``time`` on the link's clock; ``synced`` once the MCU's
    clock is mapped (offset and drift measured)."""

    channel: Channel
    time: float
    value: float
    synced: bool
    t_ms: int = 0  # the MCU's own stamp


@dataclass(frozen=True)
class StampedBlock:
    """One SAMPLES block in host time: the first sample at ``t0``, ``period`` seconds apart."""

    channel: Channel
    t0: float
    period: float
    values: np.ndarray
    synced: bool
    t0_ms: int = 0  # the MCU's own stamp of the first sample


@dataclass
class LinkStats:
    state: str = "closed"  # closed, offline, handshake, online, incompatible
    port: str = ""
    fw: str = ""
    board: str = ""
    opens: int = 0
    reboots: int = 0
    readings: int = 0
    blocks: int = 0
    samples: int = 0
    delivered: int = 0  # readings and blocks handed to the callbacks (after they returned)
    before_hello: int = 0  # data frames dropped because no HELLO had said what they are
    commands: int = 0
    nacks: int = 0
    last_error: str = ""
    drift_ppm: float = 0.0
    frames: dict[str, int] = field(default_factory=dict)


class McuLink:
    """``McuLink(port, baud, on_reading=..., on_block=...)``; :meth:`start`, :meth:`close`.

    Callbacks run on the link's thread (``edgeline-mcu``) and must not block. ``now`` is the
    clock readings are stamped on; ``on_state(state, detail)`` hears every change of state.
    """

    def __init__(
        self,
        port: str,
        baud: int = 115_200,
        *,
        on_reading: Callable[[StampedReading], None],
        on_block: Callable[[StampedBlock], None] | None = None,
        on_state: Callable[[str, str], None] | None = None,
        now: Callable[[], float] = time.monotonic,
        hello_timeout: float = 1.0,
        reopen_s: float = 0.5,
        time_every_s: float = 10.0,
        silence_s: float = 3.0,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.port = port
        self.baud = baud
        self.on_reading = on_reading
        self.on_block = on_block
        self.on_state = on_state
        self.now = now
        self.hello_timeout = hello_timeout
        self.reopen_s = reopen_s
        self.time_every_s = time_every_s
        self.silence_s = silence_s
        self.wall_ms = wall_ms
        self.stats = LinkStats(port=port)
        self.decoder = FrameDecoder()
        self.clock = ClockMap()
        self.hello: Hello | None = None
        self._channels: dict[int, Channel] = {}
        self._serial: Any = None
        self._write_lock = threading.Lock()
        self._seq = 0
        self._answers: dict[int, Ack | Nack] = {}
        self._answered = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="edgeline-mcu", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._close_port()
        self._set_state("closed", "")

    @property
    def online(self) -> bool:
        return self.stats.state == "online"

    # --- commands ----------------------------------------------------------------------------

    def command(self, body: dict[str, Any], *, timeout: float = 0.5, attempts: int = 3) -> Ack:
        """Send COMMAND ``body``; the MCU's ACK. LinkError on a NACK (with its reason), on
        no answer after ``attempts`` sends ``timeout`` seconds apart, or when offline."""
        seq = self._next_seq()
        frame = encode(Command(body).frame(seq))
        self.stats.commands += 1
        for _ in range(attempts):
            if not self.online:
                raise LinkError(f"{self.port}: the MCU is {self.stats.state}")
            self._write(frame)
            with self._answered:
                answered = self._answered.wait_for(lambda: seq in self._answers, timeout)
                answer = self._answers.pop(seq, None) if answered else None
            if isinstance(answer, Ack):
                return answer
            if isinstance(answer, Nack):
                self.stats.nacks += 1
                raise LinkError(f"the MCU refused {body}: {answer.reason or 'no reason given'}")
        raise LinkError(f"the MCU did not answer {body} ({attempts} sends, {timeout:g} s each)")

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            path = self._resolve()
            if path is None:
                self._set_state("offline", f"no port matches {self.port}")
            else:
                try:
                    self._serve(path)
                except Exception as exc:  # pyserial's SerialException, OSError (EIO on unplug)
                    self._set_state("offline", f"{path}: {exc}")
                self._close_port()
            self._stop.wait(self.reopen_s)

    def _resolve(self) -> str | None:
        if not glob.has_magic(self.port):
            return self.port
        found = sorted(glob.glob(self.port))
        return found[0] if found else None

    def _serve(self, path: str) -> None:
        import serial

        self._serial = serial.Serial(path, self.baud, timeout=0.05, exclusive=True)
        self.stats.opens += 1
        self.decoder.reset()
        self._request_hello()
        asked = heard = self.now()
        last_time = float("-inf")
        while not self._stop.is_set():
            data = self._serial.read(max(1, self._serial.in_waiting))
            now = self.now()
            for received in self.decoder.feed(data):
                heard = now
                self._handle(received.message, now)
            # An MCU that says nothing (heartbeats are every second) is asked who it is.
            silent = self.online and now - heard >= self.silence_s
            if silent:
                self._request_hello(f"the MCU said nothing for {self.silence_s:g} s")
                asked = heard = now
            elif self.stats.state in ("offline", "handshake") and now - asked >= self.hello_timeout:
                self._request_hello()
                asked = heard = now
            if self.online and now - last_time >= self.time_every_s:
                self._write(encode(Time(self.wall_ms()).frame(self._next_seq())))
                last_time = now
            self.stats.frames = self.decoder.counters.as_json()

    def _handle(self, message: Message, now: float) -> None:
        if isinstance(message, Hello):
            self._hello(message)
        elif self.hello is None or self.stats.state != "online":
            if isinstance(message, Reading | Samples):
                self.stats.before_hello += 1
        elif isinstance(message, Reading):
            self._reading(message, now)
        elif isinstance(message, Samples):
            self._samples(message, now)
        elif isinstance(message, Heartbeat):
            self._stamp(message.uptime_ms, now)
        if isinstance(message, Ack | Nack):
            with self._answered:
                self._answers[message.seq] = message
                self._answered.notify_all()
        elif isinstance(message, Log):
            log.info("MCU on %s: %s", self.port, message.text)

    def _hello(self, hello: Hello) -> None:
        if hello.proto != PROTO:
            self.hello = None
            self._set_state("incompatible", f"the MCU speaks protocol {hello.proto}, not {PROTO}"
                            f" (firmware {hello.fw}): update its firmware")  # fmt: skip
            return
        if self.hello is not None:
            self.stats.reboots += 1  # a HELLO unasked for: it restarted, its clock with it
        self.clock.reset()
        self.hello = hello
        self._channels = {channel.id: channel for channel in hello.channels}
        self.stats.fw, self.stats.board = hello.fw, hello.board
        self._set_state("online", f"{hello.board} firmware {hello.fw}")

    def _stamp(self, t_ms: int, now: float) -> None:
        """Observe ``t_ms`` arriving at ``now``. A stamp far behind the newest is an MCU that
        restarted with its HELLO lost: the clock starts afresh and HELLO is asked for."""
        if self.clock.behind(t_ms) > REBOOT_BEHIND_S:
            self.stats.reboots += 1
            self.clock.reset()
            self._request_hello("the MCU restarted (its clock went back) with its HELLO lost")
        self.clock.observe(t_ms, now)
        self.stats.drift_ppm = round(self.clock.drift_ppm, 1)

    def _reading(self, reading: Reading, now: float) -> None:
        channel = self._channels.get(reading.channel)
        if channel is None:
            self.stats.before_hello += 1
            return
        self._stamp(reading.t_ms, now)
        at = self.clock.to_host(reading.t_ms)
        self.stats.readings += 1
        self.on_reading(StampedReading(channel, now if at is None else at, reading.value,
                                       self.clock.synced, reading.t_ms))  # fmt: skip
        self.stats.delivered += 1

    def _samples(self, block: Samples, now: float) -> None:
        channel = self._channels.get(block.channel)
        if channel is None or self.on_block is None:
            self.stats.before_hello += channel is None
            return
        last_ms = block.t0_ms + (max(0, len(block.values) - 1) * block.period_us) // 1000
        self._stamp(last_ms, now)
        t0 = self.clock.to_host(block.t0_ms)
        self.stats.blocks += 1
        self.stats.samples += len(block.values)
        self.on_block(StampedBlock(channel, now if t0 is None else t0, block.period_us / 1e6,
                                   block.values, self.clock.synced, block.t0_ms))  # fmt: skip
        self.stats.delivered += 1

    # --- writing -----------------------------------------------------------------------------

    def _request_hello(self, why: str = "asking for HELLO") -> None:
        if self.stats.state != "incompatible":
            self._set_state("handshake", why)
        self._write(encode(HelloRequest().frame(self._next_seq())))

    def _next_seq(self) -> int:
        with self._write_lock:
            seq = self._seq
            self._seq = (self._seq + 1) % SEQ_MODULO
        return seq

    def _write(self, data: bytes) -> None:
        port = self._serial
        if port is None:
            return
        with self._write_lock:
            try:
                port.write(data)
            except Exception as exc:  # the reading side sees the port go and reopens it
                self.stats.last_error = str(exc)

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:
                log.debug("closing %s: %s", self.port, exc)

    def _set_state(self, state: str, detail: str) -> None:
        if state == self.stats.state:
            return
        self.stats.state = state
        if state in ("offline", "incompatible"):
            self.stats.last_error = detail
            self.hello = None if state == "offline" else self.hello
        if self.on_state is not None:
            self.on_state(state, detail)
