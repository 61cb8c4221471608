"""A simulated MCU on a real pty, speaking the protocol from the same encoder as the host.

The host opens :attr:`SimulatedMcu.port`, a symlink to the pty (as ``/dev/serial/by-id/...``
is to a USB device), exactly as it opens a real one. The MCU answers HELLO_REQUEST, COMMAND
(setting its outputs) and TIME on a thread of its own; the caller sends readings, blocks and
heartbeats stamped on the MCU's clock, and injects faults: garbage, flipped bits, frames cut
short, a port that vanishes and comes back, a restart (new HELLO, ``t_ms`` from 0), drift.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import tty
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from firmware_bridge.messages import (
    Ack,
    Channel,
    Command,
    Heartbeat,
    Hello,
    HelloRequest,
    Nack,
    Reading,
    Samples,
    Time,
)
from firmware_bridge.protocol import SEQ_MODULO, Frame, encode
from firmware_bridge.stream import RESYNC_WINDOW, FrameDecoder


class SimulatedMcu:
    """``SimulatedMcu(port_link, channels, outputs, clock)``; :meth:`open` makes the pty and
    the symlink, :meth:`close` removes both. ``clock()`` is the time in seconds that the MCU's
    crystal counts (its ``t_ms`` is that since boot, times ``1 + drift_ppm / 1e6``)."""

    def __init__(
        self,
        port: str | Path,
        channels: Sequence[Channel],
        outputs: Sequence[str] = (),
        clock: Callable[[], float] | None = None,
        *,
        fw: str = "1.0.0-sim",
        board: str = "simulated",
        proto: int = 1,
        drift_ppm: float = 0.0,
        seed: int = 0,
        heartbeat_every: float | None = None,
    ) -> None:
        import time

        self.port = Path(port)
        self.hello = Hello(proto, fw, board, tuple(channels), tuple(outputs))
        self.clock = clock or time.monotonic
        self.drift_ppm = drift_ppm
        # A HEARTBEAT this often (seconds of ``clock``) from the answering thread, as the
        # firmware sends one; None: only when :meth:`heartbeat` is called.
        self.heartbeat_every = heartbeat_every
        self.outputs: dict[str, object] = {name: False for name in outputs}
        self.commands: list[dict[str, object]] = []
        self.host_time_ms: int | None = None
        self.boots = 0
        self.random = random.Random(seed)
        # What a host could take: data frames sent intact after a HELLO on the open pty.
        self.intact: list[Reading | Samples] = []
        self.written = 0  # bytes onto the wire since the start, across opens
        self.greeted = threading.Event()  # a HELLO went out on the pty open now
        self._boot_at = self.clock()
        self._boot_ms = 0.0  # t_ms at _boot_at (drift changes rebase the count here)
        self._seq = 0
        self._fd: int | None = None
        self._peer: int | None = None
        self._lock = threading.Lock()
        self._corrupt_next = 0
        self._truncate_next = 0
        self._noise_tail = 0  # bytes of noise since its last zero, before the next frame
        self._decoder = FrameDecoder()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the port ----------------------------------------------------------------------------

    def open(self) -> SimulatedMcu:
        """A new pty, the symlink at :attr:`port` pointing at it, and the answering thread."""
        fd, peer = os.openpty()
        tty.setraw(peer)
        tty.setraw(fd)
        name = os.ttyname(peer)
        self.port.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.port.with_name(self.port.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(name)
        tmp.replace(self.port)
        self._fd, self._peer = fd, peer
        self.greeted.clear()
        self._decoder.reset()
        self._stop.clear()
        self._thread = threading.Thread(target=self._answer, name="sim-mcu", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """The port vanishes: the symlink goes, and the host's reads fail (EIO)."""
        self._stop.set()
        self.greeted.clear()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            self.port.unlink()
        for fd in (self._fd, self._peer):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._peer = None

    def __enter__(self) -> SimulatedMcu:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    # --- the MCU's clock ---------------------------------------------------------------------

    def t_ms(self, at: float | None = None) -> int:
        """The MCU's millisecond count at host time ``at`` (now by default)."""
        elapsed = (self.clock() if at is None else at) - self._boot_at
        return int(self._boot_ms + elapsed * (1.0 + self.drift_ppm / 1e6) * 1000.0)

    @property
    def booted_at(self) -> float:
        """When (on ``clock``) the MCU last started: it measured nothing before."""
        return self._boot_at

    def set_drift(self, ppm: float) -> None:
        """The crystal runs ``ppm`` fast (negative: slow) from now on; ``t_ms`` stays
        continuous."""
        now = self.clock()
        self._boot_ms = self._boot_ms + (now - self._boot_at) * (1.0 + self.drift_ppm / 1e6) * 1e3
        self._boot_at = now
        self.drift_ppm = ppm

    def reboot(self) -> None:
        """Restart: ``t_ms`` from 0 again, and an unasked HELLO."""
        self.boots += 1
        self._boot_at = self.clock()
        self._boot_ms = 0.0
        self.outputs = dict.fromkeys(self.outputs, False)
        self.send(self.hello)

    # --- what it sends -----------------------------------------------------------------------

    def send(self, message: Hello | Reading | Samples | Heartbeat | Ack | Nack) -> None:
        with self._lock:
            seq = self._seq
            self._seq = (self._seq + 1) % SEQ_MODULO
        greeted = self.greeted.is_set()
        intact = self.send_frame(message.frame(seq))
        if intact and greeted and isinstance(message, Reading | Samples):
            self.intact.append(message)
        if isinstance(message, Hello) and self._fd is not None:
            self.greeted.set()

    def send_frame(self, frame: Frame) -> bool:
        """Put ``frame`` on the wire, hit by the next fault injected; True when it went out
        intact (an open port, not corrupted or cut)."""
        data = encode(frame)
        # Noise after its last zero runs into this frame: the decoder finds a frame again
        # at the end of such a chunk only within its resync window (a READING, not a long
        # SAMPLES block), so a longer frame goes with the noise.
        intact = not (self._noise_tail and len(data) - 1 > RESYNC_WINDOW)
        self._noise_tail = 0
        if self._corrupt_next:
            self._corrupt_next -= 1
            data = self._flip(data)
            intact = False
        elif self._truncate_next:
            self._truncate_next -= 1
            data = data[: self.random.randrange(1, len(data) - 1)] + b"\x00"
            intact = False
        return self.write(data) and intact

    def reading(self, channel: int, value: float, at: float | None = None) -> None:
        self.send(Reading(channel, self.t_ms(at), value))

    def samples(self, channel: int, t0: float, period_s: float, values: np.ndarray) -> None:
        self.send(Samples(channel, self.t_ms(t0), round(period_s * 1e6), values))

    def heartbeat(self) -> None:
        self.send(Heartbeat(self.t_ms()))

    def write(self, data: bytes) -> bool:
        """Raw bytes onto the wire (nothing when the port is gone); True when all went."""
        fd = self._fd
        if fd is None:
            return False
        view = memoryview(data)
        with self._lock:
            while view:
                try:
                    written = os.write(fd, view)
                except BlockingIOError:
                    select.select([], [fd], [], 1.0)
                    continue
                except OSError:
                    return False  # the host end is closed: on a real wire, into the void
                self.written += written
                view = view[written:]
        return True

    # --- faults ------------------------------------------------------------------------------

    def garbage(self, size: int) -> bytes:
        """A burst of line noise (zeros included: it may end a frame in flight)."""
        noise = self.random.randbytes(size)
        if self.write(noise):
            self._noise_tail = len(noise) - (noise.rfind(0) + 1)
        return noise

    def corrupt_next(self, frames: int = 1) -> None:
        """Flip one bit in each of the next ``frames`` frames sent."""
        self._corrupt_next += frames

    def truncate_next(self, frames: int = 1) -> None:
        """Cut each of the next ``frames`` frames short (as a reset mid-frame would)."""
        self._truncate_next += frames

    def _flip(self, data: bytes) -> bytes:
        flipped = bytearray(data)
        at = self.random.randrange(0, len(flipped) - 1)  # never the delimiter
        flipped[at] ^= 1 << self.random.randrange(8)
        if flipped[at] == 0:  # a zero would split the frame: still corrupt, differently
            flipped[at] = 0xFF
        return bytes(flipped)

    # --- what it answers ---------------------------------------------------------------------

    def _answer(self) -> None:
        beat = self.clock()
        while not self._stop.is_set():
            fd = self._fd
            if fd is None:
                return
            if self.heartbeat_every is not None and self.clock() - beat >= self.heartbeat_every:
                beat = self.clock()
                self.heartbeat()
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            for seq, message in self._decoder.feed(data):
                if isinstance(message, HelloRequest):
                    self.send(self.hello)
                elif isinstance(message, Command):
                    self.send(self._command(seq, message))
                elif isinstance(message, Time):
                    self.host_time_ms = message.host_ms
                    self.send(Ack(seq))

    def _command(self, seq: int, command: Command) -> Ack | Nack:
        self.commands.append(command.body)
        wanted = command.body.get("set")
        if not isinstance(wanted, dict) or not wanted:
            return Nack(seq, 'expected {"set": {output: value}}')
        unknown = sorted(set(wanted) - set(self.outputs))
        if unknown:
            return Nack(seq, f"no output {', '.join(unknown)}")
        self.outputs.update(wanted)
        return Ack(seq)
