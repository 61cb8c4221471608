"""Remote config: the signed ``config`` command, applied by restarting the runtime in-process,
confirmed healthy within a timeout or rolled back.

The command (on the command worker) reads its arguments (:mod:`edge.runtime.config_upload`),
validates the TOML with the checks ``edge check-config`` runs, refuses changes to the keys a
remote config may not touch (:data:`LOCKED`), and stages the text as ``edge.toml.new``
beside the running config. Its answer is deferred: the runtime the worker belongs to is
about to close. The runtime's owner (``edge run``'s main thread, in :meth:`Reconfigurer.serve`)
then closes the runtime cleanly (every event committed, the outbox kept: the new runtime
continues the same stream), makes the staged file the config (the old one kept as
``edge.toml.previous``), and starts a runtime on it. Healthy means: every polled or pushed
sensor gave a reading and the uplink is connected, within ``timeout`` seconds of the
runtime's clock. Otherwise the new runtime is closed, the previous file restored and a
runtime started on it again. The reply (``applied``, ``rolled back: <reason>``, or a
refusal with its ``problems``) is sent by whichever runtime runs then, and the outcome is
also a ``health`` event of sensor ``runtime`` in the outbox: the durable record, should the
reply be lost.

Under systemd the same happens inside the service's process (no ``systemctl restart``): one
path, the watchdog fed by each runtime's sampling loop, and the rollback never depends on
a process that is gone.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.config.device import Config, load, parse
from edge.errors import ConfigError, one_line
from edge.events import Draft
from edge.runtime.config_files import ConfigFiles, config_version, sha256_of
from edge.runtime.config_upload import Chunk, Uploads, decode, read_args
from edge.runtime.recorder import RUNTIME_SENSOR
from edge.uplink.commands import CommandRefused, Deferred, Handler, Request
from sensors.base import PushedSensor

if TYPE_CHECKING:
    from edge.runtime.runtime import Runtime
    from models import Severity

log = logging.getLogger(__name__)

Build = Callable[[Config], "Runtime"]
POLL = 0.1  # seconds between looks at the new runtime's health
SHOWN_PROBLEMS = 20  # problems a refusal's health event lists (the reply lists them all)

# Keys a remote config may not change: the device's identity and outbox (a new id or state
# directory would start another stream), and the command path itself (a config that
# disabled commands or changed the key would lock the operator out with no way back;
# health cannot see that). They change by editing the file on the device.
LOCKED: tuple[tuple[str, Callable[[Config], object]], ...] = (
    ("device.id", lambda c: c.device.id),
    ("storage.state_dir", lambda c: c.storage.state_dir),
    ("commands.enabled", lambda c: c.commands.enabled),
    ("commands.key_file", lambda c: c.commands.key_file),
    ("commands.key_env", lambda c: c.commands.key_env),
    ("commands.allow_unsigned", lambda c: c.commands.allow_unsigned),
)


class ConfigRefused(CommandRefused):
    """A config that did not pass validation; ``problems`` lists each, as check-config does."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"refused: {count}: {problems[0] if problems else ''}")


def check(text: str, current: Config) -> Config:
    """The config ``text`` validated as ``edge check-config`` does, and none of the
    :data:`LOCKED` keys changed from ``current``; ``ConfigRefused`` lists what is wrong."""
    try:
        new = parse(text, "remote config")
    except ConfigError as exc:
        raise ConfigRefused(exc.problems) from None
    changed = [
        f"remote config: {key}: may not change remotely (it is {value(current)!r} on the device,"
        f" the config says {value(new)!r}); edit the file on the device to change it"
        for key, value in LOCKED
        if value(current) != value(new)
    ]
    if changed:
        raise ConfigRefused(changed)
    return new


@dataclass(frozen=True)
class Pending:
    """A config staged as ``.new``, waiting for the owner to apply it."""

    request: Request
    sha256: str
    timeout: float


