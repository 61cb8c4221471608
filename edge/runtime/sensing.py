"""One sensor on the sampling loop: read, check, filter, detect, and say what happened.

Each quantity of a sensor (the single value, or each of a BME280's temperature, pressure
and humidity) is a channel with its own filter chain, detectors, plausible range and stuck
check. A read that fails marks the sensor ``degraded`` (a ``health`` event) and retries on
a doubling delay, capped by ``retry_max``, while every other sensor keeps its rate; the
next good reading sends ``recovered``. Everything here runs on the sampling thread and
only hands drafts on: no disk, no network.
"""

from __future__ import annotations

import errno as errnos
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.config.device import DetectorConfig, SensorConfig
from edge.config.sensing import Input
from edge.events import Stamp
from models import BlockDetector, Detection, Detector, Severity, VectorDetector
from sensors import EdgeSensor, PolledSensor, SensorType, Value
from sensors.base import NamedUnits, PushedSensor, SampleBlocks
from sensors.filters import FILTER_TYPES, Chain

log = logging.getLogger(__name__)

# (sensor, kind, severity, value, stamp, fields): hands an event to the recorder.
Emit = Callable[[str, str, Severity, Any, Stamp, dict[str, Any]], None]
# (detector id, detection, stamp): local actions react to detections.
OnDetection = Callable[[str, Detection, Stamp], None]


@dataclass(frozen=True)
class Watch:
    """A detector on a channel, and the other sensors' series joined to its readings.

    What the detector can take besides scalars, found from its type: a vector whole
    (``vectors``), a block of samples at once (``blocks``).
    """

    id: str
    detector: Detector
    inputs: tuple[Input, ...] = ()
    vectors: VectorDetector | None = field(init=False)
    blocks: BlockDetector | None = field(init=False)

    def __post_init__(self) -> None:  # asked once: an isinstance on a protocol is not free
        detector = self.detector
        object.__setattr__(
            self, "vectors", detector if isinstance(detector, VectorDetector) else None
        )
        object.__setattr__(
            self, "blocks", detector if isinstance(detector, BlockDetector) else None
        )


@dataclass
class Channel:
    """One quantity of a sensor and what watches it."""

    quantity: str | None  # None for a sensor with a single value
    chain: Chain
    limits: tuple[float, float] | None
    detectors: list[Watch] = field(default_factory=list)
    last: float | None = None
    repeats: int = 0
    stuck: bool = False
    out_of_range: bool = False
    latest: float = -math.inf  # the latest reading time the detectors were given
    times_back: int = 0  # readings whose time was before it (a pushed device's clock)


