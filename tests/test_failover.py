"""More than one broker: ``[uplink] broker`` as a list, failing over in order and back.

The brokers are real Mosquittos on free loopback ports; the device is the real delivery
loop (recorder, outbox, uplink) on the real clock. Events are counted by ``seq`` at each
broker's subscriber: at least once in A and B together, exactly once after deduplication,
in order per broker.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.bench.mosquitto import Mosquitto, free_port
from edge.clock import RealClock, VirtualClock
from edge.config.device import UplinkConfig, broker_url, parse
from edge.errors import ConfigError
from edge.runtime.runtime import Runtime
from edge.runtime.status_file import read_status
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.uplink.failover import Failover
from tests.brokers import Received, Subscriber, need_mosquitto
from tests.test_uplink import Link, open_link
from tests.waiting import wait_until

DEVICE = "u-01"  # open_link's device
EVENTS = f"edgeline/{DEVICE}/events/#"
FAILBACK = 1.0  # seconds between probes of the preferred broker (the config's minimum)


def seqs(messages: list[Received]) -> list[int]:
    return [json.loads(m.payload)["seq"] for m in messages if "/events/" in m.topic]


def first_seen(values: list[int]) -> list[int]:
    """Each seq at its first arrival (a broker may deliver one twice: at-least-once)."""
    seen: set[int] = set()
    firsts = []
    for value in values:
        if value not in seen:
            seen.add(value)
            firsts.append(value)
    return firsts


def status_of(url: str) -> dict[str, Any]:
    """The retained status message on a broker, as a late subscriber sees it."""
    with Subscriber(url, f"edgeline/{DEVICE}/status") as watcher:
        return dict(json.loads(watcher.wait_for_count(1)[0].payload))


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    """A (preferred; its subscriptions and queued messages survive a stop) and B."""
    executable = need_mosquitto()
    a = Mosquitto(tmp_path / "a", executable=executable, persistence=True).start()
    b = Mosquitto(tmp_path / "b", executable=executable).start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


def failover_link(tmp_path: Path, urls: list[str]) -> Link:
    return open_link(tmp_path, urls, inflight=8, failback=FAILBACK)


def test_the_device_fails_over_to_b_and_back_to_a_without_losing_an_event(
    tmp_path: Path, brokers: tuple[Mosquitto, Mosquitto]
) -> None:
    a, b = brokers
    at_a = Subscriber(a.url, EVENTS, client_id="watch-a", clean_session=False).start()
    at_b = Subscriber(b.url, EVENTS).start()
    link = failover_link(tmp_path, [a.url, b.url])
    uplink = link.uplink
    try:
        uplink.start()
        link.store(10_000)
        at_a.wait_for(lambda ms: len(ms) >= 200, timeout=30)  # mid-drain: events in flight
        assert uplink.stats.broker == a.url
        a.stop()  # the preferred broker dies under the drain
        wait_until(lambda: uplink.online and uplink.stats.broker == b.url)
        link.store(500)  # 10001-10500, stored while on the fallback
        wait_until(lambda: link.outbox.stats().pending == 0 and link.recorder.flush(), 60)
        assert status_of(b.url)["state"] == "online"  # the birth went to the broker it is on

        a.start()
        back = time.monotonic()
        at_a.wait_subscribed(count=2)  # its persistent session is back too
        wait_until(lambda: uplink.online and uplink.stats.broker == a.url, timeout=30)
        took = time.monotonic() - back
        # One probe per interval, then a clean leave and a connect: within the interval
        # (and a little for the connect itself).
        assert took <= FAILBACK + 1.5, took
        link.store(500)  # 10501-11000, on the preferred broker again
        wait_until(lambda: link.outbox.stats().pending == 0 and link.recorder.flush(), 60)
        wait_until(lambda: set(seqs(at_a.messages)) >= set(range(10_501, 11_001)))
        stats = link.outbox.stats()
    finally:
        link.close()
        at_a.close()
        at_b.close()

    from_a, from_b = seqs(at_a.messages), seqs(at_b.messages)
    assert set(from_a) | set(from_b) == set(range(1, 11_001))  # every event, nothing else
    assert first_seen(from_a) == sorted(first_seen(from_a))  # in order on each broker
    assert first_seen(from_b) == sorted(first_seen(from_b))
    assert set(from_b) & set(range(1, 10_001))  # the drain went on at B where A left it
    assert set(range(10_001, 10_501)) <= set(from_b)
    assert set(range(10_501, 11_001)) <= set(from_a)
    assert not set(range(10_501, 11_001)) & set(from_b)
    assert stats.pending == 0 and stats.delivered == 11_000 and stats.last_seq == 11_000
    # Only what was in flight when A died (the window, 8) may have gone to both.
    assert uplink.stats.published <= 11_000 + 8, uplink.stats
    assert uplink.stats.failovers == 2  # to B, and back to A
    assert status_of(b.url)["state"] == "offline"  # left cleanly: B does not think it is there
    assert status_of(a.url)["state"] == "offline"  # closed at the end of the test


def test_an_unreachable_first_broker_sends_the_device_to_the_next_at_once(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any
) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    subscriber = mqtt_subscriber(mosquitto.url, EVENTS)
    link = failover_link(tmp_path, [dead, mosquitto.url])
    try:
        link.store(100)
        link.uplink.start()
        subscriber.wait_for(lambda ms: set(seqs(ms)) == set(range(1, 101)))
        assert link.uplink.stats.broker == mosquitto.url
        assert "refused" in link.uplink.stats.last_error and dead in link.uplink.stats.last_error
        assert link.uplink.backoff.attempt == 0  # the next broker was tried without waiting
    finally:
        link.close()


@pytest.mark.parametrize("listed", [False, True], ids=["string", "one-element list"])
def test_a_one_element_list_is_the_string(
    tmp_path: Path, mosquitto: Mosquitto, mqtt_subscriber: Any, listed: bool
) -> None:
    subscriber = mqtt_subscriber(mosquitto.url, EVENTS)
    link = open_link(tmp_path, [mosquitto.url] if listed else mosquitto.url)
    try:
        link.store(50)
        link.uplink.start()
        assert seqs(subscriber.wait_for_count(50)) == list(range(1, 51))
        assert link.uplink.stats.broker == mosquitto.url
        mosquitto.restart()  # the one broker is retried after the backoff, as always
        wait_until(lambda: link.uplink.stats.connects == 2)
        assert link.uplink.failover.index == 0 and link.uplink.stats.failovers == 0
    finally:
        link.close()


# -- the status file and the STATUS line ----------------------------------------------------

SCENARIO = """
[device]
id = "fo-01"
[storage]
state_dir = "{state}"
status_interval = 0.05
[uplink]
broker = ["{dead}", "{live}"]
backoff_min = 0.05
backoff_max = 0.2
[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 0.05
[simulation]
duration = 3600.0
"""


def test_the_status_file_and_the_status_line_say_which_broker_it_is_on(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    from edge.cli.run import Rate

    dead = f"mqtt://127.0.0.1:{free_port()}"
    text = SCENARIO.format(state=tmp_path / "state", dead=dead, live=mosquitto.url)
    scenario = parse_scenario(text, "fo.toml", overrides={})
    clock = RealClock(assume_synced=True)
    device = Runtime(
        scenario.config, hardware=SimulatedHardware(scenario, clock).hardware, clock=clock
    )
    device.start()
    try:
        wait_until(lambda: read_status(tmp_path / "state")["link"]["state"] == "online")
        link = read_status(tmp_path / "state")["link"]
        assert link["broker"] == mosquitto.url and link["failovers"] == 1
        assert f"link online, broker {mosquitto.url}" in Rate(device).line()
    finally:
        device.close(timeout=2)


# -- the policy, on a virtual clock ---------------------------------------------------------


def three() -> UplinkConfig:
    return UplinkConfig(broker=("mqtt://a", "mqtts://b:8884", "mqtt://c"), failback=30.0)


def test_failed_attempts_go_down_the_list_and_back_off_after_a_whole_round() -> None:
    failover = Failover(three(), VirtualClock())
    assert [t.url for t in failover.targets] == ["mqtt://a", "mqtts://b:8884", "mqtt://c"]
    assert (failover.targets[1].host, failover.targets[1].port, failover.targets[1].tls) == (
        "b",
        8884,
        True,
    )
    rounds = [(failover.failed(), failover.current.url) for _ in range(6)]
    assert rounds == [
        (False, "mqtts://b:8884"),
        (False, "mqtt://c"),
        (True, "mqtt://a"),  # all three failed in a row: back off
        (False, "mqtts://b:8884"),
        (False, "mqtt://c"),
        (True, "mqtt://a"),
    ]
    failover.failed()
    failover.online()  # b took it: the count starts over
    assert failover.failures == 0 and failover.current.url == "mqtts://b:8884"


def test_one_broker_backs_off_after_every_failed_attempt() -> None:
    failover = Failover(UplinkConfig(broker="mqtt://a"), VirtualClock())
    assert all(failover.failed() for _ in range(5)) and failover.current.url == "mqtt://a"
    assert failover.preferred_back() is False  # never on a fallback


def test_a_fallback_probes_the_preferred_broker_once_per_interval() -> None:
    clock = VirtualClock()
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        settings = UplinkConfig(broker=(f"mqtt://127.0.0.1:{port}", "mqtt://b"), failback=30.0)
        failover = Failover(settings, clock)
        failover.failed()
        failover.online()  # on b, the fallback
        assert failover.on_fallback and failover.preferred_back() is False
        clock.advance(29.9)
        assert failover.preferred_back() is False and failover._probe is None  # not yet due
        clock.advance(0.1)
        assert failover.preferred_back() is False  # the probe starts
        probe = failover._probe
        assert probe is not None and probe.done.wait(5)
        assert failover.preferred_back() is True
        failover.go_back()
        assert not failover.on_fallback and failover.preferred_back() is False


def test_a_preferred_broker_still_down_keeps_the_device_on_the_fallback() -> None:
    clock = VirtualClock()
    settings = UplinkConfig(broker=(f"mqtt://127.0.0.1:{free_port()}", "mqtt://b"), failback=5.0)
    failover = Failover(settings, clock)
    failover.failed()
    failover.online()
    for _ in range(3):
        clock.advance(5.0)
        assert failover.preferred_back() is False
        probe = failover._probe
        assert probe is not None and probe.done.wait(5) and not probe.accepted
        assert failover.preferred_back() is False and failover.current.url == "mqtt://b"


# -- the config: a list of URLs, each checked like the one -------------------------------------


def uplink_problems(broker: str, extra: str = "") -> list[str]:
    text = f'[device]\nid = "d"\n[uplink]\nbroker = {broker}\n{extra}'
    with pytest.raises(ConfigError) as caught:
        parse(text, "x.toml")
    return caught.value.problems


def test_a_bad_url_in_the_list_is_refused_at_its_index() -> None:
    assert uplink_problems('["mqtt://a", "http://b:1883"]') == [
        "x.toml: uplink.broker[1]: expected a URL such as mqtt://host:1883 or mqtts://host:8883,"
        " found string 'http://b:1883'"
    ]
    (problem,) = uplink_problems('["mqtt://a", "mqtt://user:hunter2@b"]')
    assert problem.startswith("x.toml: uplink.broker[1]: expected a URL without a password")
    assert "hunter2" not in problem


def test_tls_settings_and_passwords_are_checked_for_every_url_in_the_list() -> None:
    (tls,) = uplink_problems('["mqtts://a", "mqtt://b"]', 'ca_file = "/etc/ca.pem"\n')
    assert tls.startswith("x.toml: uplink.broker[1]: expected an mqtts:// URL for TLS settings")
    (clear,) = uplink_problems('["mqtts://a", "mqtt://b"]', 'password_env = "P"\n')
    assert clear.startswith("x.toml: uplink.broker[1]: expected an mqtts:// URL with password_env")
    allowed = 'password_env = "P"\nallow_plaintext_password = true\n'
    text = f'[device]\nid = "d"\n[uplink]\nbroker = ["mqtts://a", "mqtt://b"]\n{allowed}'
    assert parse(text).uplink.brokers == ("mqtts://a", "mqtt://b")


def test_an_empty_list_and_a_repeated_url_are_refused() -> None:
    assert uplink_problems("[]") == [
        "x.toml: uplink.broker: expected a URL or a list of at least one, found an empty array"
    ]
    assert uplink_problems('["mqtt://a", "mqtt://b", "mqtt://a"]') == [
        "x.toml: uplink.broker[2]: expected each broker once, found 'mqtt://a' again (broker[0])"
    ]
    (wrong_type,) = uplink_problems('["mqtt://a", 5]')
    assert wrong_type.startswith("x.toml: uplink.broker: expected a string or a list of strings")


def test_a_string_and_a_one_element_list_configure_the_same_link() -> None:
    one = parse('[device]\nid = "d"\n[uplink]\nbroker = "mqtts://h:8884"\n').uplink
    listed = parse('[device]\nid = "d"\n[uplink]\nbroker = ["mqtts://h:8884"]\n').uplink
    assert one.brokers == listed.brokers == ("mqtts://h:8884",)
    assert (one.host, one.port, one.tls, one.url) == (
        listed.host,
        listed.port,
        listed.tls,
        listed.url,
    )
    assert one.at(0) == listed.at(0) == one


URLS = st.sampled_from(
    [
        "mqtt://a",
        "mqtt://b:1884",
        "mqtts://c",
        "mqtts://d:8884",
        "mqtt://e/",
        "http://f",
        "mqtt://",
        "mqtt://g:99999",
        "mqtt://h/path",
        "mqtt://u:secret@i",
        "j:1883",
        "",
    ]
)


@given(st.lists(URLS, max_size=6))
def test_every_url_of_a_list_is_checked_and_named_by_its_index(urls: list[str]) -> None:
    text = f'[device]\nid = "d"\n[uplink]\nbroker = {json.dumps(urls)}\n'
    bad = {i for i, url in enumerate(urls) if broker_url(url) is not None}
    repeated = {i for i, url in enumerate(urls) if url in urls[:i]}
    try:
        uplink = parse(text, "x.toml").uplink
    except ConfigError as exc:
        problems = exc.problems
        assert urls == [] or bad or repeated
        assert all("secret" not in p for p in problems)
        if not urls:
            assert problems == [
                "x.toml: uplink.broker: expected a URL or a list of at least one, found an empty"
                " array"
            ]
        elif bad:  # each bad URL at its own index, and nothing else
            assert [p.split(": ")[1] for p in problems] == [
                f"uplink.broker[{i}]" for i in sorted(bad)
            ]
        else:
            assert [p.split(": ")[1] for p in problems] == [
                f"uplink.broker[{i}]" for i in sorted(repeated)
            ]
    else:
        assert urls and not bad and not repeated
        assert uplink.brokers == tuple(urls) and uplink.url == urls[0]
        assert [target.url for target in Failover(uplink, VirtualClock()).targets] == urls
