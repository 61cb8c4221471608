"""``[metrics] port``: the device's metrics at ``http://HOST:PORT/metrics``, served by
prometheus-client (the ``metrics`` extra).

Imported only when the config asks for the port: a device that does not never loads
prometheus-client. The families are :func:`edge.runtime.metrics.families`, the same the
textfile holds, read at each scrape; the registry is this server's own (not
prometheus-client's global one, whose process and platform collectors would add metrics
under other names and a second runtime in one process would collide with the first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from edge.runtime.metrics import Family


class _Families(Collector):
    """Our families as prometheus-client metrics, read at each scrape (the HTTP thread)."""

    def __init__(self, read: Callable[[], Sequence[Family]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for family in self.read():
            metric = Metric(family.name, family.help, family.kind)
            for sample in family.samples:
                metric.add_sample(family.name + sample.suffix, dict(sample.labels), sample.value)
            yield metric


class MetricsServer:
    """``/metrics`` on ``host:port``; a context manager, ``close`` idempotent.

    Threads: prometheus-client's HTTP server runs on a thread of its own and reads the
    figures there (the outbox's lock, procfs: never the sampling thread); ``close`` from the
    runtime's owner thread. Raises OSError when it cannot listen.
    """

    def __init__(self, read: Callable[[], Sequence[Family]], host: str, port: int) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Families(read))
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        self.host, self.port = host, int(self._server.server_port)
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
