"""``edge model rollout``: a new model to a fleet, a canary set first.

Two waves: the first ``canary`` devices, then all the others at once. In each wave every
device gets the model file (``model put``, in chunks; the device stores it beside its
configured model and starts it in shadow), then the wave is watched: each device's ``model
status`` is polled until its shadow trial has scored ``min_readings`` windows, or until
``promote_after`` seconds have passed. A wave in which every device reached ``min_readings``
windows with an agreement of at least ``min_agreement`` is promoted (``model promote``) on
every device, and the next wave starts.

The rollout stops at the first problem: a device that refuses a command, does not answer,
whose shadow trial ends on its own (its ``shadow_*`` rule dropped it, or the model failed),
that disagrees, or that has too few windows when the time is up. The shadows of the current
wave are then dropped, so those devices run the model they ran before, and the devices of
later waves never receive the file. The report says, per device, what happened.

A promoted model runs until the runtime restarts, which loads the configured file again: to
keep it, point the detector's ``model`` at the stored ``<sha12>.onnx`` with a ``config`` push.

Commands are sent one at a time from the calling thread (``send``: device, command name,
arguments -> the device's reply, as :func:`edge.uplink.operator.send_command` returns it).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edge.errors import UplinkError, UsageError
from edge.runtime.model_put import stored_name
from edge.runtime.uploads import chunk_args

Send = Callable[[str, str, Mapping[str, Any]], dict[str, Any]]

# A device's state in the report.
NOT_SENT = "not_sent"  # never received the model (a later wave, after a stop)
SHADOW = "shadow"  # running it in shadow (only while the rollout runs)
PROMOTED = "promoted"  # running it
DROPPED = "dropped"  # received it, ran it in shadow, then it was dropped: the old model runs
FAILED = "failed"  # refused a command or did not answer: its model state is as it said


@dataclass(frozen=True)
class Plan:
    """What to roll out and how carefully (see the module docstring)."""

    detector: str
    model: bytes
    canary: int = 2
    promote_after: float = 600.0
    min_agreement: float = 0.95
    min_readings: int = 20
    poll: float = 1.0  # seconds between two rounds of status polls

    def __post_init__(self) -> None:
        found = problems(
            canary=self.canary, promote_after=self.promote_after,
            min_agreement=self.min_agreement, min_readings=self.min_readings,
            poll=self.poll, model=self.model,
        )  # fmt: skip
        if found:
            raise UsageError("; ".join(found))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


def problems(
    *,
    canary: int,
    promote_after: float,
    min_agreement: float,
    min_readings: int,
    poll: float,
    model: bytes,
) -> list[str]:
    """What is wrong with a plan's settings, one line each, named as the CLI options."""
    found = []
    if canary < 1:
        found.append(f"--canary: expected at least 1 device, got {canary}")
    if not 0 < promote_after <= 86_400:
        found.append(f"--promote-after: expected seconds from 0 to 86400, got {promote_after:g}")
    if not 0 <= min_agreement <= 1:
        found.append(f"--min-agreement: expected a fraction from 0 to 1, got {min_agreement:g}")
    if min_readings < 1:
        found.append(f"--min-readings: expected at least 1, got {min_readings}")
    if not 0 < poll <= 3600:
        found.append(f"--poll: expected seconds from 0 to 3600, got {poll:g}")
    if not model:
        found.append("--model: the file is empty")
    return found


@dataclass
class Outcome:
    """What became of one device."""

    device: str
    wave: str  # "canary" or "rest"
    state: str = NOT_SENT
    received: bool = False  # the whole file reached the device and it ran it in shadow
    reason: str = ""
    windows: int | None = None  # the shadow trial's, when last seen
    agreement: float | None = None


@dataclass
class Report:
    detector: str
    sha256: str
    stored: str  # the file name on the devices
    devices: list[Outcome] = field(default_factory=list)
    stopped: str | None = None  # why the rollout stopped; None when every device promoted

    @property
    def ok(self) -> bool:
        return self.stopped is None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "detector": self.detector,
            "sha256": self.sha256,
            "stored": self.stored,
            "stopped": self.stopped,
            "devices": [asdict(outcome) for outcome in self.devices],
        }


class Stop(Exception):
    """The rollout stops: ``reason`` names the device and what went wrong."""