class Reconfigurer:
    """Owns the running :class:`Runtime` and swaps it for one on a new config.

    Threads: the ``config`` handler runs on the command worker and only stages a file and
    queues a :class:`Pending`; ``start``, ``serve``, ``apply`` and ``close`` run on the
    owner's thread (``edge run``'s main thread), the only one that closes and builds
    runtimes. ``runtime`` is the one running now."""

    def __init__(self, path: str | Path, build: Build) -> None:
        self.files = ConfigFiles(path)
        self.build = build
        self.runtime: Runtime | None = None
        self._lock = threading.Lock()
        self._pending: Pending | None = None
        self._busy = False  # a config is staged or being applied: another one is refused

    # -- the owner's thread -------------------------------------------------------------

    def start(self, runtime: Runtime) -> None:
        """Run ``runtime`` (built from this file), answering ``config`` commands. It is
        this service's from now on: ``close`` closes it, even when it failed to start."""
        self.runtime = runtime
        self._hook(runtime)
        runtime.start()

    def serve(
        self, stop: threading.Event, tick: Callable[[Runtime], None] | None = None
    ) -> Runtime:
        """Until ``stop`` is set or sampling ends: apply each config that arrives, and call
        ``tick`` about once a second with the runtime running then. Returns that runtime
        (still running: the caller closes it)."""
        polls = 0
        while not stop.wait(0.2):
            pending = self._take()
            if pending is not None:
                self.apply(pending, stop)
            runtime = self._running()
            if runtime.sampling_done(0):
                break
            polls += 1
            if tick is not None and polls % 5 == 0:
                tick(runtime)
        return self._running()

    def apply(self, pending: Pending, stop: threading.Event) -> bool:
        """Close the runtime, run the staged config, confirm it or roll back; answer the
        command and report the outcome. True when the new config is live."""
        old = self._running()
        previous = sha256_of(self.files.current())
        log.info("applying config %s (health within %g s)", pending.sha256, pending.timeout)
        old.close()
        swapped = False
        try:
            self.files.swap()
            swapped = True
            runtime, reason = self._try(pending.timeout, stop)
        except OSError as exc:  # a full disk, say: edge.toml is still the old config
            runtime, reason = None, f"cannot install the new config: {exc.strerror or exc}"
        finally:
            with self._lock:
                self._busy = False
        fields = {"config_sha256": pending.sha256, "previous_sha256": previous}
        if runtime is not None:
            self.runtime = runtime
            log.info("config %s applied", pending.sha256)
            applied = {**fields, "config_version": config_version(pending.sha256)}
            report(runtime, "config_applied", "info", applied)
            reply(runtime, pending.request, {"ok": True, "result": {"state": "applied", **applied}})
            return True
        log.warning("config %s rolled back: %s", pending.sha256, reason)
        if swapped:
            self.files.restore()
        restored = self.build(load(self.files.path))  # the config that ran before: it builds
        self.start(restored)
        report(restored, "config_rolled_back", "warning", {**fields, "reason": reason})
        # Its uplink was just started: wait (bounded) until the reply can go out.
        until_online(restored, pending.timeout, stop)
        reply(restored, pending.request, {"ok": False, "error": f"rolled back: {reason}"})
        return False

    def close(self) -> None:
        if self.runtime is not None:
            self.runtime.close()

    def _try(self, timeout: float, stop: threading.Event) -> tuple[Runtime | None, str]:
        """A runtime on the new file, started and healthy; else None and why not."""
        try:
            runtime = self.build(load(self.files.path))
        except Exception as exc:  # a model file missing, hardware absent, ...: roll back
            return None, f"the runtime did not start: {_said(exc)}"
        try:
            self.start(runtime)
        except Exception as exc:
            runtime.close()
            return None, f"the runtime did not start: {_said(exc)}"
        reason = confirm(runtime, timeout, stop)
        if reason is None:
            return runtime, ""
        runtime.close()
        return None, reason

    def _running(self) -> Runtime:
        if self.runtime is None:
            raise RuntimeError("the Reconfigurer has not been started")
        return self.runtime

    def _take(self) -> Pending | None:
        with self._lock:
            pending, self._pending = self._pending, None
            return pending

    # -- the command worker -------------------------------------------------------------

    def _hook(self, runtime: Runtime) -> None:
        if runtime.commands is not None:  # before start(): the worker is not running yet
            runtime.commands.handlers["config"] = self._handler(runtime)

    def _handler(self, runtime: Runtime) -> Handler:
        uploads = Uploads(runtime.config.storage.state_dir)

        def config(args: Mapping[str, Any]) -> Mapping[str, Any]:
            found = read_args(args)
            if isinstance(found, Chunk):
                data = uploads.add(found)
                if data is None:
                    missing = uploads.missing(found)
                    return {"received": found.index, "of": found.of, "missing": missing}
                text, sha256 = decode(data), found.sha256
            else:
                text, sha256 = found.text, found.sha256
            try:
                check(text, runtime.config)
            except ConfigRefused as exc:
                fields = {"config_sha256": sha256, "problems": exc.problems[:SHOWN_PROBLEMS]}
                report(runtime, "config_refused", "warning", fields)
                raise
            with self._lock:
                if self._busy:
                    raise CommandRefused("busy: another config is being applied")
                self._busy = True
            try:
                self.files.stage(text)
            except OSError as exc:
                with self._lock:
                    self._busy = False
                where = self.files.new
                raise CommandRefused(f"cannot write {where}: {exc.strerror or exc}") from None

            def hand_over(request: Request) -> None:
                with self._lock:
                    self._pending = Pending(request, sha256, found.timeout)

            raise Deferred(hand_over)

        return config


