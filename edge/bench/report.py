"""The performance budgets (docs/performance.md) checked against the figures, and the table
the benchmark prints."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One budget: what it asks, what was measured, and whether it was met."""

    budget: str
    limit: str
    measured: str
    met: bool | None  # None: not measured in this run
    margin: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _get(figures: dict[str, Any], *path: str) -> Any:
    found: Any = figures
    for key in path:
        if not isinstance(found, dict) or key not in found or found[key] is None:
            return None
        found = found[key]
    return found


def _at_least(budget: str, value: float | None, floor: float, unit: str, fmt: str) -> Verdict:
    if value is None or math.isnan(value):
        return Verdict(budget, f">= {floor:{fmt}}{unit}", "not measured", None, "")
    met = value >= floor
    gap = value / floor
    margin = f"{gap:.2f}x the floor" if met else f"short by {floor - value:{fmt}}{unit}"
    return Verdict(budget, f">= {floor:{fmt}}{unit}", f"{value:{fmt}}{unit}", met, margin)


def _under(budget: str, value: float | None, ceiling: float, unit: str, fmt: str) -> Verdict:
    if value is None or math.isnan(value):
        return Verdict(budget, f"< {ceiling:{fmt}}{unit}", "not measured", None, "")
    met = value < ceiling
    if met:
        margin = f"{100 * (1 - value / ceiling):.0f} % under"
    else:
        margin = f"over by {value - ceiling:{fmt}}{unit} ({value / ceiling:.2f}x)"
    return Verdict(budget, f"< {ceiling:{fmt}}{unit}", f"{value:{fmt}}{unit}", met, margin)


def verdicts(figures: dict[str, Any]) -> list[Verdict]:
    found: list[Verdict] = []
    add = found.append
    ratio = _get(figures, "throughput", "edgeline_vs_raw")
    add(_at_least("durable throughput / raw paho (QoS 1)", ratio, 0.9, "x", ".2f"))
    for name, case in (_get(figures, "latency", "cases") or {}).items():
        if case["commit_window_ms"] == 0:
            add(_under(f"latency p99, {name}", case["p99_ms"], 5.0, " ms", ".1f"))
        if case.get("critical") is not None:  # committed at once, whatever the window
            critical = case["critical"]["p99_ms"]
            add(_under(f"critical event latency p99, {name}", critical, 5.0, " ms", ".1f"))
    add(_at_least("backlog drain", _get(figures, "drain", "events_per_s"), 15000, "/s", ",.0f"))
    add(_undisturbed(figures))
    add(_under("steady CPU (20 x 10 Hz)", _get(figures, "steady", "threshold", "cpu_percent"),
               2.0, " %", ".2f"))  # fmt: skip
    add(_under("steady RSS", _get(figures, "steady", "threshold", "rss_mb"), 40, " MB", ".1f"))
    add(_under("steady RSS with ONNX", _get(figures, "steady", "onnx", "rss_mb"), 70, " MB", ".1f"))
    start = _get(figures, "steady", "threshold", "start_to_first_reading_s")
    add(_under("start to first reading", start, 1.5, " s", ".2f"))
    for level, case in (_get(figures, "wear", "levels") or {}).items():
        add(_under(f"flash wear, durability {level}", case["bytes_per_event"], 1024, " B/event",
                   ",.0f"))  # fmt: skip
    call = _get(figures, "models", "onnx", "detector_model_call_vs_bare")
    add(_under("ONNX detector model call / bare session.run", call, 1.3, "x", ".2f"))
    adaptive = _get(figures, "models", "adaptive", "us_per_reading")
    add(_under("adaptive detector per reading", adaptive, 50, " us", ".1f"))
    add(_bounded(figures))
    deep = _get(figures, "growth", "deep_vs_empty_cpu_per_event")
    add(_under("CPU per event, deepest outbox / empty (flat)", deep, 1.25, "x", ".2f"))
    growth = _get(figures, "growth", "marginal_growth")
    add(_under("CPU per added reading, last step / step before (linear)", growth, 1.5, "x", ".2f"))
    for where, key in (("decoder", "decoder, one core"), ("pty", "pty + McuLink")):
        frames = _get(figures, "link", where, "readings_per_s")
        add(_at_least(f"MCU link READING frames, {key}", frames, 20_000, "/s", ",.0f"))
        samples = _get(figures, "link", where, "samples_per_s")
        add(_at_least(f"MCU link samples in SAMPLES blocks, {key}", samples, 200_000, "/s",
                      ",.0f"))  # fmt: skip
    sinks = _get(figures, "ingest", "sinks")
    add(_at_least(f"cloud ingest into PostgreSQL, {sinks or 2} sinks",
                  _get(figures, "ingest", "ingest_per_s"), 20_000, "/s", ",.0f"))  # fmt: skip
    add(_at_least("cloud ingest / bare INSERT loop (commit per 1,000)",
                  _get(figures, "ingest", "ratio_to_bare"), 0.5, "x", ".2f"))  # fmt: skip
    return found


