"""The runtime: sensors -> detectors -> outbox -> uplink, wired from one Config.

The sampling loop (scheduler) reads sensors and runs detectors and actions; the delivery
loop (:mod:`edge.runtime.delivery`: the recorder and the uplink) stores events and sends
them. The sampling loop only stamps and queues; it never waits on the network or the disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.clock import Clock, VirtualClock
from edge.config.device import Config, DetectorConfig
from edge.errors import ConfigError
from edge.events import Draft, Event, Stamp, format_ts
from edge.outbox.eviction import outbox_alarm
from edge.outbox.limits import OutboxLimits
from edge.outbox.store import Outbox
from edge.runtime.actions import Actions
from edge.runtime.config_files import config_version
from edge.runtime.delivery import Delivery
from edge.runtime.detector_state import DetectorStates
from edge.runtime.health import Health, Window, filesystem_bytes, health_json
from edge.runtime.heartbeat import Heartbeat
from edge.runtime.metrics import Family, MetricsOutputs, families
from edge.runtime.model_watch import ModelWatch
from edge.runtime.pushed import PushedReadings
from edge.runtime.recorder import RUNTIME_SENSOR
from edge.runtime.scheduler import Scheduler, staggered
from edge.runtime.sensing import SensorRunner
from edge.runtime.status_file import NAME as STATUS_NAME
from edge.runtime.status_file import status_file
from edge.runtime.systemd import Notifier
from edge.runtime.view_file import ViewFile
from edge.runtime.watcher import Watcher
from models import DETECTOR_TYPES, Detector, ModelError, Severity
from models.onnx_detector import OnnxDetector
from sensors import SENSOR_TYPES, Hardware, Value
from sensors.base import PushedSensor
from sensors.mcu import McuSensor

if TYPE_CHECKING:  # imported when [commands], [homeassistant] or [feedback] is enabled
    from edge.runtime.feedback import Feedback
    from edge.runtime.homeassistant import HomeAssistant
    from edge.uplink.commands import Commands, Handler, Request

log = logging.getLogger(__name__)

DRAIN_POLL = 0.05  # real seconds between checks of the outbox while draining


class Runtime:
    """One device's runtime, built from its config: sensors, detectors, actions, the outbox
    and the delivery loop, with commands, model hot reload and detector state when asked.

    Threads it starts: ``edgeline-sampler`` (the scheduler: every poll, filter, detector
    and action, and whatever other threads post to it), the delivery loop's
    ``edgeline-recorder``, ``edgeline-link`` and ``edgeline-sender``, the command worker,
    the model watcher, the detector-state writer, ``edgeline-status``, and with their
    settings ``edgeline-heartbeat``, ``edgeline-metrics`` (the textfile) and
    prometheus-client's HTTP server; Home Assistant discovery, when enabled, runs on the
    link and recorder threads. Edge sensors (``gpio.edge``) report
    on gpiozero's threads, pushed sensors (``serial.mcu``) on their link's, and are handled
    on the sampling thread. ``start``, ``close``,
    ``crash``, ``drain`` and ``status`` are called from the owner's thread (``edge run``'s
    main thread, the simulator); ``status`` reads counters only.
    """

    def __init__(
        self,
        config: Config,
        *,
        hardware: Hardware,
        clock: Clock,
        drive_clock: bool = False,
        watcher: Watcher | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier  # systemd: the sampling loop feeds its watchdog
        self.device = config.device.id
        self.clock = clock
        self.hardware = hardware
        self.watcher = watcher or Watcher()
        storage = config.storage
        self.outbox = Outbox.open(
            storage.state_dir,
            self.device,
            durability=storage.durability,
            epoch=clock.epoch,
            limits=OutboxLimits.from_config(storage),
            clock=clock,
        )
        self.scheduler = Scheduler(clock, drive_clock=drive_clock)
        self.detector_states = DetectorStates(storage.state_dir)  # what detectors learnt
        self.models = ModelWatch(self.scheduler)  # hot reload of model files
        self.sensors: dict[str, SensorRunner] = {}
        self._onnx: dict[str, OnnxDetector] = {}  # by detector id: what model commands drive
        self.actions = Actions(config.actions, self.scheduler)
        self._thread: threading.Thread | None = None
        self._closed = False
        self.commands = self._commands()  # None unless [commands] enabled
        self.homeassistant: HomeAssistant | None = None
        self.status_file: ViewFile | None = None
        if storage.status_interval > 0:
            path = Path(storage.state_dir) / STATUS_NAME
            self.status_file = status_file(path, self.status_report, storage.status_interval)
        self._started = ""
        self._config_sha256 = _file_sha256(config.source)  # the birth and status say it
        self.metrics: MetricsOutputs | None = None
        self.feedback: Feedback | None = None
        try:
            self.delivery = self._delivery()
            self.recorder, self.uplink = self.delivery.recorder, self.delivery.uplink
            self.feedback = self._feedback()  # None unless [feedback] enabled
            # The figures the heartbeat, status.json and the metrics share (edge.runtime.health).
            self.health = Health(
                clock=clock,
                scheduler=self.scheduler,
                sensors=self.sensors,
                outbox=self.outbox,
                queued=lambda: self.recorder.queued,
                link=lambda: self.uplink.stats,
                card_bytes=storage.card_bytes or filesystem_bytes(storage.state_dir),
                card_tbw_per_gb=storage.card_tbw_per_gb,
            )
            self._status_window = Window()  # status.json's rates: since its last rewrite
            self.heartbeat: Heartbeat | None = None
            if config.uplink.heartbeat > 0:
                self.heartbeat = Heartbeat(
                    config.uplink.heartbeat, self.health, self.uplink.publish_status, self.scheduler
                )
            self._build_sensors()
            if self.commands is not None:
                self.commands.handlers.update(self._command_handlers())
            self.homeassistant = self._homeassistant()  # None unless [homeassistant] enabled
            if config.metrics.enabled:  # the port is listening from here on
                self.metrics = MetricsOutputs(config.metrics, config.source, self.metric_families)
        except BaseException:
            self._close_sensors()
            self._close_feedback()
            self.outbox.close()
            raise

    def _delivery(self) -> Delivery:
        config = self.config
        delivery = Delivery(
            self.outbox,
            self.clock,
            config.uplink,
            device=self.device,
            window=config.storage.commit_window_ms / 1000,
            bulk_window=config.storage.bulk_window / 1000,
            birth={
                "stream": self.outbox.stream,
                "outbox": self.outbox.describe(),
                "version": __version__,
                "sensors": [s.id for s in config.sensors],
                "config_sha256": self._config_sha256,
                "config_version": config_version(self._config_sha256),
                # How often to expect a heartbeat: a consumer judges the status's age by it.
                **({"heartbeat_s": config.uplink.heartbeat} if config.uplink.heartbeat else {}),
            },
            commands=self.commands,
        )
        delivery.listen(self._stored)
        return delivery

    def metric_families(self) -> list[Family]:
        """The metrics now (any thread but the sampling one: edge.runtime.health)."""
        return families(self.health.figures(), device=self.device, version=__version__)

    def _commands(self) -> Commands | None:
        settings = self.config.commands
        if not settings.enabled:
            return None
        from edge.runtime.command_handlers import ping
        from edge.uplink.command_guard import ReplayGuard
        from edge.uplink.commands import Checker, Commands, Policy

        where = "key_file" if settings.key_file else "key_env"
        try:
            key = settings.key()
        except OSError as exc:
            self.outbox.close()
            raise ConfigError([f"{self.config.source}: commands.{where}: {exc}"]) from exc

        def send(name: str, payload: bytes, request: Request | None) -> None:
            # Only an authenticated request may name where its reply goes.
            trusted = request is not None and request.authenticated
            response = request.response_topic if request and trusted else None
            correlation = request.correlation if request and trusted else None
            self.uplink.reply(name, payload, response, correlation)

        if self.config.uplink.protocol != "5":
            from edge.uplink.memory import return_big_buffers

            # No Maximum Packet Size in MQTT 3.1.1: a huge command is read whole, then
            # dropped; its buffers must go back to the OS, not stay in the process.
            return_big_buffers()
        policy = Policy(key, settings.max_age, settings.max_size)
        checker = Checker(self.device, policy, ReplayGuard(self.config.storage.state_dir))
        return Commands(
            checker,
            {"ping": ping},
            send,
            wall=self.clock.wall,
            synced=self.clock.synced,
            died=self._command_worker_died,
        )

    def _feedback(self) -> Feedback | None:
        """Operators' verdicts and the thresholds they move, when the config asks."""
        if not self.config.feedback.enabled:
            return None
        from edge.runtime.feedback import Feedback

        def health(sensor: str, fields: dict[str, Any]) -> None:  # any thread
            stamp = self.stamp()
            self.recorder.submit(Draft(sensor, "health", "info", None, stamp.mono, stamp.wall,
                                       stamp.synced, fields))  # fmt: skip

        feedback = Feedback(
            self.config.feedback,
            self.config.storage.state_dir,
            stream=self.outbox.stream,
            post=self.scheduler.post,
            health=health,
            wall=self.clock.wall,
            last_seq=lambda: self.outbox.last_seq,
        )
        self.delivery.listen(feedback.committed)
        return feedback

    def _close_feedback(self) -> None:
        if self.feedback is not None:
            self.feedback.close()

    def _homeassistant(self) -> HomeAssistant | None:
        """Home Assistant discovery, on the uplink's connection, when the config asks."""
        if not self.config.homeassistant.enabled:
            return None
        from edge.runtime.homeassistant import HomeAssistant

        units: dict[str, dict[str | None, str]] = {}
        for sensor_id, runner in self.sensors.items():
            if list(runner.channels) == [None]:  # a single value, in its device's unit
                units[sensor_id] = {None: runner.unit}
            else:  # the quantities its telemetry events name, with their units
                declared = runner.declared_units
                units[sensor_id] = {q: declared.get(q, "") for q in runner.channels if q}
        homeassistant = HomeAssistant(
            self.config,
            units,
            self.actions.outputs,
            post=self.scheduler.post,
            clock=self.clock,
            version=__version__,
        )
        self.uplink.carry(homeassistant)
        self.delivery.listen(homeassistant.committed)
        return homeassistant

    def _command_worker_died(self, reason: str) -> None:
        """The command worker ended and was replaced (its thread): say so upstream."""
        stamp = self.stamp()
        fields = {"state": "restarted", "component": "commands", "reason": reason}
        draft = Draft(RUNTIME_SENSOR, "health", "warning", None, stamp.mono, stamp.wall,
                      stamp.synced, fields)  # fmt: skip
        self.recorder.submit(draft)

    def _command_handlers(self) -> dict[str, Handler]:
        from edge.runtime.command_handlers import (
            model_handler,
            output_handler,
            replay_handler,
            status_handler,
        )

        return {
            "status": status_handler(
                self.outbox, self.sensors, self.commands.counters if self.commands else None
            ),
            "model": model_handler(self._onnx, self.scheduler.post, self.config.storage.state_dir),
            "replay": replay_handler(self.outbox, self.config.uplink),
            "output": output_handler(self.actions.outputs, self.scheduler.post),
            **(self.feedback.handlers() if self.feedback is not None else {}),
        }

    def _build_sensors(self) -> None:
        detectors: dict[str, list[tuple[DetectorConfig, Detector]]] = {}
        for index, det in enumerate(self.config.detectors):
            try:
                detector = DETECTOR_TYPES[det.type].build(det.params)
            except ModelError as exc:  # a model file missing, unreadable or refused
                where = f"{self.config.source}: detectors[{index}] ({det.id!r})"
                raise ConfigError([f"{where}: {exc}"]) from exc
            self.detector_states.add(det.id, detector)  # resumes a persistent detector
            if self.feedback is not None:  # keeps its readings, may move its threshold
                detector = self.feedback.watch(det.id, det.sensor, det.quantity, detector)
            if isinstance(detector, OnnxDetector):
                self.models.add(det.id, detector)
                self._onnx[det.id] = detector
            detectors.setdefault(det.sensor, []).append((det, detector))
        latest: dict[str, Value] = {}  # each sensor's latest reading, for joined inputs
        for cfg in self.config.sensors:
            kind = SENSOR_TYPES[cfg.type]
            device = kind.build(cfg.params, self.hardware)
            self.sensors[cfg.id] = SensorRunner(
                cfg,
                kind,
                device,
                detectors.get(cfg.id, []),
                emit=self._emit,
                on_detection=self.actions.detected,
                latest=latest,
            )
            if cfg.type == "gpio.output":
                self.actions.outputs[cfg.id] = device
            if isinstance(device, McuSensor):  # its outputs, as <sensor>.<output>
                for name in device.params.outputs:
                    self.actions.outputs[f"{cfg.id}.{name}"] = device.output(name)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, until: float | None = None) -> None:
        """Start every thread; sampling runs until ``stop()`` or the clock reaches ``until``."""
        self.delivery.start()
        self.models.start()
        if self.commands is not None:
            self.commands.start()
        # Sensors sharing an interval are spread across it in small bursts, not all due at once.
        configs = [sensor.config for sensor in self.sensors.values()]
        first = staggered((c.id, c.interval) for c in configs if c.interval is not None)
        for sensor in self.sensors.values():
            if sensor.config.interval is not None:
                poll = self._poller(sensor)
                offset = first[sensor.config.id]
                self.scheduler.every(sensor.config.id, sensor.config.interval, poll, first=offset)
            elif isinstance(sensor.device, PushedSensor):
                readings = PushedReadings(sensor, self.scheduler, self.clock, self.watcher)
                sensor.device.listen(readings)
            else:
                device: Any = sensor.device
                device.start(self._edge_handler(sensor))
        self.detector_states.start(self.scheduler)
        self.health.start()
        if self.heartbeat is not None:  # before the loop runs: its queue is the loop's then
            self.heartbeat.start()
        interval = self.notifier.watchdog_interval if self.notifier is not None else None
        if self.notifier is not None and interval is not None:
            # On the sampling thread, as a task like any sensor's: a stuck loop stops
            # pinging, and systemd restarts the service.
            self.scheduler.every("systemd-watchdog", interval, self.notifier.watchdog)
        self._started = format_ts(self.clock.wall())
        self.sample(until)
        if self.status_file is not None:  # sampling has started: the file says running
            self.status_file.start()
        if self.metrics is not None:
            self.metrics.start()

    def sample(self, until: float | None = None) -> None:
        """(Re)start the sampling thread, until ``stop()`` or the clock reaches ``until``."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the sampling loop is already running")
        self._thread = threading.Thread(
            target=self.scheduler.run, kwargs={"until": until}, name="edgeline-sampler", daemon=True
        )
        self._thread.start()

    def sampling_done(self, timeout: float | None = None) -> bool:
        """Wait for the sampling loop to finish (it reached ``until`` or was stopped)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def drain(self, timeout: float) -> bool:
        """Wait (real time) until every stored event has been acknowledged by the broker.

        A clock the scheduler drives stands still once sampling ends; here it moves at
        real speed, so the uplink's backoff and keepalive still run out. Checked at least
        once, so a ``timeout`` already spent still says whether the outbox is empty.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.recorder.flush(timeout=1.0)
            if not self.outbox.has_pending() and not self.recorder.queued:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            pause = min(DRAIN_POLL, left)
            time.sleep(pause)  # the poll interval of a bounded wait
            if self.scheduler.drive_clock and isinstance(self.clock, VirtualClock):
                self.clock.advance(pause)

    def close(self, timeout: float = 5.0) -> None:
        """Stop sampling, commit what is pending, publish ``offline``, close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.scheduler.stop()
            self.models.close()
            if self.commands is not None:
                self.commands.close(timeout)
            self.sampling_done(timeout)
            if self.heartbeat is not None:  # none after the offline status below
                self.heartbeat.close()
            self.detector_states.close()  # sampling has stopped: save what they learnt
            self._close_sensors()
            self.delivery.close(timeout)  # stored, offline published, deletions committed
            if self.homeassistant is not None:  # removals the broker has, forgotten
                self.homeassistant.close()
            if self.status_file is not None:  # the final counts, and "stopped"
                self.status_file.close()
        finally:
            if self.metrics is not None:  # the textfile's final counts; the port closed
                self.metrics.close()
            self.recorder.close()  # idempotent: stopped even when closing failed early
            self._close_feedback()
            self.outbox.close()

    def crash(self) -> None:
        """Stop at once, as a power cut does: nothing is flushed or said.

        Events not yet committed are lost (``append`` had not returned for them), the
        broker sees the connection drop and publishes the last will, and the outbox
        stays as its last commit left it. For the simulator's power-cut injection.
        """
        if self._closed:
            return
        self._closed = True
        self.scheduler.stop()
        self.models.close()
        if self.commands is not None:
            self.commands.close(1.0)
        self.sampling_done(5.0)
        if self.heartbeat is not None:
            self.heartbeat.close()
        if self.status_file is not None:
            self.status_file.close(final=False)  # a power cut leaves the last "running"
        if self.metrics is not None:  # a restart on the same config binds the port again
            self.metrics.close(final=False)
        self.detector_states.abort()
        self.delivery.abort()
        self._close_sensors()  # the hardware outlives the process: free its pins
        self._close_feedback()
        self.outbox.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _close_sensors(self) -> None:
        for sensor in self.sensors.values():
            try:
                sensor.device.close()
            except Exception:
                log.exception("closing sensor %s failed", sensor.config.id)

    # -- the sampling path (scheduler thread) ---------------------------------------------

    def stamp(self) -> Stamp:  # any thread: clock reads only
        return Stamp(self.clock.monotonic(), self.clock.wall(), self.clock.synced())

    def _poller(self, sensor: SensorRunner) -> Callable[[float], None]:
        device: Any = sensor.device

        def poll(due: float) -> None:
            if not sensor.due(due):
                return  # a failing sensor waits out its retry delay; the others go on
            try:
                value = device.read()
            except Exception as exc:  # a bus fault is transient: report, go on sampling
                if not sensor.degraded:  # once per outage: the health event says the rest
                    log.warning("sensor %s failed: %s", sensor.config.id, exc)
                sensor.fault(exc, self.stamp())
                return
            stamp = self.stamp()
            self.watcher.reading(sensor.config.id, value, sensor.unit, stamp.mono)
            sensor.reading(value, stamp)

        return poll

    def _edge_handler(self, sensor: SensorRunner) -> Callable[[Value], None]:
        def emit(value: Value) -> None:  # gpiozero's thread: stamp now, handle on the loop
            stamp = self.stamp()

            def handle() -> None:
                self.watcher.reading(sensor.config.id, value, sensor.unit, stamp.mono)
                sensor.reading(value, stamp)

            self.scheduler.post(handle)

        return emit

    def _emit(
        self,
        sensor: str,
        kind: str,
        severity: Severity,
        value: Any,
        stamp: Stamp,
        fields: dict[str, Any],
    ) -> None:
        draft = Draft(sensor, kind, severity, value, stamp.mono, stamp.wall, stamp.synced, fields)
        self.recorder.submit(draft)
        self.watcher.drafted(draft)

    # -- after commit (recorder thread) ---------------------------------------------------

    def _stored(self, events: Sequence[Event]) -> None:
        alarm = outbox_alarm(events)  # the outbox filled with critical events, or recovered
        output = self.actions.outputs.get(self.config.storage.full_output or "")
        if alarm is not None and output is not None:
            self.scheduler.post(lambda: output.set(alarm))
        self.watcher.committed(events)

    def status_report(self) -> dict[str, Any]:
        """What ``<state_dir>/status.json`` says (the status file's thread: counters and
        the outbox's stats, which take its lock, never the sampling thread's time); one
        reading of :class:`~edge.runtime.health.Health`, as the heartbeat and the metrics."""
        figures = self.health.figures()
        stats, link = figures.outbox, figures.link
        return {
            "device": self.device,
            "version": __version__,
            # Whose file this is: edge deploy matches it to the service's main pid, so that a
            # fresh file left by the release before is not taken for the new one's.
            "pid": os.getpid(),
            "config": self.config.source,
            "config_sha256": self._config_sha256,
            "config_version": config_version(self._config_sha256),
            "started": self._started,
            "time": format_ts(self.clock.wall()),
            "synced": self.clock.synced(),
            "readings": figures.readings,
            "jitter_p99_ms": round(figures.lateness_p99_s * 1000, 3),
            "sensors": {
                sensor_id: {
                    "state": "degraded" if counts.degraded else "ok",
                    "readings": counts.readings,
                    "faults": counts.faults,
                    **self.sensors[sensor_id].hardware_status(),
                }
                for sensor_id, counts in figures.sensors.items()
            },
            "models": {
                detector_id: {"name": d.model_name, "version": d.model_version}
                for detector_id, d in self._onnx.items()
            },
            "outbox": {
                "last_seq": stats.last_seq,
                "pending": stats.pending,
                "oldest_age_s": stats.as_json()["oldest_age_s"],
                "evicted": stats.evicted,
            },
            "link": {
                "state": link.state,
                "broker": link.broker,  # connected to, or (not online) tried last
                "failovers": link.failovers,
                "acked": link.acked,
                "last_error": link.last_error,
            },
            # The heartbeat's own block (rates over this file's interval, not the heartbeat's).
            "health": health_json(figures, self._status_window.rates(figures)),
        }

    def status(self) -> dict[str, Any]:
        """A snapshot for the console line and for tests."""
        jitter = self.scheduler.jitter()
        return {
            "time": format_ts(self.clock.wall()),
            "readings": sum(s.readings for s in self.sensors.values()),
            "last_seq": self.outbox.last_seq,
            "queued": self.recorder.queued,
            "link": self.uplink.stats.state,
            "broker": self.uplink.stats.broker,
            "acked": self.uplink.stats.acked,
            "jitter_p99_ms": round(jitter.p99 * 1000, 3),
        }


def _file_sha256(source: str) -> str | None:
    """The config file's sha256 (which config runs; read once, at start), or None for a
    config not from a file."""
    try:
        return hashlib.sha256(Path(source).read_bytes()).hexdigest()
    except (OSError, ValueError):
        return None
