"""What the runtime answers to: the ``ping``, ``status``, ``model``, ``replay`` and ``output``
commands.

``replay`` publishes a seq range of the outbox once more, for a consumer that found a gap::

    {"from_seq": 120, "to_seq": 180, "stream": "3dca501460161670"}

``to_seq`` defaults to the newest; ``stream``, when given, must be the outbox's own (a
consumer asking about a stream from before a reset gets a refusal, not another stream's
events). It sends what the outbox still holds (pending, and delivered events kept with
``[storage] keep_delivered``) over a one-shot connection of its own, as ``edge outbox
replay`` does, and answers with what it sent and the ranges it no longer holds.

``model`` drives an ``onnx`` detector's models from the cloud side::

    {"detector": "bearing-anomaly",
     "action": "reload" | "shadow" | "promote" | "drop" | "status" | "put",
     "path": "/etc/edgeline/models/bearing-v2.onnx"}

``reload`` and ``shadow`` read the file on the command worker (``path``: a file in the same
directory as the detector's configured model; default the configured model, or its
``shadow`` file) and swap it in or start it in shadow on the sampling thread, as a changed
file does; ``promote`` and ``drop`` end a shadow trial; ``status`` says which model runs,
its threshold, sha256 and last score, and how a candidate compares. ``put`` sends a new
model file in chunks and starts it in shadow (:mod:`edge.runtime.model_put`). Each outcome
is also the detector's usual ``health`` event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from edge.errors import OutboxError, UplinkError
from edge.uplink.commands import CommandRefused, Handler, on_sampler
from models.errors import ModelError
from models.shipped import model_path

if TYPE_CHECKING:
    from edge.config.device import UplinkConfig
    from edge.outbox.store import Outbox
    from edge.runtime.sensing import SensorRunner
    from models.onnx_detector import OnnxDetector

Post = Callable[[Callable[[], None]], None]
ACTIONS = ("reload", "shadow", "promote", "drop", "status", "put")
MAX_REPLAY = 100_000  # events one command may ask for: a gap, not the whole history


def ping(args: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"pong": True, **({"echo": args["echo"]} if "echo" in args else {})}


def output_handler(outputs: Mapping[str, Any], post: Post) -> Handler:
    """``output``: switch a ``gpio.output`` or an MCU's output (``<sensor>.<output>``) on or
    off, on the sampling thread, as an action would (what Home Assistant's switches send
    through ``edge homeassistant bridge``)."""

    def output(args: Mapping[str, Any]) -> Mapping[str, Any]:
        name, on = args.get("output"), args.get("on")
        target = outputs.get(name) if isinstance(name, str) else None
        if target is None:
            known = ", ".join(sorted(outputs)) or "none"
            raise CommandRefused(f"output must name an output ({known}), got {name!r}")
        if not isinstance(on, bool):
            raise CommandRefused(f"on must be true or false, got {on!r}")
        on_sampler(post, lambda: target.set(on))
        return {"output": name, "on": on}

    return output


def status_handler(
    outbox: Outbox,
    sensors: Mapping[str, SensorRunner],
    commands: Callable[[], Mapping[str, int]] | None = None,
) -> Handler:
    def status(args: Mapping[str, Any]) -> Mapping[str, Any]:
        stats = outbox.stats().as_json()
        return {
            **({"commands": dict(commands())} if commands is not None else {}),
            "outbox": stats,
            "sensors": {
                sensor_id: {
                    "state": "degraded" if runner.degraded else "ok",
                    "readings": runner.readings,
                    "faults": runner.faults,
                }
                for sensor_id, runner in sensors.items()
            },
        }

    return status


def replay_handler(outbox: Outbox, settings: UplinkConfig) -> Handler:
    def replay(args: Mapping[str, Any]) -> Mapping[str, Any]:
        from edge.uplink.replay import replay_range

        first, last = args.get("from_seq"), args.get("to_seq")
        if not _seq(first):
            raise CommandRefused(f"from_seq must be a seq (an integer >= 1), got {first!r}")
        if last is not None and not _seq(last):
            raise CommandRefused(f"to_seq must be a seq (an integer >= 1), got {last!r}")
        stream = args.get("stream")
        if stream is not None and stream != outbox.stream:
            raise CommandRefused(f"stream {stream!r} is not this outbox's ({outbox.stream})")
        top = outbox.last_seq if last is None else min(last, outbox.last_seq)
        if top - first + 1 > MAX_REPLAY:
            raise CommandRefused(f"at most {MAX_REPLAY} events a command, asked {top - first + 1}")
        try:
            done = replay_range(outbox, settings, first=first, last=last)
        except (OutboxError, UplinkError) as exc:
            raise CommandRefused(str(exc)) from None
        return {
            "stream": done.stream,
            "from_seq": done.first,
            "to_seq": done.last,
            "sent": done.sent,
            "acked": done.acked,
            "missing": done.missing,
        }

    return replay


def _seq(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def model_handler(
    detectors: Mapping[str, OnnxDetector], post: Post, state_dir: str | Path | None = None
) -> Handler:
    """``model``; ``put`` needs ``state_dir``, where its chunks wait."""
    from edge.runtime.model_put import ModelPuts

    puts = None if state_dir is None else ModelPuts(state_dir, post)

    def model(args: Mapping[str, Any]) -> Mapping[str, Any]:
        detector_id, action = args.get("detector"), args.get("action")
        detector = detectors.get(detector_id) if isinstance(detector_id, str) else None
        if detector is None:
            known = ", ".join(sorted(detectors)) or "none"
            raise CommandRefused(
                f"detector must name an onnx detector ({known}), got {detector_id!r}"
            )
        if action not in ACTIONS:
            raise CommandRefused(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
        if action == "put":
            if puts is None:
                raise CommandRefused("put is not available here (no state directory)")
            return puts.put(detector, args)
        if action in ("reload", "shadow"):
            path = _path(detector, args.get("path"), shadow=action == "shadow")
            prepared = detector.prepare(path)  # the disk work, here on the worker
            shadow = action == "shadow"
            result = on_sampler(post, lambda: detector.adopt(prepared, shadow=shadow))
            return {
                "accepted": result.accepted,
                "reason": result.reason,
                "model": result.name,
                "version": result.version,
                "sha256": result.sha256,
            }
        if action in ("promote", "drop"):
            end = detector.promote if action == "promote" else detector.drop
            try:
                stats = on_sampler(post, lambda: end(f"{action}d on command"))
            except ModelError as exc:  # NoCandidate
                raise CommandRefused(str(exc)) from None
            return {"action": action, **stats.as_fields()}
        return on_sampler(post, lambda: _status(detector))

    return model


def _path(detector: OnnxDetector, given: Any, *, shadow: bool) -> str:
    configured = model_path(detector.params.model)
    if given is None:
        if not shadow:
            return str(configured)
        if detector.params.shadow is None:
            raise CommandRefused("shadow needs a path (this detector has no shadow file)")
        return str(model_path(detector.params.shadow))
    if not isinstance(given, str) or not given:
        raise CommandRefused(f"path must be a file name, got {given!r}")
    path = Path(given)
    path = path if path.is_absolute() else configured.parent / path
    # A command may pick another model beside the configured one, not any file on the device.
    if path.resolve().parent != configured.resolve().parent:
        raise CommandRefused(f"path must be in {configured.parent}, got {given}")
    return str(path)


def _status(detector: OnnxDetector) -> dict[str, Any]:
    found: dict[str, Any] = {
        "model": detector.model_name,
        "version": detector.model_version,
        "sha256": detector.model_sha256,
        "threshold": detector.threshold,
        "score": detector.score,
        "state": detector.state,
    }
    stats = detector.shadow_stats()
    if stats is not None:
        found["shadow"] = {**stats.as_fields(), "sha256": detector.candidate_sha256}
    return found
