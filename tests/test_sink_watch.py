"""What a running sink says: ``edge sink --db --json --metrics-port`` against a real
Mosquitto and a real SQLite file, scraped over HTTP and parsed with prometheus_client's own
parser; the summary line under hypothesis."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from edge.bench.mosquitto import Mosquitto, free_port
from edge.cloud.store import Batch, open_store
from edge.cloud.store import event_row as make_event_row
from edge.cloud.watch import Figures, StreamView, summary
from tests.brokers import publish_many
from tests.test_sink_store import event
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def scrape(port: int) -> tuple[dict[str, float], dict[str, str]]:
    """/metrics parsed: every sample's value by name (a bucket's as name{le=...}), and every
    family's type by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            le = sample.labels.get("le")
            samples[sample.name + (f"{{le={le}}}" if le else "")] = sample.value
    return samples, types


def test_a_sinks_metrics_and_json_lines_match_what_was_published(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    port = free_port()
    db = f"sqlite:///{tmp_path / 'events.db'}"
    sink = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "sink", "--broker", mosquitto.url, "--db", db,
         "--client-id", "watched", "--metrics-port", str(port), "--json", "--every", "1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sink.stderr is not None
        for line in sink.stderr:
            if "subscribed to" in line:
                break
        else:
            raise AssertionError(f"edge sink ended: {sink.wait()}")
        # dev-1: seqs 1-10 but 4-6 (one gap of 3), seq 2 twice; dev-2: 1-5, whole.
        one = [1, 2, 3, 7, 8, 9, 10, 2]
        two = [1, 2, 3, 4, 5]
        messages: list[tuple[str, bytes | str]] = [
            ("edgeline/dev-1/events/telemetry/temp", event(seq)) for seq in one
        ]
        messages += [("edgeline/dev-2/events/telemetry/temp", event(s, "dev-2")) for s in two]
        messages.append(("edgeline/dev-2/events/telemetry/temp", "not json"))
        birth = {"state": "online", "device": "dev-1", "ts": "2026-01-01T00:00:00.500Z"}
        messages.append(("edgeline/dev-1/status", json.dumps(birth)))
        publish_many(mosquitto.url, messages)
        published = len(one) + len(two)
        expected = {
            "edgeline_sink_events_total": published - 1,
            "edgeline_sink_duplicates_total": 1,
            "edgeline_sink_malformed_total": 1,
            "edgeline_sink_statuses_total": 1,
            "edgeline_sink_devices": 2,
            "edgeline_sink_open_gaps": 1,
            "edgeline_sink_missing_events": 3,
        }

        def settled() -> bool:
            found, _ = scrape(port)
            return all(found.get(name) == value for name, value in expected.items())

        wait_until(settled, timeout=30)
        found, types = scrape(port)
        assert {name: types[name] for name in types if not name.endswith("_created")} == {
            "edgeline_sink_events": "counter",
            "edgeline_sink_duplicates": "counter",
            "edgeline_sink_malformed": "counter",
            "edgeline_sink_statuses": "counter",
            "edgeline_sink_devices": "gauge",
            "edgeline_sink_open_gaps": "gauge",
            "edgeline_sink_missing_events": "gauge",
            "edgeline_sink_commit_seconds": "histogram",
        }
        assert found["edgeline_sink_commit_seconds_count"] >= 1
        assert (
            found["edgeline_sink_commit_seconds_bucket{le=+Inf}"]
            == (found["edgeline_sink_commit_seconds_count"])
        )
        # stderr is a pipe here: a summary line every second (--every 1), until one says so too
        for line in sink.stderr:
            assert "\r" not in line
            if f"{published - 1} events stored" in line:
                assert ", 2 devices, 1 duplicate, 1 open gap (3 seqs missing), 1 malformed" in line
                break
    finally:
        sink.send_signal(signal.SIGINT)
        out, err = sink.communicate(timeout=30)
    assert sink.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines, "no --json line"
    assert set(lines[0]) == {"rate", "stored", "duplicates", "statuses", "malformed",
                             "devices", "open_gaps", "missing"}  # fmt: skip
    last = lines[-1]
    assert (last["stored"], last["duplicates"], last["malformed"], last["statuses"]) == (
        published - 1, 1, 1, 1
    )  # fmt: skip
    assert (last["devices"], last["open_gaps"], last["missing"]) == (2, 1, 3)
    assert "1 open gaps (3 seqs missing)" in err


counts = st.integers(min_value=0, max_value=10**15)


@given(
    rate=st.floats(min_value=0, max_value=1e12, allow_nan=False),
    stored=counts,
    duplicates=counts,
    statuses=counts,
    malformed=counts,
    devices=counts,
    open_gaps=counts,
    missing=counts,
)
def test_the_summary_is_one_line_whatever_the_counts(
    rate: float,
    stored: int,
    duplicates: int,
    statuses: int,
    malformed: int,
    devices: int,
    open_gaps: int,
    missing: int,
) -> None:
    figures = Figures(rate, stored, duplicates, statuses, malformed, devices, open_gaps, missing)
    line = summary(figures)
    assert "\n" not in line and "\r" not in line
    assert f"{devices} device" in line
    assert f"({missing} seq" in line
    json.dumps(figures.as_json())  # serialisable too


def test_the_stream_view_follows_commits_and_recounts_after_duplicates(db_url: str) -> None:
    store = open_store(db_url)
    try:
        at = "2026-01-01T00:00:00.000Z"
        rows = [make_event_row(json.loads(event(s)), at) for s in (1, 2, 5)]
        first = Batch(events=rows)
        view = StreamView(store)
        view.committed(first, store.write(first))
        assert view.totals() == (1, 1, 2)  # seqs 3 and 4 missing
        again = Batch(events=[make_event_row(json.loads(event(s)), at) for s in (2, 3)])
        written = store.write(again)
        assert written.duplicates == 1
        view.committed(again, written)
        assert view.totals() == (1, 1, 1)
        fresh = StreamView(store)
        fresh.load()
        assert fresh.totals() == view.totals()
    finally:
        store.close()
