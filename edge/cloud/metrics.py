"""``edge sink --metrics-port``: a sink's figures at ``/metrics`` in Prometheus' text format.

Each ``MetricsServer`` has a registry of its own (not prometheus_client's global one), so
several sinks can serve from one process. Counters and gauges are read from the ``Watch`` at
each scrape; the commit latency is a histogram the writer's thread observes.

Threads: the HTTP server runs on a thread of its own; ``close`` from the owner's.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edge.cloud.refill import FillStats
from edge.cloud.watch import Watch
from edge.errors import UsageError

# Seconds: a batch commits in about a millisecond on a quiet SQLite, far longer on a
# busy or distant PostgreSQL, and the writer retries a refused commit for up to 10 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class SinkCollector(Collector):
    """The ``Watch``'s figures as metric families, read at each scrape."""

    def __init__(self, watch: Watch) -> None:
        self.watch = watch

    def collect(self) -> Iterator[Metric]:
        f = self.watch.figures()
        counters = [
            ("edgeline_sink_events", "events stored, each new to the database", f.stored),
            ("edgeline_sink_duplicates", "events received again, left as first stored",
             f.duplicates),
            ("edgeline_sink_malformed", "messages with nothing to store", f.malformed),
            ("edgeline_sink_statuses", "status messages stored", f.statuses),
        ]  # fmt: skip
        for name, text, value in counters:
            yield CounterMetricFamily(name, text, value=value)
        gauges = [
            ("edgeline_sink_devices", "devices with events in the database", f.devices),
            ("edgeline_sink_open_gaps", "streams missing seqs below their highest", f.open_gaps),
            ("edgeline_sink_missing_events", "seqs missing across streams", f.missing),
        ]
        for name, text, value in gauges:
            yield GaugeMetricFamily(name, text, value=value)


class FillerCollector(Collector):
    """What ``--fill-gaps`` did (``FillStats``), read at each scrape."""

    def __init__(self, stats: FillStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        counters = [
            ("edgeline_sink_replay_requests", "gaps asked back with a signed replay", s.asked),
            ("edgeline_sink_replay_answered", "replay requests a device carried out", s.answered),
            ("edgeline_sink_replay_refused", "replay requests a device refused", s.refused),
            ("edgeline_sink_replay_unanswered", "replay requests with no reply in time",
             s.unanswered),
            ("edgeline_sink_lost_events", "seqs a device no longer holds, recorded lost", s.lost),
        ]  # fmt: skip
        for name, text, value in counters:
            yield CounterMetricFamily(name, text, value=value)
        yield GaugeMetricFamily(
            "edgeline_sink_devices_without_key",
            "devices with gaps that cannot be asked back: no key file",
            value=len(s.no_key),
        )


class MetricsServer:
    """``/metrics`` for one sink on ``host:port``; a context manager, ``close`` idempotent.
    ``filler``: the gap filler's figures too, when the sink asks gaps back."""

    def __init__(
        self,
        watch: Watch,
        host: str = "127.0.0.1",
        port: int = 9464,
        *,
        filler: FillStats | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SinkCollector(watch))
        if filler is not None:
            self.registry.register(FillerCollector(filler))
        latency = Histogram(
            "edgeline_sink_commit_seconds",
            "seconds a batch's transaction took to commit",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        watch.latency.append(latency.observe)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise UsageError(f"--metrics-port: cannot listen on {host}:{port}: {exc}") from exc
        self.host, self.port = host, self._server.server_port
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5.0)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
