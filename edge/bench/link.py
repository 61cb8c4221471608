"""Figure 8: what the MCU link costs the host. READING frames and samples in SAMPLES blocks
that the stream decoder (COBS, CRC, the parse into messages) takes per second on one core,
and the same through a real pty into an :class:`~firmware_bridge.link.McuLink` (the link's
thread reading pyserial, mapping the MCU's clock, calling back), fed by the simulated MCU.

The decoder is fed the bytes in 4 KiB chunks, as a serial read hands them over; each timing
is the best of a few repeats, in CPU time of this process (one core: the decoder runs on
one thread). The pty figures are wall-clock rates from the first frame written to the last
one handed to the callback, the writer on another thread.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CHUNK = 4096  # bytes per feed: a serial read's worth
BLOCK = 250  # samples per SAMPLES block: a quarter second of a 1 kHz accelerometer axis


def _readings_stream(count: int, channels: int = 4, t0_ms: int = 0, step_ms: int = 1) -> bytes:
    """``count`` READING frames over ``channels`` channels, stamped from ``t0_ms`` on."""
    from firmware_bridge.messages import Reading
    from firmware_bridge.protocol import encode

    return b"".join(
        encode(Reading(i % channels, t0_ms + i * step_ms, 20.0 + (i % 100) * 0.01).frame(i))
        for i in range(count)
    )


def _samples_stream(blocks: int) -> bytes:
    import numpy as np

    from firmware_bridge.messages import Samples
    from firmware_bridge.protocol import encode

    values = np.sin(np.arange(BLOCK) / 7.0).astype(np.float32)
    return b"".join(encode(Samples(i % 3, i * 250, 1000, values).frame(i)) for i in range(blocks))


def _decode_rate(stream: bytes, repeats: int = 3) -> tuple[float, int]:
    """(CPU seconds for the best repeat, messages decoded) feeding ``stream`` in chunks."""
    from firmware_bridge.stream import FrameDecoder

    best = float("inf")
    decoded = 0
    for _ in range(repeats):
        decoder = FrameDecoder()
        chunks = [stream[at : at + CHUNK] for at in range(0, len(stream), CHUNK)]
        started = time.process_time()
        decoded = 0
        for chunk in chunks:  # bytes, as a serial read returns them
            decoded += len(decoder.feed(chunk))
        best = min(best, time.process_time() - started)
    return best, decoded


def decoder_figures(readings: int, blocks: int) -> dict[str, Any]:
    seconds, decoded = _decode_rate(_readings_stream(readings))
    sample_seconds, decoded_blocks = _decode_rate(_samples_stream(blocks))
    return {
        "readings": decoded,
        "readings_per_s": decoded / seconds if seconds else float("nan"),
        "us_per_reading": seconds / decoded * 1e6 if decoded else float("nan"),
        "blocks": decoded_blocks,
        "block_samples": BLOCK,
        "samples_per_s": decoded_blocks * BLOCK / sample_seconds
        if sample_seconds
        else float("nan"),
    }


def _whole_frames(stream: bytes, size: int) -> list[bytes]:
    """``stream`` in pieces of about ``size`` bytes, each ending at a frame's delimiter."""
    pieces, start = [], 0
    while start < len(stream):
        end = stream.find(b"\x00", min(start + size, len(stream)) - 1) + 1 or len(stream)
        pieces.append(stream[start:end])
        start = end
    return pieces


def _through_pty(workdir: Path, readings: int, blocks: int) -> dict[str, Any]:
    """Readings, then blocks, from a simulated MCU on a pty into a McuLink."""
    import numpy as np

    from firmware_bridge.link import McuLink
    from firmware_bridge.messages import Channel
    from firmware_bridge.sim import SimulatedMcu

    channels = [Channel(0, "a"), Channel(1, "b")]
    counted = {"readings": 0, "samples": 0}
    done = threading.Event()
    target: dict[str, int] = {"readings": readings, "samples": 0}

    def reading(_: Any) -> None:
        counted["readings"] += 1
        if counted["readings"] >= target["readings"] and counted["samples"] >= target["samples"]:
            done.set()

    def block(b: Any) -> None:
        counted["samples"] += len(b.values)
        if counted["readings"] >= target["readings"] and counted["samples"] >= target["samples"]:
            done.set()

    out: dict[str, Any] = {}
    with SimulatedMcu(workdir / "bench-mcu", channels) as mcu:
        link = McuLink(str(mcu.port), on_reading=reading, on_block=block, reopen_s=0.05)
        link.start()
        try:
            if not mcu.greeted.wait(10.0):
                return {"available": False, "reason": "the link did not say HELLO"}
            deadline = time.monotonic() + 10.0
            while not link.online and time.monotonic() < deadline:
                time.sleep(0.001)
            # Pre-encoded: the MCU's cost is not the host's.
            frames = _readings_stream(readings, len(channels), mcu.t_ms(), step_ms=0)
            started = time.perf_counter()
            # Whole frames per write: the simulated MCU's own replies (the ACK to the
            # link's TIME) go between writes, and must not land inside a frame.
            for chunk in _whole_frames(frames, CHUNK):
                mcu.write(chunk)
            ok = done.wait(60.0)
            out["readings_per_s"] = readings / (time.perf_counter() - started) if ok else None
            done.clear()
            target.update(readings=counted["readings"], samples=blocks * BLOCK)
            values = np.sin(np.arange(BLOCK) / 7.0).astype(np.float32)
            t0 = mcu.clock()
            started = time.perf_counter()
            for i in range(blocks):
                mcu.samples(i % 2, t0 + i * 0.25, 0.001, values)
            ok = done.wait(60.0)
            out["samples_per_s"] = blocks * BLOCK / (time.perf_counter() - started) if ok else None
            out["dropped"] = link.decoder.counters.dropped
        finally:
            link.close()
    return {"available": True, **out}


def run(workdir: Path, *, readings: int, blocks: int) -> dict[str, Any]:
    try:
        import serial  # noqa: F401 - pyserial, for the pty figures
    except ImportError:
        pty: dict[str, Any] = {"available": False, "reason": "pyserial is not installed"}
    else:
        with tempfile.TemporaryDirectory(dir=workdir) as scratch:
            pty = _through_pty(Path(scratch), readings, blocks)
    return {"decoder": decoder_figures(readings, blocks), "pty": pty}