def _undisturbed(figures: dict[str, Any]) -> Verdict:
    """Sampling during the drain: no poll skipped and p99 lateness under a tenth of the
    100 ms poll interval."""
    name, limit = "sampling while draining", "no skipped poll, p99 lateness < 10 ms"
    drain = _get(figures, "drain")
    if drain is None:
        return Verdict(name, limit, "not measured", None, "")
    p99 = drain["jitter_draining"]["p99_ms"]
    skipped = drain["skipped_polls_draining"]
    measured = f"{skipped} skipped, p99 {p99:.1f} ms (after: {drain['jitter_after']['p99_ms']:.1f})"
    met = skipped == 0 and p99 < 10.0
    return Verdict(name, limit, measured, met, "" if met else "sampling was disturbed")


def _bounded(figures: dict[str, Any]) -> Verdict:
    name, limit = "adaptive detector memory", "bounded: < 1 KiB more after 10x the readings"
    adaptive = _get(figures, "models", "adaptive")
    if adaptive is None or not adaptive.get("available"):
        return Verdict(name, limit, "not available", None, "")
    growth = adaptive["growth_kib"]
    measured = f"{growth:+.1f} KiB from {adaptive['early']:,} to {adaptive['readings']:,} readings"
    return Verdict(name, limit, measured, growth < 1.0, "")


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return format(value, spec)


Row = tuple[str, str]
KINDS = ("edgeline", "raw_paho", "naive")


def rows(figures: dict[str, Any]) -> list[Row]:
    """(what, measured) for every figure in the run, in the issue's order."""
    out: list[Row] = []
    sections: list[Callable[[dict[str, Any]], list[Row]]] = [
        _throughput, _latency, _drain, _steady, _wear, _models, _growth, _link, _ingest,
    ]  # fmt: skip
    for section in sections:
        out.extend(section(figures))
    return out


def _throughput(figures: dict[str, Any]) -> list[Row]:
    t = figures.get("throughput")
    if not t:
        return []
    return [
        ("1. durable throughput, edgeline (recorder + outbox + uplink), QoS 1",
         f"{_fmt(t['edgeline_per_s'])} events/s"),
        ("   raw paho-mqtt, same payloads, no storage", f"{_fmt(t['raw_paho_per_s'])} events/s"),
        ("   naive loop: commit, publish, wait for PUBACK", f"{_fmt(t['naive_per_s'])} events/s"),
        ("   edgeline / raw paho; edgeline / naive",
         f"{t['edgeline_vs_raw']:.2f}x; {t['edgeline_vs_naive']:.1f}x"),
        ("   CPU per event: edgeline; raw paho; naive",
         "; ".join(f"{t['cpu_us_per_event'][k]:.0f} us" for k in KINDS)),
    ]  # fmt: skip


