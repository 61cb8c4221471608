"""``edge sink --config SINK.toml``: stored events forwarded to HTTP targets.

Real parts: a real HTTP server (``http.server`` on a thread) that throttles (429 with
Retry-After), fails (500), refuses (400) and hangs (a request it never answers), and the
sink's real database, SQLite and a throwaway PostgreSQL, as in ``tests/test_sink_store.py``.
Events go in with ``Store.write``, what the sink's writer calls.

``EDGELINE_FORWARD_OUTAGE`` sets the outage of the main test (default 3 s); the slow test
runs the full 30 s.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cli import main
from edge.cloud.backlog import Backlog
from edge.cloud.forward import FIELDS, Event, Target, parse_targets, render, template_problem
from edge.cloud.forwarder import Forwarder, TokenBucket, retry_after
from edge.cloud.store import Batch, open_store
from edge.cloud.store import event_row as make_event_row
from edge.errors import ConfigError
from tests.waiting import wait_until

OUTAGE = float(os.environ.get("EDGELINE_FORWARD_OUTAGE", "3"))


class Target_:
    """The HTTP endpoint: behaviours by time and by key; what it accepted, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[str] = []  # keys, first acceptance only
        self.requests: list[tuple[float, str, int]] = []  # (monotonic, key, status)
        self.bodies: dict[str, Any] = {}
        self.down_until = 0.0  # answer 429 until then
        self.retry_after = "1"
        self.failing: set[str] = set()  # keys answered 500
        self.refused: set[str] = set()  # keys answered 400
        self.hanging: set[str] = set()  # keys never answered
        self.release = threading.Event()  # ends the hung requests at teardown
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?x=1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        target = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers["Idempotency-Key"]
                status = target.answer(key)
                if status is None:
                    target.release.wait(60)
                    return
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", target.retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if status == 200:
                    with target.lock:
                        target.bodies.setdefault(key, json.loads(body))
                        target.bodies[key + "#auth"] = self.headers.get("Authorization")

        return Handler

    def answer(self, key: str) -> int | None:
        with self.lock:
            now = time.monotonic()
            status: int | None
            if now < self.down_until:
                status = 429
            elif key in self.hanging:
                status = None
            elif key in self.failing:
                status = 500
            elif key in self.refused:
                status = 400
            else:
                status = 200
                if key not in self.accepted:
                    self.accepted.append(key)
            self.requests.append((now, key, status or 0))
            return status

    def keys(self) -> list[str]:
        with self.lock:
            return list(self.accepted)


@pytest.fixture
def endpoint() -> Iterator[Target_]:
    target = Target_()
    target.thread.start()
    try:
        yield target
    finally:
        target.release.set()
        target.server.shutdown()
        target.server.server_close()


def events(first: int, last: int, devices: tuple[str, ...] = ("dev-1", "dev-2")) -> Batch:
    """Seqs ``first..last`` of each device, interleaved; every third one an anomaly."""
    batch = Batch()
    for seq in range(first, last + 1):
        for device in devices:
            kind = "anomaly" if seq % 3 == 0 else "telemetry"
            body = {"device": device, "stream": "s1", "seq": seq, "sensor": "temp",
                    "kind": kind, "severity": "warning", "value": seq / 2}  # fmt: skip
            batch.events.append(make_event_row(body, "2026-01-01T00:00:00.000Z"))
    return batch


def keys_of(batch: Batch, kind: str | None = None) -> list[str]:
    return [f"{e.device}/{e.stream}/{e.seq}" for e in batch.events if kind in (None, e.kind)]