def rollout(
    devices: Sequence[str],
    plan: Plan,
    send: Send,
    *,
    progress: Callable[[str], None] = lambda line: None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Roll ``plan.model`` out to ``devices`` in two waves; see the module docstring."""
    report = Report(plan.detector, plan.sha256, stored_name(plan.sha256))
    waves = [devices[: plan.canary], devices[plan.canary :]]
    for name, wave in zip(("canary", "rest"), waves, strict=True):
        report.devices += [Outcome(device, name) for device in wave]
    run = _Rollout(plan, send, progress, monotonic, sleep)
    for number, wave in enumerate(waves):
        outcomes = [o for o in report.devices if o.device in set(wave)]
        if not outcomes:
            continue
        label = "canary" if number == 0 else "rest"
        progress(f"{label}: {len(outcomes)} device(s): {', '.join(o.device for o in outcomes)}")
        try:
            run.wave(outcomes)
        except Stop as exc:
            report.stopped = str(exc)
            progress(f"stopped: {exc}")
            run.drop_shadows(outcomes)
            break
    if report.ok:
        progress(f"done: {plan.sha256[:12]} promoted on {len(report.devices)} device(s)")
    return report


class _Rollout:
    def __init__(
        self,
        plan: Plan,
        send: Send,
        progress: Callable[[str], None],
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self.plan = plan
        self.send = send
        self.progress = progress
        self.monotonic = monotonic
        self.sleep = sleep
        self.puts = chunk_args(plan.model, {"detector": plan.detector, "action": "put"})

    def wave(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.put(outcome)
        self.watch(outcomes)
        for outcome in outcomes:
            if outcome.state == PROMOTED:  # by the device's own shadow_* rule, while watched
                continue
            self.command(outcome, {"detector": self.plan.detector, "action": "promote"})
            outcome.state = PROMOTED
            self.progress(f"{outcome.device}: promoted")

    def put(self, outcome: Outcome) -> None:
        result: Mapping[str, Any] = {}
        for args in self.puts:
            result = self.command(outcome, args)
        if result.get("accepted") is not True:
            outcome.state = FAILED
            outcome.reason = f"the model was refused: {result.get('reason')}"
            raise Stop(f"{outcome.device}: {outcome.reason}")
        outcome.state, outcome.received = SHADOW, True
        self.progress(f"{outcome.device}: {result.get('stored')} in shadow")

    def watch(self, outcomes: list[Outcome]) -> None:
        """Poll until every device's shadow has ``min_readings`` windows; Stop on a device
        that disagrees, answers wrong, lost its shadow, or lags when the time is up."""
        plan = self.plan
        deadline = self.monotonic() + plan.promote_after
        while True:
            for outcome in outcomes:
                if outcome.state == SHADOW:
                    self.look(outcome)
            if all(o.state == PROMOTED or (o.windows or 0) >= plan.min_readings for o in outcomes):
                return
            if self.monotonic() >= deadline:
                lagging = (o for o in outcomes if o.state == SHADOW)
                late = next(o for o in lagging if (o.windows or 0) < plan.min_readings)
                late.reason = (
                    f"{late.windows or 0} shadow window(s) in {plan.promote_after:g} s,"
                    f" fewer than --min-readings {plan.min_readings}"
                )
                raise Stop(f"{late.device}: {late.reason}")
            self.sleep(plan.poll)

    def look(self, outcome: Outcome) -> None:
        plan = self.plan
        status = self.command(outcome, {"detector": plan.detector, "action": "status"})
        shadow = status.get("shadow")
        if not isinstance(shadow, Mapping) or shadow.get("sha256") != plan.sha256:
            if status.get("sha256") == plan.sha256:
                outcome.state, outcome.reason = PROMOTED, "promoted by the device's shadow rule"
                self.progress(f"{outcome.device}: {outcome.reason}")
                return
            outcome.state = DROPPED
            outcome.reason = "its shadow trial ended on the device (see its health events)"
            raise Stop(f"{outcome.device}: {outcome.reason}")
        windows, agreement = shadow.get("windows"), shadow.get("agreement")
        outcome.windows = windows if isinstance(windows, int) else 0
        outcome.agreement = agreement if isinstance(agreement, int | float) else None
        if outcome.windows < plan.min_readings:
            return
        assert outcome.agreement is not None  # windows > 0
        shown = f"agreement {outcome.agreement:.3f} over {outcome.windows} windows"
        if outcome.agreement < plan.min_agreement:
            outcome.reason = f"{shown}, below {plan.min_agreement:g}"
            raise Stop(f"{outcome.device} disagrees: {outcome.reason}")
        outcome.reason = shown

    def command(self, outcome: Outcome, args: Mapping[str, Any]) -> dict[str, Any]:
        """Send one ``model`` command; its result, or Stop when it is refused or unanswered."""
        action = args.get("action")
        try:
            reply = self.send(outcome.device, "model", args)
        except UplinkError as exc:
            outcome.state, outcome.reason = FAILED, f"no answer to {action}: {exc}"
            raise Stop(f"{outcome.device}: {outcome.reason}") from None
        result = reply.get("result")
        if reply.get("ok") is not True or not isinstance(result, dict):
            outcome.state, outcome.reason = FAILED, f"refused {action}: {reply.get('error')}"
            raise Stop(f"{outcome.device}: {outcome.reason}")
        return result

    def drop_shadows(self, outcomes: list[Outcome]) -> None:
        """After a stop: the devices of this wave that still run the model in shadow go
        back to the old model alone."""
        for outcome in outcomes:
            if not outcome.received or outcome.state in (PROMOTED, DROPPED):
                continue
            args = {"detector": self.plan.detector, "action": "drop"}
            try:
                reply = self.send(outcome.device, "model", args)
            except UplinkError as exc:
                outcome.reason = _joined(outcome.reason, f"drop not answered: {exc}")
                continue
            if reply.get("ok") is True:
                outcome.state = DROPPED
                self.progress(f"{outcome.device}: shadow dropped")
            else:
                outcome.reason = _joined(outcome.reason, f"drop refused: {reply.get('error')}")


def _joined(first: str, second: str) -> str:
    return f"{first}; {second}" if first else second


def command_sender(
    broker: str,
    keys: Mapping[str, bytes],
    *,
    timeout: float = 10.0,
    prefix: str = "edgeline",
    **login: Any,
) -> Send:
    """A ``send`` that signs each command with the device's key from ``keys`` and waits up
    to ``timeout`` seconds for its reply (:func:`edge.uplink.operator.send_command`;
    ``login``: its username, password and TLS arguments)."""
    from edge.uplink.operator import send_command

    def send(device: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
        return send_command(
            broker, device, keys[device], name, args, prefix=prefix, timeout=timeout, **login
        )

    return send
