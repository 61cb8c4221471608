"""The device's figures as Prometheus metrics: the families, the text format, and the file
node_exporter's textfile collector reads.

:func:`families` turns one :class:`~edge.runtime.health.Figures` reading into metric
families (names ``edgeline_...``, base units in the names, counters ending in ``_total``);
:func:`exposition` writes them in Prometheus' text format (version 0.0.4) with the standard
library alone, so that a device writing only the textfile needs no extra package. The HTTP
port (:mod:`edge.runtime.metrics_server`) serves the same families through prometheus-client.

Names carry the ``edgeline_`` prefix, process figures included (``edgeline_process_...``):
node_exporter merges textfiles into its own output, where ``process_*`` is node_exporter's
own process.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from edge.config.metrics import MetricsConfig
from edge.errors import ConfigError
from edge.runtime.health import Figures
from edge.runtime.view_file import ViewFile

if TYPE_CHECKING:  # prometheus-client: imported only when [metrics] port is set
    from edge.runtime.metrics_server import MetricsServer

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "summary"]
TEXTFILE_MODE = 0o644  # node_exporter runs as a user of its own and must read it
LATENESS_QUANTILE = "0.99"


@dataclass(frozen=True)
class Sample:
    suffix: str  # after the family's name: "" for a gauge, "_total" for a counter, "_sum", ...
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class Family:
    """One metric family; a counter's ``name`` is without ``_total``, as in the
    OpenMetrics data model (its samples and its text-format name add it)."""

    name: str
    kind: Kind
    help: str
    samples: tuple[Sample, ...]

    @property
    def exposed(self) -> str:
        """The name in the 0.0.4 text format's HELP and TYPE lines."""
        return f"{self.name}_total" if self.kind == "counter" else self.name


def _one(name: str, kind: Kind, help: str, value: float | None) -> list[Family]:
    """A family of one unlabelled sample; none for a figure that is not known."""
    if value is None:
        return []
    suffix = "_total" if kind == "counter" else ""
    return [Family(name, kind, help, (Sample(suffix, (), value),))]


def _per_sensor(name: str, kind: Kind, help: str, values: dict[str, float]) -> Family:
    suffix = "_total" if kind == "counter" else ""
    samples = tuple(Sample(suffix, (("sensor", k),), v) for k, v in sorted(values.items()))
    return Family(name, kind, help, samples)


def families(figures: Figures, *, device: str, version: str) -> list[Family]:
    """Every metric of one reading, in a fixed order."""
    f, stats, link = figures, figures.outbox, figures.link
    info = (("device", device), ("stream", stats.stream), ("version", version))
    lateness = Family(
        "edgeline_poll_lateness_seconds",
        "summary",
        "how late polls ran behind their due times (quantile over the last 4096 polls)",
        (
            Sample("", (("quantile", LATENESS_QUANTILE),), f.lateness_p99_s),
            Sample("_sum", (), f.lateness_sum_s),
            Sample("_count", (), f.polls),
        ),
    )
    found: list[Family] = [
        Family("edgeline_info", "gauge", "the device, its outbox's stream and the version",
               (Sample("", info, 1),)),
        *_one("edgeline_uptime_seconds", "gauge",
              "seconds since the runtime started, on its monotonic clock", f.uptime_s),
        lateness,
        *_one("edgeline_polls_skipped", "counter",
              "whole intervals overrunning polls skipped", f.skipped_polls),
        _per_sensor("edgeline_sensor_readings", "counter", "readings taken",
                    {k: s.readings for k, s in f.sensors.items()}),
        _per_sensor("edgeline_sensor_faults", "counter", "failed reads",
                    {k: s.faults for k, s in f.sensors.items()}),
        _per_sensor("edgeline_sensor_degraded", "gauge", "1 while the sensor is failing",
                    {k: int(s.degraded) for k, s in f.sensors.items()}),
        _per_sensor("edgeline_sensor_times_back", "counter",
                    "readings whose time was before an earlier one's (detected all the same)",
                    {k: s.times_back for k, s in f.sensors.items()}),
        *_one("edgeline_outbox_pending_events", "gauge",
              "events stored and not yet acknowledged by the broker", stats.pending),
        *_one("edgeline_outbox_oldest_age_seconds", "gauge",
              "age of the oldest pending event; 0 when none is pending",
              stats.oldest_age_s or 0.0),
        *_one("edgeline_outbox_queued_events", "gauge",
              "events in memory waiting for the next group commit", f.queued),
        *_one("edgeline_outbox_last_seq", "gauge", "the last seq stored", stats.last_seq),
        *_one("edgeline_outbox_evicted_events", "counter",
              "events evicted or expired before delivery (reported upstream)", stats.evicted),
        *_one("edgeline_uplink_up", "gauge", "1 while connected to a broker",
              int(link.state == "online")),
        *_one("edgeline_uplink_connects", "counter", "connections made to a broker",
              link.connects),
        *_one("edgeline_uplink_failovers", "counter", "moves to another broker of the list",
              link.failovers),
        *_one("edgeline_uplink_acked_events", "counter",
              "events the broker acknowledged", link.acked),
        *_one("edgeline_uplink_rejected_events", "counter",
              "events an MQTT 5 broker refused (they stay in the outbox)", link.rejected),
        *_one("edgeline_process_cpu_seconds", "counter",
              "CPU time of the runtime's process, user and system", f.cpu_seconds),
        *_one("edgeline_process_resident_memory_bytes", "gauge",
              "resident memory of the runtime's process", f.rss_bytes),
        *_one("edgeline_disk_written_bytes", "counter",
              "bytes the runtime's process sent to the block layer", f.written_bytes),
        *_one("edgeline_card_size_bytes", "gauge",
              "size of the card holding the state directory", f.card_bytes),
        *_one("edgeline_card_endurance_bytes", "gauge",
              "bytes the card takes before it wears out (size x card_tbw_per_gb)",
              f.card_endurance_bytes),
        *_one("edgeline_card_life_estimate_seconds", "gauge",
              "how long a new card lasts at the average write rate since start",
              None if f.card_life_days is None else f.card_life_days * 86_400),
    ]  # fmt: skip
    return found