def per_device(keys: list[str]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for key in keys:
        device, _, seq = key.split("/")
        found.setdefault(device, []).append(int(seq))
    return found


def target(url: str, **options: Any) -> Target:
    settings = {"name": "hook", "url": url, "start": "earliest", **options}
    return parse_targets({"forward": [settings]}, "sink.toml", {})[0]


# --- the Done-when: throttled to 5/s, down a while, answering 429 --------------------------


def forward_through_an_outage(url: str, endpoint: Target_, outage: float) -> None:
    hook = target(endpoint.url, kinds=["anomaly"], rate=5, burst=2, max_attempts=3,
                  timeout=2, backoff=0.1, backoff_max=1)  # fmt: skip
    with closing(open_store(url)) as store, Forwarder(url, hook, poll=0.05) as forwarder:
        before = events(1, 30)
        started = time.monotonic()
        store.write(before)
        write_before = time.monotonic() - started
        wait_until(lambda: endpoint.keys() == keys_of(before, "anomaly"))

        endpoint.down_until = time.monotonic() + outage  # the target goes down: 429s
        during = events(31, 90)  # 120 events, 40 of them for the target
        started = time.monotonic()
        for chunk in range(0, len(during.events), 12):  # ten batches, as the writer makes
            store.write(Batch(events=during.events[chunk : chunk + 12]))
        stored_at = time.monotonic()
        # Ingest does not wait for the target: everything is stored while it is still down
        # (and at a per-event pace like the one before it; 0.2 s is slack for a busy box).
        assert stored_at < endpoint.down_until
        per_event_during = (stored_at - started) / len(during.events)
        assert per_event_during <= 10 * write_before / len(before.events) + 0.2 / 120
        assert len(endpoint.keys()) == len(keys_of(before, "anomaly"))  # nothing got through

        expected = keys_of(before, "anomaly") + keys_of(during, "anomaly")
        wait_until(lambda: len(endpoint.keys()) == len(expected), timeout=outage + 120)
        assert forwarder.stats.dead == 0 and forwarder.stats.throttled >= 1

    # Every matching event once by its key, each device's in the order stored.
    accepted = endpoint.keys()
    assert sorted(accepted) == sorted(expected)
    assert per_device(accepted) == per_device(expected)
    oks = [key for _, key, status in endpoint.requests if status == 200]
    assert len(oks) == len(set(oks))  # no event sent twice, even
    assert endpoint.bodies["dev-2/s1/9"]["value"] == 4.5  # the whole payload by default
    # The token bucket: no stretch of requests faster than 5/s beyond the burst of 2.
    times = [at for at, _, _ in endpoint.requests]
    for i in range(len(times)):
        for j in range(i + 3, min(i + 20, len(times))):
            assert times[j] - times[i] >= (j - i - 2) / 5 - 0.02
    # While down, the target was asked once a second (Retry-After: 1), not hammered.
    down = [at for at, _, status in endpoint.requests if status == 429]
    assert len(down) <= outage + 2
    with Backlog(url) as backlog:
        last = backlog.after(0, 100000)[-1].id
        assert backlog.cursor("hook") == last
        assert backlog.dead_letters() == []


def test_a_throttled_target_down_a_while_gets_every_event_once_in_order(
    db_url: str,
    endpoint: Target_,
) -> None:
    forward_through_an_outage(db_url, endpoint, OUTAGE)


@pytest.mark.slow
def test_a_target_down_for_30_s_gets_every_event_once_in_order(
    db_url: str,
    endpoint: Target_,
) -> None:
    forward_through_an_outage(db_url, endpoint, 30.0)


# --- failures, hangs, dead letters, --retry -----------------------------------------------


def test_events_that_use_up_their_attempts_are_dead_letters_and_retry_sends_them(
    db_url: str,
    endpoint: Target_,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "Bearer s3cret")
    config = tmp_path / "sink.toml"
    config.write_text(
        "[[forward]]\n"
        'name = "hook"\n'
        f'url = "{endpoint.url}"\n'
        'start = "earliest"\n'
        'headers = { Authorization = "env:HOOK_TOKEN" }\n'
        'template = { text = "{device} {sensor} {kind}: {value}", value = "{value}" }\n'
        "max_attempts = 2\ntimeout = 0.5\nbackoff = 0.05\nrate = 100\n"
    )
    endpoint.failing = {"dev-1/s1/2"}
    endpoint.hanging = {"dev-2/s1/3"}
    endpoint.refused = {"dev-1/s1/4"}
    batch = events(1, 5)
    with closing(open_store(db_url)) as store:
        store.write(batch)
    dead = ["dev-1/s1/2", "dev-2/s1/3", "dev-1/s1/4"]
    from edge.cloud.forward import load_targets

    (hook,) = load_targets(config)
    with Forwarder(db_url, hook, poll=0.05) as forwarder:
        wait_until(lambda: forwarder.stats.sent + forwarder.stats.dead == 10)
    assert endpoint.keys() == [key for key in keys_of(batch) if key not in dead]
    assert endpoint.bodies["dev-2/s1/5"] == {"text": "dev-2 temp telemetry: 2.5", "value": 2.5}
    assert endpoint.bodies["dev-2/s1/5#auth"] == "Bearer s3cret"
    with Backlog(db_url) as backlog:
        letters = {letter.event.key: letter for letter in backlog.dead_letters("hook")}
    assert sorted(letters) == sorted(dead)
    assert letters["dev-1/s1/2"].attempts == 2
    assert letters["dev-1/s1/2"].last_error == "500 Internal Server Error"
    assert letters["dev-2/s1/3"].last_error == "no answer within 0.5 s"
    assert letters["dev-1/s1/4"].attempts == 1  # a 400 will not change: no retry

    assert main(["sink", "dead-letters", "--db", db_url, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(item["key"] for item in listed) == sorted(dead)

    endpoint.failing, endpoint.hanging, endpoint.refused = set(), set(), set()
    args = ["sink", "dead-letters", "--db", db_url, "--config", str(config), "--retry", "hook"]
    assert main(args) == 0
    assert sorted(endpoint.keys()) == sorted(keys_of(batch))
    with Backlog(db_url) as backlog:
        assert backlog.dead_letters() == []


def test_a_new_target_starts_at_the_latest_event_and_keeps_its_cursor(
    db_url: str,
    endpoint: Target_,
) -> None:
    hook = target(endpoint.url, start="latest")
    with closing(open_store(db_url)) as store:
        store.write(events(1, 2))
        with Forwarder(db_url, hook, poll=0.05) as forwarder:
            store.write(events(3, 4))
            wait_until(lambda: len(endpoint.keys()) == 4)
            assert forwarder.stats.sent == 4
        store.write(events(5, 5))  # while it is stopped: a backlog, sent when it is back
        with Forwarder(db_url, hook, poll=0.05):
            wait_until(lambda: len(endpoint.keys()) == 6)
    assert endpoint.keys() == keys_of(events(3, 5))


# --- the pieces ---------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("7") == 7.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert retry_after("soon") is None and retry_after(None) is None
    assert retry_after("999999") == 3600.0


def test_the_token_bucket_lets_a_burst_through_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(5, 2, clock=lambda: now[0])
    stop = threading.Event()
    assert bucket.take(stop) and bucket.take(stop)
    assert bucket.wait_time() == pytest.approx(0.2)
    now[0] += 0.2
    assert bucket.take(stop) and bucket.wait_time() == pytest.approx(0.2)


def test_secrets_in_headers_come_from_env_or_a_private_file(tmp_path: Path) -> None:
    def problems(headers: dict[str, str], env: dict[str, str] | None = None) -> str:
        entry = {"name": "t", "url": "http://h/", "headers": headers}
        try:
            parse_targets({"forward": [entry]}, "sink.toml", env or {})
        except ConfigError as exc:
            return str(exc)
        return ""

    assert "secret written inline" in problems({"Authorization": "Bearer x"})
    assert "secret written inline" in problems({"X-Api-Key": "x"})
    assert problems({"X-Source": "edgeline"}) == ""
    assert "HOOK is not set" in problems({"Authorization": "env:HOOK"})
    assert problems({"Authorization": "env:HOOK"}, {"HOOK": "x"}) == ""
    secret = tmp_path / "token"
    secret.write_text("Bearer y\n")
    secret.chmod(0o644)
    assert "chmod 600" in problems({"Authorization": f"file:{secret}"})
    secret.chmod(0o600)
    assert problems({"Authorization": f"file:{secret}"}) == ""
    assert "Idempotency-Key" not in problems({"X": "a"})
    assert "set by the forwarder" in problems({"idempotency-key": "a"})
    assert "did you mean 'rate'" in _problem({"rates": 3})
    assert "password in the URL" in _problem({"url": "http://u:pw@h/"})


def _problem(extra: dict[str, Any]) -> str:
    try:
        parse_targets({"forward": [{"name": "t", "url": "http://h/", **extra}]}, "s", {})
    except ConfigError as exc:
        return str(exc)
    return ""


texts = st.text(max_size=30)
an_event = st.builds(
    Event,
    id=st.integers(1, 2**62),
    device=texts,
    stream=texts,
    seq=st.integers(0, 2**63 - 1),
    ts=st.none() | texts,
    sensor=st.none() | texts,
    kind=st.none() | texts,
    severity=st.none() | texts,
    value=st.none() | st.integers().map(json.dumps) | texts.map(json.dumps),
    payload=st.dictionaries(texts, texts, max_size=3).map(json.dumps),
    received_at=texts,
)


@given(an_event)
def test_a_rendered_template_is_json_whatever_the_fields_hold(event: Event) -> None:
    template = {"text": "{device} {sensor} {kind}: {value} {{literal}}", "v": "{value}",
                "n": ["{seq}", 1, True, None]}  # fmt: skip
    assert template_problem(template) is None
    body = json.loads(Target(name="t", url="http://h/", template=template).body(event))
    assert set(body) == {"text", "v", "n"}  # a field's text cannot add keys
    assert body["text"] == (f"{event.device} {event.sensor or ''} {event.kind or ''}:"
                            f" {event.value or ''} {{literal}}")  # fmt: skip
    assert body["v"] == (None if event.value is None else json.loads(event.value))
    assert body["n"] == [event.seq, 1, True, None]


@given(st.text(max_size=20))
def test_a_template_names_only_event_fields(text: str) -> None:
    problem = template_problem({"t": text})
    stripped = text.replace("{{", "").replace("}}", "")
    names = re.findall(r"\{([^{}]*)\}", stripped)
    lone = re.sub(r"\{[^{}]*\}", "", stripped)
    fits = all(name in FIELDS for name in names) and "{" not in lone and "}" not in lone
    assert (problem is None) == fits
    if fits:
        render({"t": text}, Event(1, "d", "s", 1, None, None, None, None, None, "{}", "r"))
    for name in FIELDS:
        assert template_problem(f"x {{{name}}} y") is None
    assert template_problem("{nope}") is not None and template_problem("{") is not None


@given(
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=2),
    st.lists(st.sampled_from(["d1", "d2"]), max_size=2),
    st.sampled_from(["a", "b", "c", None]),
    st.sampled_from(["d1", "d2"]),
)
def test_the_filter_lets_through_what_every_nonempty_list_names(
    kinds: list[str], devices: list[str], kind: str | None, device: str
) -> None:
    hook = parse_targets(
        {"forward": [{"name": "t", "url": "http://h/", "kinds": kinds, "devices": devices}]},
        "s",
        {},
    )[0]
    event = Event(1, device, "s", 1, None, None, kind, None, None, "{}", "r")
    chosen = (not kinds or kind in kinds) and (not devices or device in devices)
    assert hook.matches(event) == chosen
