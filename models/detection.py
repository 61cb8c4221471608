"""What a detector emits, the one-method contract every detector follows, and its registry entry.

A detector is a small state machine fed one reading at a time, in time order. It returns a
:class:`Detection` when something significant happens (an alarm starts or clears, an anomaly is
scored) and ``None`` otherwise; the runtime turns each detection into an event whose ``kind``,
``severity`` and ``value`` come from here and whose kind-specific payload fields are ``fields``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class Detection:
    """One significant finding about a sensor's series.

    ``kind`` becomes the event kind (``threshold``, ``anomaly``, ...), ``value`` is the reading
    that caused it, and ``fields`` holds kind-specific, JSON-serialisable payload fields.
    """

    kind: str
    severity: Severity
    value: float
    fields: Mapping[str, object]


@runtime_checkable
class Detector(Protocol):
    """Anything that watches one series of readings and reports what is significant."""

    def observe(self, t: float, value: float) -> Detection | None:
        """Take one reading; return a detection or ``None``.

        ``t`` is in monotonic seconds from the runtime's clock (real or virtual). The runtime
        calls this once per reading, with ``t`` never decreasing.
        """
        ...


@runtime_checkable
class VectorDetector(Detector, Protocol):
    """A detector that may take a vector reading (an accelerometer's x, y, z) whole."""

    @property
    def accepts_vectors(self) -> bool:
        """Whether its readings are vectors now (a model's input width says so)."""
        ...


@runtime_checkable
class BlockDetector(Detector, Protocol):
    """A detector that takes a block of samples at once (a FIFO's window)."""

    def observe_block(self, times: Any, samples: Any) -> list[Detection]:
        """The detections of the windows the block completed; as many ``observe`` calls.

        ``times`` has one timestamp per sample; ``samples`` is ``(n,)`` or ``(n, width)``.
        Raises ``ValueError`` (or an ``ArithmeticError``) for a block it cannot take.
        """
        ...


@runtime_checkable
class PersistentDetector(Detector, Protocol):
    """A detector whose learning outlives the process.

    The runtime keeps its snapshot in the state directory and hands it back to ``restore``
    when the detector is built again, so a reboot does not make it learn from scratch.
    """

    def snapshot(self) -> dict[str, Any]:
        """Everything the detector has learnt, as JSON-serialisable data of bounded size."""
        ...

    def restore(self, state: Mapping[str, Any]) -> None:
        """Resume from a ``snapshot``; raise ``ValueError`` (changing nothing) if it does not
        fit this detector."""
        ...


@dataclass(frozen=True)
class DetectorType:
    """A registry entry: how a config table of this ``name`` becomes a running detector.

    ``params`` is a frozen dataclass describing the config table (see :mod:`models.params` for
    the rules its fields follow); ``build`` takes an instance of it and returns a fresh detector.
    """

    name: str
    params: type
    build: Callable[[Any], Detector]
    summary: str