def _latency(figures: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for name, c in (_get(figures, "latency", "cases") or {}).items():
        out.append((f"2. latency {name}: reading -> disk; -> subscriber", _delays(c)))
        critical = c.get("critical")
        if critical is not None:
            out.append((
                f"   critical events among them ({c['critical_per_s']:g}/s, "
                f"{critical['events']:,} measured): reading -> disk; -> subscriber",
                _delays(critical),
            ))  # fmt: skip
    return out


def _delays(c: dict[str, Any]) -> str:
    return (f"p50 {c['to_disk_p50_ms']:.1f} / p99 {c['to_disk_p99_ms']:.1f} ms; "
            f"p50 {c['p50_ms']:.1f} / p99 {c['p99_ms']:.1f} ms")  # fmt: skip


def _drain(figures: dict[str, Any]) -> list[Row]:
    d = figures.get("drain")
    if not d:
        return []
    during, after = d["jitter_draining"], d["jitter_after"]
    return [
        (f"3. backlog drain, {d['backlog']:,} events, sampling 20 x 10 Hz",
         f"{_fmt(d['events_per_s'])} events/s ({d['drain_s']:.1f} s, "
         f"CPU {d['cpu_percent']:.0f} %)"),
        ("   sampling lateness while draining; after",
         f"p99 {during['p99_ms']:.2f} ms, max {during['max_ms']:.1f} ms, "
         f"{d['skipped_polls_draining']} skipped; p99 {after['p99_ms']:.2f} ms"),
    ]  # fmt: skip


def _steady(figures: dict[str, Any]) -> list[Row]:
    s = figures.get("steady")
    if not s:
        return []
    out = []
    cases = (("threshold", "threshold rules"),
             ("onnx", "+ the shipped ONNX detector, backend auto"),
             ("onnx_onnxruntime", "+ the shipped ONNX detector, backend onnxruntime"))  # fmt: skip
    for key, label in cases:
        if key not in s:  # a figure file from before that case existed
            continue
        c = s[key]
        if c is None:
            out.append((f"4. steady state, {label}", "not available"))
            continue
        imported = c.get("imported")  # absent from figure files older than the record
        loaded = None if imported is None else "onnxruntime " + (
            "loaded" if imported.get("onnxruntime") else "not loaded")  # fmt: skip
        out.append((
            f"4. steady state, 20 sensors x 10 Hz, {label}",
            f"CPU {c['cpu_percent']:.2f} %, RSS {c['rss_mb']:.1f} MB, "
            f"first reading {c['start_to_first_reading_s']:.2f} s"
            + (f" ({loaded})" if loaded else ""),
        ))  # fmt: skip
    imports = s.get("rss_by_import_mb") or {}
    parts = ", ".join(f"{k} +{v:.1f}" for k, v in imports.items() if k not in ("python", "total"))
    if imports:
        out.append(("   RSS by import (MB)", f"python {imports['python']:.1f}, {parts}"))
    return out


def _wear(figures: dict[str, Any]) -> list[Row]:
    levels = _get(figures, "wear", "levels") or {}
    return [
        (f"5. flash wear at 100 events/s, durability {level}",
         f"{_fmt(c['bytes_per_event'])} B/event ({c['source'].split()[0]}); "
         f"write() {_fmt(c['wchar_per_event'])} B/event")
        for level, c in levels.items()
    ]  # fmt: skip


def _models(figures: dict[str, Any]) -> list[Row]:
    m = figures.get("models")
    if not m:
        return []
    out: list[Row] = []
    o = m["onnx"]
    if o.get("available"):
        call = o["detector_model_call_us"]
        out += [
            (f"6. ONNX, window of {o['window']}: bare session.run",
             f"{o['bare_session_run_us']:.1f} us"),
            ("   detector's model call; / bare",
             "n/a" if call is None else f"{call:.1f} us; {o['detector_model_call_vs_bare']:.2f}x"),
            ("   detector per window (observe_block); / bare",
             f"{o['detector_window_us']:.1f} us; {o['detector_window_vs_bare']:.2f}x"),
            ("   detector, one reading at a time (observe)",
             f"{o['detector_streamed_per_reading_us']:.2f} us/reading"),
        ]  # fmt: skip
    else:
        out.append(("6. ONNX detector", f"not available: {o['reason']}"))
    b = m["backends"]
    if b.get("numpy_vs_onnxruntime") is not None:
        out.append((
            "   models.load().run: onnxruntime; numpy fallback",
            f"{b['onnxruntime_us']:.1f} us; {b['numpy_us']:.1f} us "
            f"({b['numpy_vs_onnxruntime']:.2f}x)",
        ))  # fmt: skip
    a = m["adaptive"]
    if a.get("available"):
        out.append((
            f"   adaptive detector, NAB-like series, {a['readings']:,} readings",
            f"{a['us_per_reading']:.1f} us/reading; memory {a['growth_kib']:+.1f} KiB after "
            f"{a['early']:,} readings, peak {a['peak_kib']:.1f} KiB",
        ))  # fmt: skip
    else:
        out.append(("   adaptive detector", f"not available: {a['reason']}"))
    return out


def _growth(figures: dict[str, Any]) -> list[Row]:
    g = figures.get("growth")
    if not g:
        return []
    out = [
        (f"7. growth, {c['sensors']:,} sensors x 1 Hz, telemetry",
         f"{_fmt(c['events_per_s'])} events/s, CPU {c['cpu_percent']:.2f} %, "
         f"{_fmt(c['cpu_us_per_reading'])} us/reading")
        for c in g["sensors"]
    ]  # fmt: skip
    steps = "; ".join(
        f"{m['from']}->{m['to']}: {_fmt(m['us'])} us" for m in g["marginal_us_per_reading"]
    )
    out.append(("   CPU per added reading", steps))
    out += [
        (f"   outbox depth {c['depth']:,}: commit + claim + delete",
         f"{_fmt(c['events_per_s'])} events/s, {c['cpu_us_per_event']:.1f} us CPU/event")
        for c in g["depth"]
    ]  # fmt: skip
    return out


def _link(figures: dict[str, Any]) -> list[Row]:
    link = figures.get("link")
    if not link:
        return []
    d, p = link["decoder"], link["pty"]
    out = [
        ("8. MCU link, stream decoder + parse, one core: READING frames",
         f"{_fmt(d['readings_per_s'])} frames/s ({d['us_per_reading']:.2f} us each)"),
        (f"   samples in SAMPLES blocks of {d['block_samples']}",
         f"{_fmt(d['samples_per_s'])} samples/s"),
    ]  # fmt: skip
    if p.get("available"):
        out.append((
            "   through a real pty into McuLink: READING frames; samples",
            f"{_fmt(p['readings_per_s'])} frames/s; {_fmt(p['samples_per_s'])} samples/s",
        ))  # fmt: skip
    else:
        out.append(("   through a real pty into McuLink", f"not available: {p['reason']}"))
    return out


def _ingest(figures: dict[str, Any]) -> list[Row]:
    i = figures.get("ingest")
    if not i:
        return []
    if "skipped" in i:
        return [("9. cloud ingest into PostgreSQL", f"skipped: {i['skipped']}")]
    fleet = i["fleet"]
    return [
        (f"9. cloud ingest: {i['devices']:,} simulated devices, {i['sinks']} sinks --share,"
         " PostgreSQL", f"{_fmt(i['ingest_per_s'])} events/s ({i['stored']:,} of"
                        f" {i['events']:,} stored; {_fmt(i['ingest_wall_per_s'])}/s counting"
                        " the sinks' start-up)"),
        ("   sink CPU per event; broker; PostgreSQL",
         f"{i['sink_cpu_us']:.1f} us; {i['broker_cpu_us']:.1f} us; {i['postgres_cpu_us']:.1f} us"),
        ("   same rows, bare INSERT loop (commit per 1,000); the sink's batched statement alone",
         f"{_fmt(i['bare_insert_per_s'])} rows/s ({_fmt(i['ratio_to_bare'], '.2f')}x);"
         f" {_fmt(i['bulk_insert_per_s'])} rows/s ({_fmt(i['ratio_to_bulk'], '.2f')}x)"),
        ("   the fleet publishing (one process, virtual clocks)",
         f"{fleet['events'] / fleet['seconds']:,.0f} events/s, {fleet['cpu_seconds']:.0f} s CPU,"
         f" peak RSS {fleet['peak_rss_mb']:.0f} MB"),
    ]  # fmt: skip


def table(figures: dict[str, Any], verdict_list: list[Verdict]) -> str:
    """The figures and the budgets as two Markdown tables."""
    lines = ["| figure | measured |", "|---|---|"]
    lines += [f"| {what.strip()} | {value} |" for what, value in rows(figures)]
    lines += ["", "| budget | limit | measured | verdict |", "|---|---|---|---|"]
    for v in verdict_list:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[v.met]
        if v.margin:
            verdict += f" ({v.margin})"
        lines.append(f"| {v.budget} | {v.limit} | {v.measured} | {verdict} |")
    return "\n".join(lines)