class SensorRunner:
    """One sensor on the sampling loop: read, check, filter, detect, emit.

    Runs on the sampling thread only (an edge sensor's changes are posted there); it hands
    drafts on through ``emit`` and detections to the local actions, and keeps no lock.
    """

    def __init__(
        self,
        config: SensorConfig,
        kind: SensorType,
        device: PolledSensor | EdgeSensor | PushedSensor,
        detectors: list[tuple[DetectorConfig, Detector]],
        *,
        emit: Emit,
        on_detection: OnDetection,
        latest: dict[str, Value] | None = None,
    ) -> None:
        self.config = config
        # Every sensor's latest reading, shared by the runners of one runtime (all on the
        # sampling thread): what a detector's joined ``inputs`` read.
        self.latest: dict[str, Value] = {} if latest is None else latest
        self.kind = kind
        self.device = device
        self.emit = emit
        self.on_detection = on_detection
        self.channels: dict[str | None, Channel] = {}
        self.units = kind.units_of(config.params)
        self.limits = kind.limits_of(config.params)
        # Quantities the hardware names at run time (an MCU's channels): a channel each,
        # made as they first come (or now, for those a detector watches).
        self.open = kind.quantities_open(config.params)
        quantities: list[str | None] = [*self.units] or ([] if self.open else [None])
        for quantity in quantities:
            self.channels[quantity] = self._channel(quantity)
        for det, detector in detectors:
            if det.quantity not in self.channels:
                self.channels[det.quantity] = self._channel(det.quantity)
            self.channels[det.quantity].detectors.append(Watch(det.id, detector, det.inputs))
        self.last_state: Any = None
        self.degraded = False
        self.failures = 0  # consecutive failed reads
        self.retry_at = -math.inf
        self.readings = 0
        self.faults = 0
        self.times_back = 0  # readings, over all channels, whose time went back
        self._blocks: set[str | None] = set()  # quantities that arrive as sample blocks
        # A sensor that also hands over sample blocks (a FIFO), and units its config chose.
        self._block_source = device if isinstance(device, SampleBlocks) else None
        self.declared_units = device.units if isinstance(device, NamedUnits) else self.units

    def _channel(self, quantity: str | None) -> Channel:
        filters = [FILTER_TYPES[f.type].build(f.params) for f in self.config.filters]
        limits = self.limits.get(quantity or "")
        return Channel(quantity, Chain(filters), limits)

    @property
    def unit(self) -> str:
        return self.device.unit

    # -- polling ------------------------------------------------------------------------

    def due(self, t: float) -> bool:
        """Whether to read now: always, unless a failing sensor is waiting out its retry."""
        return not self.degraded or t >= self.retry_at

    def fault(self, exc: Exception, stamp: Stamp) -> None:
        """A read failed: report once, then retry on a doubling delay."""
        self.faults += 1
        self.failures += 1
        interval = self.config.interval or 1.0
        delay = min(self.config.retry_max, interval * 2 ** (self.failures - 1))
        self.retry_at = stamp.mono + delay
        if self.degraded:
            return
        self.degraded = True
        fields: dict[str, Any] = {"state": "degraded", "error": f"{type(exc).__name__}: {exc}"}
        code = getattr(exc, "errno", None)
        if isinstance(code, int):
            fields["errno"] = code
            fields["errno_name"] = errnos.errorcode.get(code, "")
        fields["retry_in"] = round(delay, 3)
        self.emit(self.config.id, "health", "warning", None, stamp, fields)

    def reading(self, value: Value, stamp: Stamp) -> None:
        """A good reading: recover if needed, then check, filter and detect."""
        cfg = self.config
        self.latest[cfg.id] = value
        self.readings += 1
        self.failures = 0
        if self.degraded:
            self.degraded = False
            self.emit(cfg.id, "health", "info", None, stamp, {"state": "recovered"})
        if isinstance(value, bool):
            if value != self.last_state:
                self.last_state = value
                self.emit(cfg.id, "state", "info", value, stamp, {})
            return
        self.blocks(stamp)  # first: its detectors then skip the block's newest sample below
        passed: dict[str | None, Any] = {}
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for quantity, raw in items:
            channel = self.channels.get(quantity)
            if channel is None and self.open:
                channel = self.channels[quantity] = self._channel(quantity)
            if channel is None:  # a quantity the type does not declare: pass it on as is
                passed[quantity] = raw
                continue
            kept = self._condition(channel, raw, stamp)
            if kept is not None:
                passed[quantity] = kept
                self._detect(channel, kept, stamp)
        if cfg.telemetry and passed:
            if None in passed:
                body = passed[None]
                self.emit(cfg.id, "telemetry", "info", body, stamp, {"unit": self.unit})
            else:
                declared = self.declared_units
                units = {q: declared.get(q or "", "") for q in passed}
                self.emit(cfg.id, "telemetry", "info", passed, stamp, {"units": units})

    def _condition(self, channel: Channel, raw: Any, stamp: Stamp) -> Any:
        """Range and stuck checks, then the filter chain. None drops the reading."""
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            return raw  # vectors and flags skip the numeric checks
        number = float(raw)
        if math.isnan(number):
            return None
        if not self._in_range(channel, number, stamp):
            return None
        self._check_stuck(channel, number, stamp)
        return channel.chain.apply(stamp.mono, number)

    def _in_range(self, channel: Channel, number: float, stamp: Stamp) -> bool:
        if channel.limits is None:
            return True
        low, high = channel.limits
        inside = low <= number <= high
        if inside == (not channel.out_of_range):
            return inside
        channel.out_of_range = not inside
        fields: dict[str, Any] = {"state": "out_of_range" if not inside else "recovered"}
        if channel.quantity:
            fields["quantity"] = channel.quantity
        if not inside:
            fields["range"] = [low, high]
        severity: Severity = "warning" if not inside else "info"
        self.emit(self.config.id, "health", severity, number, stamp, fields)
        return inside

    def _check_stuck(self, channel: Channel, number: float, stamp: Stamp) -> None:
        limit = self.config.stuck_after
        if limit is None:
            return
        if number == channel.last:
            channel.repeats += 1
        else:
            channel.repeats = 1
            channel.last = number
            if channel.stuck:
                channel.stuck = False
                fields: dict[str, Any] = {"state": "recovered", "was": "stuck"}
                if channel.quantity:
                    fields["quantity"] = channel.quantity
                self.emit(self.config.id, "health", "info", number, stamp, fields)
        if channel.repeats >= limit and not channel.stuck:
            channel.stuck = True
            fields = {"state": "stuck", "readings": channel.repeats}
            if channel.quantity:
                fields["quantity"] = channel.quantity
            self.emit(self.config.id, "health", "warning", number, stamp, fields)

    def _detect(self, channel: Channel, value: Any, stamp: Stamp) -> None:
        vector = isinstance(value, tuple)
        if not vector and (not isinstance(value, int | float) or isinstance(value, bool)):
            return
        if stamp.mono < channel.latest:
            self._time_back(channel, channel.latest - stamp.mono)
        else:
            channel.latest = stamp.mono
        for watch in channel.detectors:
            detector = watch.detector
            if channel.quantity in self._blocks and watch.blocks is not None:
                continue  # fed the whole block of samples instead, in ``blocks``
            reading: Any = value if vector else float(value)
            if watch.inputs:
                # Only a scalar reading takes joined inputs (training refuses vectors too).
                reading = None if vector else self._joined(float(value), watch.inputs)
                if reading is None:
                    continue  # a joined sensor has not read yet (later: its last good reading)
            elif vector and not (watch.vectors is not None and watch.vectors.accepts_vectors):
                continue
            found = detector.observe(stamp.mono, reading)
            if found is not None:
                self._found(channel, watch.id, found, stamp)

    def _time_back(self, channel: Channel, by: float) -> None:
        """A reading earlier than one before it (a pushed device's clock stepped back): the
        detectors take it all the same, in arrival order; counted, and logged once."""
        channel.times_back += 1
        self.times_back += 1
        if channel.times_back == 1:
            name = self.config.id + (f".{channel.quantity}" if channel.quantity else "")
            log.warning("sensor %s: reading time went back %.3f s; detection goes on", name, by)

    def _joined(self, value: float, inputs: tuple[Input, ...]) -> tuple[float, ...] | None:
        """This reading and the latest of each joined series, as one vector."""
        vector = [value]
        for sensor, quantity in inputs:
            latest = self.latest.get(sensor)
            if isinstance(latest, Mapping):
                latest = latest.get(quantity or "")
            if not isinstance(latest, int | float) or isinstance(latest, bool):
                return None
            vector.append(float(latest))
        return tuple(vector)

    def hardware_status(self) -> dict[str, Any]:
        """What the device says about its hardware (an MCU link's counters), for status.json
        (any thread: counters only)."""
        status = getattr(self.device, "status", None)
        return {"hardware": status()} if callable(status) else {}

    def blocks(self, stamp: Stamp) -> None:
        """Hand a sensor's block of samples (a FIFO window) to the detectors that take one."""
        source = self._block_source
        taken = source.block(stamp.mono) if source is not None else None
        if taken is None:
            return
        quantity, times, samples = taken
        self.block(quantity, times, samples, stamp)

    def block(self, quantity: str | None, times: Any, samples: Any, stamp: Stamp) -> None:
        """A block of samples of one quantity (a FIFO window, an MCU's SAMPLES) to the
        detectors that take one; ``stamp`` is the newest sample's. A pushed block is a
        reading too: it recovers a degraded sensor."""
        self._blocks.add(quantity)
        if self._block_source is None:
            self.readings += 1
            self.failures = 0
            if self.degraded:
                self.degraded = False
                self.emit(self.config.id, "health", "info", None, stamp, {"state": "recovered"})
        channel = self.channels.get(quantity)
        if channel is None and self.open:
            channel = self.channels[quantity] = self._channel(quantity)
        if channel is None:
            return
        for watch in channel.detectors:
            detector_id = watch.id
            blocks = watch.blocks
            if blocks is None or watch.inputs:
                continue
            try:
                found_all = blocks.observe_block(times, samples)
            except (ValueError, ArithmeticError) as exc:  # one bad block must not stop the rest
                log.warning("detector %s skipped a block of %s: %s", detector_id, quantity, exc)
                continue
            for found in found_all:
                self._found(channel, detector_id, found, stamp)

    def _found(self, channel: Channel, detector_id: str, found: Detection, stamp: Stamp) -> None:
        fields: dict[str, Any] = {"detector": detector_id, **found.fields}
        if channel.quantity:
            fields["quantity"] = channel.quantity
        self.emit(self.config.id, found.kind, found.severity, found.value, stamp, fields)
        self.on_detection(detector_id, found, stamp)
