"""The device runtime: sample, decide, act, and hand every event on to be stored and sent.

:class:`~edge.runtime.runtime.Runtime` wires one config into threads: the sampling loop
(:mod:`~edge.runtime.scheduler`) reads sensors and runs their filters and detectors
(:mod:`~edge.runtime.sensing`) and drives outputs (:mod:`~edge.runtime.actions`); the
recorder (:mod:`~edge.runtime.recorder`) commits events to the outbox in groups; the
delivery loop (:mod:`~edge.runtime.delivery`) carries each event from stored to published to
acknowledged to deleted. Also here: what detectors learnt (:mod:`~edge.runtime.detector_state`),
model hot reload (:mod:`~edge.runtime.model_watch`), the commands the runtime answers
(:mod:`~edge.runtime.command_handlers`), the real hardware's ports
(:mod:`~edge.runtime.hardware`), and how the device reports on itself: the health figures
(:mod:`~edge.runtime.health`) that the heartbeat status (:mod:`~edge.runtime.heartbeat`),
``status.json`` (:mod:`~edge.runtime.status_file`) and the Prometheus metrics
(:mod:`~edge.runtime.metrics`, :mod:`~edge.runtime.metrics_server`) share.

May import :mod:`edge.uplink`, :mod:`edge.outbox`, :mod:`edge.config`, the shared modules,
``sensors`` and ``models``; never the simulator, the CLI, the model tools, the bench,
matplotlib or amqtt, and prometheus-client only in :mod:`~edge.runtime.metrics_server`
(import-linter holds this).
"""

from edge.runtime.delivery import Delivery
from edge.runtime.runtime import Runtime
from edge.runtime.watcher import Watcher, Watchers

__all__ = ["Delivery", "Runtime", "Watcher", "Watchers"]
