"""A microcontroller on a serial link (``serial.mcu``): its channels as the quantities of one
sensor, its outputs as things ``[[actions]]`` may switch.

The MCU pushes what it measures (READING frames, and SAMPLES blocks at kHz rates) stamped
on its own clock; :class:`firmware_bridge.link.McuLink` maps those stamps onto the runtime's
clock and this sensor hands them to the runtime, renamed, with units, and with the axes of a
vector put together. It is never polled. A link that fails (the port gone, the MCU silent or
speaking another protocol) is a fault, and the next reading a recovery, as for any sensor.

Threads: the link's own thread (``edgeline-mcu``) calls the ``Readings`` given to
:meth:`McuSensor.listen`; commands to the outputs go out from a worker thread of their own
(``edgeline-mcu-commands``), so that a slow or absent MCU never holds up the caller.

No ``from __future__ import annotations``: the config validator reads real types from the
params dataclasses.
"""

import logging
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sensors.base import Hardware, Readings, SensorType
from sensors.errors import NoSerialLibrary, SensorError

log = logging.getLogger(__name__)

MAX_AXES = 16
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600, 1000000, 2000000)


class LinkDown(SensorError, ConnectionError):
    """The serial link to the MCU is not carrying readings (the health event's error)."""


def _quantity_name(value: str) -> str | None:
    if not value or "." in value or len(value) > 64 or not value.isprintable() or " " in value:
        return "1-64 printable characters without '.' or spaces"
    return None


def _port(value: str) -> str | None:
    if not value.startswith("/"):
        return "an absolute path or glob such as /dev/ttyACM0 or /dev/serial/by-id/usb-*"
    return None


@dataclass(frozen=True)
class McuChannel:
    """One MCU channel the sensor uses: which one (by the name its HELLO gives), what the
    quantity is called here, its unit and plausible range."""

    mcu: str = field(metadata={"doc": "the channel's name as the MCU declares it in HELLO"})
    name: str | None = field(
        default=None,
        metadata={
            "check": _quantity_name,
            "expects": "a quantity name (no '.')",
            "doc": "the quantity's name here (default: the MCU's name)",
        },
    )
    unit: str | None = field(default=None, metadata={"doc": "unit (default: the MCU's)"})
    min: float | None = field(default=None, metadata={"doc": "lowest plausible value"})
    max: float | None = field(default=None, metadata={"doc": "highest plausible value"})
    axis: int | None = field(
        default=None,
        metadata={
            "min": 0,
            "max": MAX_AXES - 1,
            "doc": "this channel is axis N of the vector quantity `name` (0, 1, 2 for x, y, z)",
        },
    )

    def __post_init__(self) -> None:
        if self.min is not None and self.max is not None and not self.min < self.max:
            raise ValueError(f"expected min < max, found min {self.min:g} and max {self.max:g}")
        if self.axis is not None and (self.min is not None or self.max is not None):
            raise ValueError(
                "expected no min or max on an axis of a vector (ranges check single values),"
                f" found axis {self.axis} with min {self.min} and max {self.max}"
            )
        if self.axis is not None and self.name is None:
            raise ValueError(f"expected the vector's name beside axis {self.axis}, found no name")

    @property
    def quantity(self) -> str:
        return self.name or self.mcu


@dataclass(frozen=True)
class McuParams:
    port: str = field(
        metadata={
            "check": _port,
            "expects": "an absolute path or glob",
            "doc": "serial port, or a glob such as /dev/serial/by-id/usb-Raspberry_Pi_Pico*",
        }
    )
    baud: int = field(
        default=115200,
        metadata={
            "choices": BAUD_RATES,
            "doc": "line speed (a USB CDC port ignores it; a UART needs the MCU's)",
        },
    )
    channels: tuple[McuChannel, ...] = field(
        default=(),
        metadata={
            "doc": "which MCU channels to use, and as what (see The MCU link); "
            "none: every channel, as the MCU names it",
        },
    )
    outputs: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "MCU outputs [[actions]] may switch (as `<sensor>.<output>`)"},
    )

    def __post_init__(self) -> None:
        problems: list[str] = []
        seen: dict[str, int] = {}
        axes: dict[str, list[tuple[int, int | None]]] = {}
        for index, channel in enumerate(self.channels):
            if channel.mcu in seen:
                problems.append(
                    f"channels[{index}].mcu: expected a channel not already used, found"
                    f" '{channel.mcu}' again (channels[{seen[channel.mcu]}])"
                )
            seen.setdefault(channel.mcu, index)
            axes.setdefault(channel.quantity, []).append((index, channel.axis))
        for quantity, members in axes.items():
            given = [axis for _, axis in members]
            if len(members) == 1 and given[0] is None:
                continue
            if None in given or sorted(given) != list(range(len(given))):  # type: ignore[type-var]
                where = ", ".join(f"channels[{i}]" for i, _ in members)
                found = ", ".join("none" if a is None else str(a) for a in given)
                problems.append(
                    f"{where}: expected one axis each, 0 to {len(given) - 1}, for the vector"
                    f" '{quantity}', found {found}"
                )
        for index, output in enumerate(self.outputs):
            wrong = _quantity_name(output)
            if wrong:
                problems.append(f"outputs[{index}]: expected {wrong}, found {output!r}")
        twice = sorted({o for o in self.outputs if self.outputs.count(o) > 1})
        if twice:
            problems.append(f"outputs: expected each output once, found {', '.join(twice)} again")
        if problems:
            raise ValueError("; ".join(problems))

    def vectors(self) -> dict[str, int]:
        """Vector quantities and their widths."""
        widths: dict[str, int] = {}
        for channel in self.channels:
            if channel.axis is not None:
                widths[channel.quantity] = widths.get(channel.quantity, 0) + 1
        return widths


