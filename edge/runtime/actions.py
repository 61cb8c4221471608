"""Local actions: a detection drives an output at once, without waiting for the cloud.

``follow`` keeps the output on while the alarm is active and turns it off when it clears;
``pulse`` turns it on for a number of seconds, timed on the runtime's clock. The output
reports each change itself, as ``state`` events, so actuation is visible upstream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from edge.config.device import ActionConfig
from edge.events import Stamp
from edge.runtime.scheduler import Scheduler
from models import Detection

log = logging.getLogger(__name__)


class Actions:
    def __init__(self, actions: Sequence[ActionConfig], scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.outputs: dict[str, Any] = {}  # output sensor id -> device with set(on)
        self.by_detector: dict[str, list[ActionConfig]] = {}
        for action in actions:
            self.by_detector.setdefault(action.when, []).append(action)
        self.taken = 0

    def detected(self, detector: str, detection: Detection, stamp: Stamp) -> None:
        """Called on the sampling thread for every detection."""
        active = detection.fields.get("state") != "clear"
        for action in self.by_detector.get(detector, ()):
            output = self.outputs.get(action.output)
            if output is None:
                continue
            if action.mode == "follow":
                self._set(output, active, action)
            elif active:
                self._set(output, True, action)
                off = stamp.mono + action.seconds
                self.scheduler.at(f"pulse-{action.output}", off, self._switch_off(output, action))

    def _switch_off(self, output: Any, action: ActionConfig) -> Callable[[float], None]:
        def switch_off(due: float) -> None:
            self._set(output, False, action)

        return switch_off

    def _set(self, output: Any, on: bool, action: ActionConfig) -> None:
        try:
            output.set(on)
            self.taken += 1
        except Exception:  # a broken relay must not stop sampling
            log.exception("action on %s failed", action.output)