def _number(value: float) -> str:
    """A sample value as Go's ParseFloat reads it."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def exposition(found: Sequence[Family]) -> str:
    """The families in Prometheus' text format, version 0.0.4 (what node_exporter's textfile
    collector reads, and what prometheus-client's ``generate_latest`` writes)."""
    lines = []
    for family in found:
        lines.append(f"# HELP {family.exposed} {_help(family.help)}")
        lines.append(f"# TYPE {family.exposed} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in sample.labels)
            braces = f"{{{labels}}}" if labels else ""
            lines.append(f"{family.name}{sample.suffix}{braces} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


def textfile(path: Path, render: Callable[[], str], interval: float) -> ViewFile:
    """The metrics rewritten in ``path`` every ``interval`` seconds (thread
    ``edgeline-metrics``), and a last time when the runtime stops. Renamed over the old file
    from a temporary whose name does not end in ``.prom`` (node_exporter skips it), mode
    0644 for node_exporter's own user; see ``edge.runtime.view_file``."""
    return ViewFile(path, lambda final: render().encode("utf-8"), interval,
                    name="edgeline-metrics", mode=TEXTFILE_MODE)  # fmt: skip


def _unwritable(directory: Path) -> str | None:
    """Why the textfile cannot be written in ``directory``, in words, or None."""
    if not directory.is_dir():
        return ("missing (create it, writable by the service's user, and give it to"
                " node_exporter as --collector.textfile.directory)")  # fmt: skip
    try:
        read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:  # edgeline.service mounts everything read-only but its own directories
        return ("read-only here (under edgeline.service's ProtectSystem=strict, allow it"
                f" with a drop-in: ReadWritePaths={directory})")  # fmt: skip
    if not os.access(directory, os.W_OK | os.X_OK):
        return "not writable (make it writable by the service's user)"
    return None


class MetricsOutputs:
    """What ``[metrics]`` asks for: the textfile, the HTTP port, or both, over one source of
    families (``read``, called on the writer's or the HTTP server's thread).

    Built on the runtime's owner thread, which binds the port at once (so that a taken port
    is a config error at start, with the reason) and checks the textfile's directory (a
    missing one is too, not a warning in the log every minute); ``start`` writes the first
    textfile, ``close`` the last.
    """

    def __init__(
        self, settings: MetricsConfig, source: str, read: Callable[[], Sequence[Family]]
    ) -> None:
        self.textfile: ViewFile | None = None
        self.server: MetricsServer | None = None
        if settings.textfile is not None:
            path = Path(settings.textfile)
            problem = _unwritable(path.parent)
            if problem:
                raise ConfigError([
                    f"{source}: metrics.textfile: expected a directory this user may write"
                    f" in, found {str(path.parent)!r} {problem}"
                ])  # fmt: skip
            self.textfile = textfile(path, lambda: exposition(read()), settings.every)
        if settings.port is not None:
            from edge.runtime.metrics_server import MetricsServer

            try:
                self.server = MetricsServer(read, settings.listen, settings.port)
            except OSError as exc:
                raise ConfigError([
                    f"{source}: metrics.port: cannot listen on {settings.listen}:"
                    f"{settings.port}: {exc.strerror or exc}"
                ]) from exc  # fmt: skip

    def start(self) -> None:
        if self.textfile is not None:
            self.textfile.start()

    def close(self, *, final: bool = True) -> None:
        """Stop; with ``final``, the textfile gets the last figures. Idempotent."""
        if self.textfile is not None:
            self.textfile.close(final=final)
            self.textfile = None
        if self.server is not None:
            self.server.close()
            self.server = None