def _quantities(params: McuParams) -> dict[str, str]:
    units: dict[str, str] = {}
    for channel in params.channels:
        units.setdefault(channel.quantity, channel.unit or "")
    return units


def _ranges(params: McuParams) -> dict[str, tuple[float, float]]:
    return {
        c.quantity: (-math.inf if c.min is None else c.min, math.inf if c.max is None else c.max)
        for c in params.channels
        if c.min is not None or c.max is not None
    }


class _Assembler:
    """The axes of one vector, from separate channels, put back together: values (or blocks)
    of every axis with the same MCU stamp make one vector (or one (n, width) block). An axis
    that never comes (its frame lost on the line) leaves its vector incomplete: it is
    dropped, and counted."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.pending: dict[int, tuple[int, Any]] = {}
        self.incomplete = 0

    def add(self, axis: int, t_ms: int, value: Any) -> Any | None:
        if self.pending:
            first = next(iter(self.pending.values()))[0]
            if first != t_ms or axis in self.pending:
                self.incomplete += 1  # an axis went missing: begin a new vector
                self.pending.clear()
        self.pending[axis] = (t_ms, value)
        if len(self.pending) < self.width:
            return None
        parts = [self.pending[i][1] for i in range(self.width)]
        self.pending.clear()
        return parts


class McuSensor:
    """``serial.mcu``: ``listen(readings)`` opens the link; ``output(name)`` is a switch."""

    unit = ""

    def __init__(
        self,
        params: McuParams,
        now: Callable[[], float],
        *,
        reopen_s: float = 0.5,
        retries: int = 5,
        retry_s: float = 0.5,
    ) -> None:
        from firmware_bridge.link import McuLink

        self.params = params
        self.by_mcu = {channel.mcu: channel for channel in params.channels}
        # Units of the quantities, those the config leaves open filled in from HELLO.
        self.units: dict[str, str] = {c.quantity: c.unit for c in params.channels if c.unit}
        self._vectors = {q: _Assembler(w) for q, w in params.vectors().items()}
        self.ignored = 0  # readings of channels the config does not use
        self._last_time: dict[str, float] = {}  # the newest sample's time, per block quantity
        self.retries = retries
        self.retry_s = retry_s
        self._readings: Readings | None = None
        self._was_online = False
        self._commands: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._closed = threading.Event()
        self.link = McuLink(
            params.port,
            params.baud,
            on_reading=self._reading,
            on_block=self._block,
            on_state=self._state,
            now=now,
            reopen_s=reopen_s,
        )

    # -- the runtime's side --------------------------------------------------------------

    def listen(self, readings: Readings) -> None:
        self._readings = readings
        self._worker = threading.Thread(
            target=self._send_commands, name="edgeline-mcu-commands", daemon=True
        )
        self._worker.start()
        self.link.start()

    def close(self) -> None:
        """Close the link and stop the command worker (idempotent)."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._commands.put(None)
        if self._worker is not None:
            self._worker.join(5.0)
        self.link.close()

    def output(self, name: str) -> "McuOutput":
        return McuOutput(self, name)

    def status(self) -> dict[str, Any]:
        """The link's counters, for status.json."""
        stats = self.link.stats
        frames = dict(stats.frames)
        dropped = {
            reason: frames.get(reason, 0)
            for reason in ("cobs", "crc", "length", "version", "payload", "overrun")
        }
        return {
            "link": stats.state,
            "port": stats.port,
            "firmware": stats.fw,
            "board": stats.board,
            "opens": stats.opens,
            "reconnects": max(0, stats.opens - 1),
            "reboots": stats.reboots,
            "drift_ppm": stats.drift_ppm,
            "frames": frames.get("frames", 0),
            "dropped": dropped,
            "before_hello": stats.before_hello,
            "unknown_frames": frames.get("unknown", 0),
            "ignored_readings": self.ignored,
            "incomplete_vectors": sum(v.incomplete for v in self._vectors.values()),
            "commands": stats.commands,
            "nacks": stats.nacks,
            "last_error": stats.last_error,
        }

    # -- the link's thread ---------------------------------------------------------------

    def _channel(self, name: str, unit: str) -> McuChannel | None:
        if not self.params.channels:
            self.units.setdefault(name, unit)
            return McuChannel(name)
        channel = self.by_mcu.get(name)
        if channel is None:
            self.ignored += 1
            return None
        if unit:  # the config's unit first; else the MCU's (a vector: its first axis's)
            self.units.setdefault(channel.quantity, unit)
        return channel

    def _reading(self, reading: Any) -> None:
        readings = self._readings
        channel = self._channel(reading.channel.name, reading.channel.unit)
        if readings is None or channel is None:
            return
        value: Any = reading.value
        if channel.axis is not None:
            parts = self._vectors[channel.quantity].add(channel.axis, reading.t_ms, value)
            if parts is None:
                return
            value = tuple(float(p) for p in parts)
        readings.reading({channel.quantity: value}, reading.time, reading.synced)

    def _block(self, block: Any) -> None:
        import numpy as np

        readings = self._readings
        channel = self._channel(block.channel.name, block.channel.unit)
        if readings is None or channel is None or not len(block.values):
            return
        values = np.asarray(block.values, dtype=np.float64)
        if channel.axis is not None:
            parts = self._vectors[channel.quantity].add(channel.axis, block.t0_ms, values)
            if parts is None:
                return
            if len({len(p) for p in parts}) != 1:
                self._vectors[channel.quantity].incomplete += 1
                return
            values = np.column_stack(parts)
        times = block.t0 + np.arange(len(values)) * block.period
        # The clock map is corrected as the link learns (a lower offset, the drift, a
        # restart): a block must still never begin before the last one ended.
        last = self._last_time.get(channel.quantity)
        if last is not None and times[0] < last:
            times = np.maximum(times, last)
        self._last_time[channel.quantity] = float(times[-1])
        readings.block(channel.quantity, times, values, block.synced)

    def _state(self, state: str, detail: str) -> None:
        readings = self._readings
        lost = state in ("offline", "incompatible") or (state == "handshake" and self._was_online)
        self._was_online = state == "online"
        if readings is not None and lost:
            readings.fault(LinkDown(f"{self.params.port}: {state}: {detail}"))

    # -- commands (the worker thread) ------------------------------------------------------

    def _send_commands(self) -> None:
        while True:
            item = self._commands.get()
            if item is None:
                return
            name, value = item
            self._command(name, value)

    def _command(self, name: str, value: Any) -> None:
        """Set ``name`` to ``value`` on the MCU: sent until ACKed, NACKed, or ``retries``
        rounds (each of the link's own re-sends) have gone unanswered; the outcome is an
        event either way."""
        from firmware_bridge.link import LinkError

        error = ""
        for attempt in range(self.retries):
            if self._closed.is_set():
                return
            try:
                self.link.command({"set": {name: value}})
            except LinkError as exc:
                error = str(exc)
                if "refused" in error:
                    break  # a NACK: the MCU said no, asking again will not change it
                self._closed.wait(self.retry_s * 2**attempt)
                continue
            self._report("state", "info", value, {"output": name, "acked": True})
            return
        log.warning("MCU output %s not set to %s: %s", name, value, error)
        fields = {"state": "command_failed", "output": name, "error": error}
        self._report("health", "warning", value, fields)

    def _report(self, kind: str, severity: str, value: Any, fields: dict[str, Any]) -> None:
        if self._readings is not None and not self._closed.is_set():
            self._readings.report(kind, severity, value, fields)


class McuOutput:
    """An MCU output as ``[[actions]]`` drive it: ``set(on)`` queues the command and returns
    at once (any thread); the outcome arrives later as a ``state`` or ``health`` event."""

    def __init__(self, sensor: McuSensor, name: str) -> None:
        self.sensor = sensor
        self.name = name

    def set(self, on: bool) -> None:
        self.sensor._commands.put((self.name, on))


def _build(params: McuParams, hw: Hardware) -> McuSensor:
    try:
        import serial  # noqa: F401 - pyserial: checked here, used by the link's thread
    except ImportError as exc:
        raise NoSerialLibrary(
            f"sensor on {params.port} needs pyserial, which is not installed"
        ) from exc
    return McuSensor(params, hw.now)


SENSOR_TYPE = SensorType(
    name="serial.mcu",
    params=McuParams,
    build=_build,
    polled=False,
    summary="a microcontroller on a serial port (firmware_bridge), its outputs switched by actions",
    quantities=_quantities,
    ranges=_ranges,
    open_quantities=lambda params: not params.channels,
    vectors=lambda params: {c.quantity for c in params.channels if c.axis is not None},
)