def confirm(runtime: Runtime, timeout: float, stop: threading.Event) -> str | None:
    """None once every polled or pushed sensor has given a reading and the uplink is
    connected; else, at ``timeout`` (the runtime's clock) or ``stop``, what is missing.

    Edge-triggered inputs (``gpio.edge``) are not waited for: they read only on a change,
    and building them has already claimed their pins."""
    clock = runtime.clock
    deadline = clock.monotonic() + timeout
    while True:
        silent = [
            (sensor_id, runner.faults)
            for sensor_id, runner in runtime.sensors.items()
            if runner.readings == 0
            and (runner.config.interval is not None or isinstance(runner.device, PushedSensor))
        ]
        online = runtime.uplink.stats.state == "online"
        if not silent and online:
            return None
        if stop.is_set() or clock.monotonic() >= deadline:
            break
        clock.wait(stop, min(deadline, clock.monotonic() + POLL))
    reasons = [
        f"no reading from sensor {sensor_id!r} within {timeout:g} s ({faults} failed reads)"
        for sensor_id, faults in silent
    ]
    if not online:
        error = runtime.uplink.stats.last_error
        reasons.append(
            f"the uplink did not connect within {timeout:g} s" + (f" ({error})" if error else "")
        )
    if stop.is_set():
        reasons.insert(0, "stopped before the config was confirmed")
    return "; ".join(reasons)


def until_online(runtime: Runtime, timeout: float, stop: threading.Event) -> bool:
    clock = runtime.clock
    deadline = clock.monotonic() + timeout
    while runtime.uplink.stats.state != "online":
        if stop.is_set() or clock.monotonic() >= deadline:
            return False
        clock.wait(stop, min(deadline, clock.monotonic() + POLL))
    return True


def report(runtime: Runtime, state: str, severity: Severity, fields: Mapping[str, Any]) -> None:
    """A ``health`` event of sensor ``runtime`` (any thread: the recorder queues it)."""
    stamp = runtime.stamp()
    body = {"state": state, **fields}
    draft = Draft(RUNTIME_SENSOR, "health", severity, None, stamp.mono, stamp.wall,
                  stamp.synced, body)  # fmt: skip
    runtime.recorder.submit(draft)


def reply(runtime: Runtime, request: Request, outcome: Mapping[str, Any]) -> None:
    """The deferred answer to ``request``, as the command worker would have sent it."""
    body = json.dumps({"id": request.id, **outcome}, separators=(",", ":")).encode()
    trusted = request.authenticated
    response = request.response_topic if trusted else None
    correlation = request.correlation if trusted else None
    if not runtime.uplink.reply(request.name, body, response, correlation):
        log.warning("the reply to config %s was not sent (offline); its health event says it",
                    request.id)  # fmt: skip


def _said(exc: BaseException) -> str:
    return one_line(str(exc) or type(exc).__name__)[:500]
