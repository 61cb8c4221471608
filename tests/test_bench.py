"""The benchmark keeps working: ``edge bench --smoke`` runs every figure on tiny sizes.

Its figures mean nothing at these sizes and on a shared machine, so nothing here is timed:
the checks are that every figure is there and numerically sane (rates positive, p50 <= p99,
ratios positive) and that every budget (docs/performance.md) gets a verdict. The smoke run
takes about 20 s, so the tests that read it are marked ``slow``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from edge.bench import FIGURES, report
from edge.bench.measure import percentile
from edge.cli import main
from tests.brokers import need_mosquitto


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    need_mosquitto()
    out = tmp_path_factory.mktemp("bench") / "out.json"
    assert main(["bench", "--smoke", "--json", str(out)]) == 0
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


@pytest.mark.slow
def test_every_figure_is_there(smoke: dict[str, Any]) -> None:
    assert smoke["mode"] == "smoke"
    assert set(smoke["figures"]) == set(FIGURES)
    assert smoke["machine"]["cpus"] >= 1 and smoke["machine"]["python"]
    assert "| figure | measured |" in smoke["table"]


@pytest.mark.slow
def test_throughput_rates_and_ratios(smoke: dict[str, Any]) -> None:
    t = smoke["figures"]["throughput"]
    for key in ("edgeline_per_s", "raw_paho_per_s", "naive_per_s"):
        assert positive(t[key]), key
    assert positive(t["edgeline_vs_raw"]) and positive(t["edgeline_vs_naive"])
    assert t["edgeline_vs_raw"] == pytest.approx(t["edgeline_per_s"] / t["raw_paho_per_s"])


@pytest.mark.slow
def test_latency_cases(smoke: dict[str, Any]) -> None:
    cases = smoke["figures"]["latency"]["cases"]
    assert {c["rate"] for c in cases.values()} == {100, 1000}
    for case in cases.values():
        assert case["events"] > 0 and case["received"] == case["events"]
        assert 0 < case["p50_ms"] <= case["p99_ms"] <= case["max_ms"]
        assert 0 < case["to_disk_p50_ms"] <= case["to_disk_p99_ms"]
        assert case["to_disk_p50_ms"] <= case["p50_ms"]
    # One run of its own has critical readings, at the default window: 1 per sensor per s.
    name = "100/s window 100 ms, critical readings"
    critical = {name: c["critical"] for name, c in cases.items() if c["critical"] is not None}
    assert list(critical) == [name]
    found = critical[name]
    assert 0 < found["events"] < cases[name]["events"]
    assert found["received"] == found["events"]
    assert 0 < found["p50_ms"] <= found["p99_ms"] <= found["max_ms"]


@pytest.mark.slow
def test_drain_and_sampling(smoke: dict[str, Any]) -> None:
    d = smoke["figures"]["drain"]
    assert d["acked"] >= d["backlog"] > 0
    assert positive(d["events_per_s"])
    for key in ("jitter_draining", "jitter_after"):
        assert d[key]["polls"] > 0
        assert d[key]["p50_ms"] <= d[key]["p99_ms"] <= d[key]["max_ms"]


@pytest.mark.slow
def test_steady_state(smoke: dict[str, Any]) -> None:
    s = smoke["figures"]["steady"]
    cases = [s["threshold"], s["onnx"], s["onnx_onnxruntime"]]  # the dev extra has onnxruntime
    for case in cases:
        assert positive(case["cpu_percent"]) and positive(case["rss_mb"])
        assert positive(case["start_to_first_reading_s"]) and case["readings"] > 0
    # The shipped detector on backend auto runs on numpy: no onnxruntime in the process.
    assert [case["imported"]["onnxruntime"] for case in cases] == [False, False, True]
    assert positive(s["rss_by_import_mb"]["total"])


@pytest.mark.slow
def test_flash_wear_per_durability_level(smoke: dict[str, Any]) -> None:
    levels = smoke["figures"]["wear"]["levels"]
    assert {"full", "normal"} <= set(levels)
    for level in levels.values():
        assert level["events"] > 0 and level["bytes_per_event"] >= 0


@pytest.mark.slow
def test_models(smoke: dict[str, Any]) -> None:
    m = smoke["figures"]["models"]
    onnx = m["onnx"]
    assert onnx["available"], onnx.get("reason")  # the dev extra has onnx and onnxruntime
    for key in ("bare_session_run_us", "detector_window_us", "detector_window_vs_bare"):
        assert positive(onnx[key]), key
    assert positive(m["backends"]["numpy_vs_onnxruntime"])
    adaptive = m["adaptive"]
    if adaptive["available"]:
        assert positive(adaptive["us_per_reading"]) and adaptive["peak_kib"] >= 0
    else:
        assert adaptive["reason"]


@pytest.mark.slow
def test_growth(smoke: dict[str, Any]) -> None:
    g = smoke["figures"]["growth"]
    assert [c["sensors"] for c in g["sensors"]][:2] == [1, 10]
    for case in g["sensors"]:
        assert positive(case["readings_per_s"]) and positive(case["cpu_percent"])
    assert g["depth"][0]["depth"] == 0
    for case in g["depth"]:
        assert positive(case["events_per_s"]) and case["pending"] >= case["depth"]
    assert positive(g["deep_vs_empty_events_per_s"])
    assert positive(g["deep_vs_empty_cpu_per_event"])


@pytest.mark.slow
def test_mcu_link(smoke: dict[str, Any]) -> None:
    link = smoke["figures"]["link"]
    decoder, pty = link["decoder"], link["pty"]
    assert decoder["readings"] == 2_000 and decoder["blocks"] == 20
    assert positive(decoder["readings_per_s"]) and positive(decoder["samples_per_s"])
    assert pty["available"], pty.get("reason")  # the dev extra has pyserial
    assert positive(pty["readings_per_s"]) and positive(pty["samples_per_s"])
    assert pty["dropped"] == 0


@pytest.mark.slow
def test_cloud_ingest(smoke: dict[str, Any]) -> None:
    ingest = smoke["figures"]["ingest"]
    assert "skipped" not in ingest, ingest.get("skipped")  # the dev setup has PostgreSQL
    fleet = ingest["fleet"]
    assert fleet["devices"] == 3 and fleet["drained"] == 3 and fleet["events"] > 3
    assert ingest["stored"] == ingest["events"] == fleet["events"]  # every event, once
    for key in ("ingest_per_s", "bare_insert_per_s", "bulk_insert_per_s", "ratio_to_bare",
                "ratio_to_bulk"):  # fmt: skip
        assert positive(ingest[key]), key
    # start-up is subtracted: on a few dozen events the difference may be noise either way
    assert math.isfinite(ingest["sink_cpu_us"])


@pytest.mark.slow
def test_every_budget_gets_a_verdict(smoke: dict[str, Any]) -> None:
    names = [b["budget"] for b in smoke["budgets"]]
    for expected in ("durable throughput", "backlog drain", "steady RSS", "flash wear",
                     "MCU link READING frames", "MCU link samples", "cloud ingest",
                     "critical event latency p99"):  # fmt: skip
        assert any(name.startswith(expected) for name in names), expected
    measured = [b for b in smoke["budgets"] if b["met"] is not None]
    assert len(measured) >= 12


def test_an_unknown_figure_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "throughput,speed"]) == 2
    assert "unknown speed" in capsys.readouterr().err


def test_verdicts_of_a_partial_run_say_not_measured() -> None:
    verdicts = report.verdicts({"throughput": {"edgeline_vs_raw": 0.95}})
    assert verdicts[0].met is True
    assert all(v.met is None for v in verdicts[1:])
    assert "| budget |" in report.table({}, verdicts)


def test_percentile_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert math.isnan(percentile([], 0.5))


def test_tools_bench_is_a_script() -> None:
    script = Path(__file__).parent.parent / "tools" / "bench.py"
    assert os.access(script, os.X_OK)
    assert 'main(["bench"' in script.read_text(encoding="utf-8")
