"""Hooks for a console, a recording or a test to see what the runtime does, as it does it."""

from __future__ import annotations

from collections.abc import Sequence

from edge.events import Draft, Event
from sensors import Value


class Watcher:
    """Hooks for a console or a test to see what the runtime does. Called on its threads."""

    def reading(self, sensor: str, value: Value, unit: str, t: float) -> None:
        """A sensor delivered a value (sampling thread)."""

    def drafted(self, draft: Draft) -> None:
        """An event was made and handed to the recorder (sampling thread, in seq order)."""

    def committed(self, events: Sequence[Event]) -> None:
        """Events reached the outbox (recorder thread)."""


class Watchers(Watcher):
    """Several watchers as one (a console and a recording, say)."""

    def __init__(self, *watchers: Watcher) -> None:
        self.watchers = watchers

    def reading(self, sensor: str, value: Value, unit: str, t: float) -> None:
        for watcher in self.watchers:
            watcher.reading(sensor, value, unit, t)

    def drafted(self, draft: Draft) -> None:
        for watcher in self.watchers:
            watcher.drafted(draft)

    def committed(self, events: Sequence[Event]) -> None:
        for watcher in self.watchers:
            watcher.committed(events)
