"""The device's side of Home Assistant: discovery configs, the state document, switches.

On every connect (after the birth) the device publishes, retained: an empty config for each
entity a previous config announced and this one no longer has (Home Assistant deletes the
entity), the config of each entity it has (:mod:`edge.uplink.homeassistant`), then its
state document. What was announced is kept in ``<state_dir>/homeassistant.json``, so a
sensor removed from the config is removed from Home Assistant at the next start; a removal
stays listed there until the broker has acknowledged it.

The state document, ``{prefix}/{device}/ha/state``, retained::

    {"ts": "...", "states": {"door": "ON", "fan": "OFF", "pump.valve": null},
     "detectors": {"cabinet-hot": "OFF"}}

holds the latest state of each boolean input and output (null until known) and each
detector (``OFF`` at start: a detector starts clear), taken from the committed events in
commit order, and is published again whenever one of them changes.

With ``switches = "unsigned"`` the device also takes Home Assistant's plain ``ON`` / ``OFF``
on ``{prefix}/{device}/ha/set/{output}`` and switches the output on the sampling thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.clock import Clock
from edge.config.device import Config
from edge.config.sensing import action_outputs
from edge.events import Event, format_ts
from edge.statefile import private_dir, write_atomically
from edge.uplink.commands import Bucket, shown
from edge.uplink.homeassistant import (
    BOOLEAN_TYPES,
    MAX_SWITCH_PAYLOAD,
    OFF,
    ON,
    Device,
    Entity,
    announcements,
    series,
    switch_command,
    switch_topic,
)
from edge.uplink.link import RetainedPublisher

log = logging.getLogger(__name__)

RECORD = "homeassistant.json"
Post = Callable[[Callable[[], None]], None]
DETECTOR_KINDS = frozenset({"threshold", "anomaly"})


class StateDocument:
    """The latest state of each boolean input, output and detector, from committed events.

    Used under its owner's lock: ``apply`` on the recorder's thread, ``payload`` there and on
    the link thread."""

    def __init__(
        self,
        sensors: Collection[str],
        outputs: Collection[str],
        detectors: Collection[str],
    ) -> None:
        self.states: dict[str, str | None] = dict.fromkeys([*sensors, *outputs])
        self.detectors: dict[str, str] = dict.fromkeys(detectors, OFF)
        self._sensors = frozenset(sensors)  # whose ``state`` events carry their own value
        # An MCU's outputs report as ``state`` events of the MCU sensor, naming the output.
        self._mcus = frozenset(key.split(".", 1)[0] for key in outputs if "." in key)
        self._watched = self._sensors | self._mcus
        self._detectors = frozenset(detectors)

    def apply(self, events: Sequence[Event]) -> bool:
        """Take what ``events`` (one commit, in seq order) say; whether anything changed."""
        changed = False
        for event in events:
            if event.kind == "state" and event.sensor in self._watched:
                changed |= self._state(event)
            elif event.kind in DETECTOR_KINDS and self._detectors:
                changed |= self._detection(event.body())
        return changed

    def _state(self, event: Event) -> bool:
        body = event.body()
        value = body.get("value")
        key = event.sensor
        if event.sensor in self._mcus and event.sensor not in self._sensors:
            key = f"{event.sensor}.{body.get('output')}"
        if key not in self.states or not isinstance(value, bool):
            return False
        new = ON if value else OFF
        old, self.states[key] = self.states[key], new
        return old != new

    def _detection(self, body: Mapping[str, Any]) -> bool:
        detector, state = body.get("detector"), body.get("state")
        if detector not in self._detectors or state not in ("active", "clear"):
            return False
        new = ON if state == "active" else OFF
        old, self.detectors[detector] = self.detectors[detector], new
        return old != new

    def payload(self, ts: str) -> bytes:
        body = {"ts": ts, "states": self.states, "detectors": self.detectors}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class HomeAssistant:
    """Announces the device to Home Assistant over the uplink's connection (a
    :class:`~edge.uplink.link.Companion`) and keeps its state document.

    Threads: ``connected`` runs on the uplink's link thread after each connect,
    ``committed`` on the recorder's thread after each commit, ``received`` on the link
    thread inside paho's callback (it posts the switching to the sampling thread and takes
    no lock), ``close`` on the runtime's. One lock serialises the publishing of the state
    document, so the broker keeps the newest.
    """

    def __init__(
        self,
        config: Config,
        units: Mapping[str, Mapping[str | None, str]],
        outputs: Mapping[str, Any],
        *,
        post: Post,
        clock: Clock,
        version: str,
    ) -> None:
        settings = config.homeassistant
        self.device = Device(
            config.device.id,
            settings.name or config.device.id,
            config.uplink.topic_prefix,
            settings.discovery_prefix,
            version,
            settings.switches,
        )
        self.entities: list[Entity] = announcements(self.device, config, series(config, units))
        switched = list(action_outputs({s.id: s for s in config.sensors}))
        inputs = [s.id for s in config.sensors if s.type in BOOLEAN_TYPES]
        self.document = StateDocument(
            [*inputs, *(o for o in switched if "." not in o)],
            [o for o in switched if "." in o],
            [d.id for d in config.detectors],
        )
        self.outputs = outputs  # output id -> device with set(on), built by the runtime
        self.post = post
        self.clock = clock
        self.record = Path(config.storage.state_dir) / RECORD
        self.unsigned = settings.switches == "unsigned" and bool(switched)
        prefix = f"{self.device.prefix}/{self.device.id}"
        self.subscriptions: list[str] = [f"{prefix}/ha/set/+"] if self.unsigned else []
        self.max_size = MAX_SWITCH_PAYLOAD
        # After a connect: each entity's config and the state document (removals are rare:
        # beyond this they wait in paho's queue for a moment).
        self.burst = len(self.entities) + 1
        self.ignored = 0  # switch commands that were not ON or OFF for a known output
        self._refusals = Bucket(1.0, 10.0, time.monotonic)  # log lines about them
        self._lock = threading.Lock()
        self._publish: RetainedPublisher | None = None
        self._removals: dict[str, Callable[[], bool]] = {}  # topic -> acknowledged yet?

    def __repr__(self) -> str:
        return f"HomeAssistant({self.device.id!r})"

    # -- the link thread ------------------------------------------------------------------

    def connected(self, publish: RetainedPublisher) -> None:
        """Delete what is gone, announce every entity, publish the state document."""
        with self._lock:
            self._publish = publish
            current = [entity.topic for entity in self.entities]
            done = {topic for topic, acked in self._removals.items() if acked()}
            gone = sorted(self._announced() - set(current) - done)
            self._write_record(current, gone)  # before anything new is on the broker
            self._removals = {}
            for topic in gone:
                acked = publish(topic, b"")
                if acked is not None:
                    self._removals[topic] = acked
            for entity in self.entities:
                config = json.dumps(entity.config, separators=(",", ":"), ensure_ascii=False)
                publish(entity.topic, config.encode())
            publish(self.device.state_topic, self.document.payload(self._now()))

    def received(self, topic: str, payload: bytes) -> None:
        """A plain switch command (``switches = "unsigned"``): switch on the sampling
        thread. Anything but ON or OFF for a known output is ignored (and counted)."""
        output = topic.rsplit("/", 1)[-1]
        on = switch_command(payload)
        target = self.outputs.get(output)
        if (
            on is None
            or target is None
            or topic != switch_topic(self.device.prefix, self.device.id, output)
        ):
            self.ignored += 1
            if self._refusals.take():
                log.warning("home assistant: ignored %r on %s (expected ON or OFF for an "
                            "output)", shown(payload, 20), shown(topic))  # fmt: skip
            return

        def switch() -> None:
            try:
                target.set(on)
            except Exception:  # a broken relay must not stop sampling
                log.exception("home assistant: switching %s failed", output)

        self.post(switch)

    # -- the recorder's thread ------------------------------------------------------------

    def committed(self, events: Sequence[Event]) -> None:
        """A commit: publish the state document again if an input, output or detector
        changed (the next connect publishes it anyway when offline now)."""
        with self._lock:
            if self.document.apply(events) and self._publish is not None:
                self._publish(self.device.state_topic, self.document.payload(self._now()))

    # -- the runtime's thread -------------------------------------------------------------

    def close(self) -> None:
        """Forget the removals the broker has acknowledged, in the record. Idempotent."""
        with self._lock:
            if any(acked() for acked in self._removals.values()):
                gone = [t for t, acked in self._removals.items() if not acked()]
                self._write_record([entity.topic for entity in self.entities], gone)
                self._removals = {t: self._removals[t] for t in gone}

    # -- the record -----------------------------------------------------------------------

    def _announced(self) -> set[str]:
        """The discovery topics announced before (and removals not yet acknowledged)."""
        try:
            body = json.loads(self.record.read_text(encoding="utf-8"))
            topics = body.get("topics", []) if isinstance(body, dict) else []
            return {topic for topic in topics if isinstance(topic, str)}
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:  # unreadable: nothing can be removed, say so
            log.warning("cannot read %s (%s): entities removed from the config stay in "
                        "Home Assistant", self.record, exc)  # fmt: skip
            return set()

    def _write_record(self, current: Sequence[str], gone: Sequence[str]) -> None:
        topics = sorted({*current, *gone})
        if topics == sorted(self._announced()):
            return  # unchanged: no write (flash wear)
        try:
            private_dir(self.record.parent)
            data = json.dumps({"topics": topics}, indent=1, ensure_ascii=False)
            write_atomically(self.record, data.encode())
        except OSError as exc:
            log.warning("cannot write %s: %s", self.record, exc)

    def _now(self) -> str:
        return format_ts(self.clock.wall())
