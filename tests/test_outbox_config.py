"""The outbox's config keys: validated with a clear answer, turned into OutboxLimits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.device import parse
from edge.errors import ConfigError
from edge.outbox.limits import OutboxLimits

BASE = """
[device]
id = "d"
[uplink]
broker = "mqtt://h"
{uplink}
[storage]
{storage}
[[sensors]]
id = "siren"
type = "gpio.output"
pin = 22
"""


def config(storage: str = "", uplink: str = "") -> str:
    return BASE.format(storage=storage, uplink=uplink)


def test_defaults_are_a_64_mib_cap_with_a_tenth_reserved_and_replay_kept() -> None:
    loaded = parse(config(), "edge.toml")
    limits = OutboxLimits.from_config(loaded.storage)
    assert limits == OutboxLimits(max_bytes=64 * 1024 * 1024, critical_reserve=0.1)
    assert limits.keep_delivered and limits.ttl == {} and limits.max_events == 0
    assert 0.8 * limits.max_bytes < limits.row_bytes < limits.max_bytes
    assert loaded.uplink.max_rate == 0.0 and loaded.storage.full_output is None


def test_every_key_reaches_the_limits() -> None:
    storage = """
max_bytes = 0
max_events = 5000
critical_reserve = 0.25
keep_delivered = false
ttl_telemetry = 3600
ttl_info = 86400.0
full_output = "siren"
"""
    loaded = parse(config(storage, "max_rate = 50.5"), "edge.toml")
    limits = OutboxLimits.from_config(loaded.storage)
    assert (limits.max_bytes, limits.row_bytes, limits.max_events) == (0, 0, 5000)
    assert limits.ttl == {3: 3600.0, 2: 86400.0}
    assert limits.critical_reserve == 0.25 and not limits.keep_delivered
    assert limits.expiry_interval == 60.0
    assert loaded.uplink.max_rate == 50.5


@pytest.mark.parametrize(
    ("storage", "uplink", "message"),
    [
        ("max_bytes = 4096", "", "storage.max_bytes: expected 0 (no cap) or at least 131072"),
        ("max_bytes = -1", "", "storage.max_bytes"),
        ("max_events = 10", "", "storage.max_events: expected an integer >= 100"),
        ("critical_reserve = 1.0", "", "storage.critical_reserve: expected a number from 0.0"),
        ("ttl_telemetry = 0", "", "storage.ttl_telemetry: expected a number >= 1.0"),
        ("ttl_critical = 10", "", "storage.ttl_critical: unknown key (known keys:"),
        ("full_output = 'sirne'", "", "did you mean 'siren'?"),
        ("keep_delivered = 'yes'", "", "storage.keep_delivered: expected true or false"),
        ("", "max_rate = -5", "uplink.max_rate: expected a number from 0.0"),
        (
            "commit_window_ms = 200\nbulk_window_ms = 150",
            "",
            "storage.bulk_window_ms: expected at least commit_window_ms (200), found 150",
        ),
        ("bulk_window_ms = 10001", "", "storage.bulk_window_ms: expected an integer from 0 to"),
    ],
)
def test_bad_values_are_named(storage: str, uplink: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(config(storage, uplink), "edge.toml")
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


@pytest.mark.parametrize(
    ("commit", "bulk"),
    [(100, 1000), (0, 0), (20, 200), (250, 1000), (1000, 1000), (2000, 2000)],
)
def test_the_bulk_window_defaults_to_ten_commit_windows_within_a_second(
    commit: int, bulk: int
) -> None:
    storage = parse(config(f"commit_window_ms = {commit}"), "edge.toml").storage
    assert storage.bulk_window_ms is None
    assert storage.bulk_window == bulk


@given(
    commit=st.integers(min_value=0, max_value=10_000),
    bulk=st.none() | st.integers(min_value=0, max_value=10_000),
)
def test_a_bulk_window_is_accepted_exactly_when_not_shorter_than_the_commit_window(
    commit: int, bulk: int | None
) -> None:
    text = f"commit_window_ms = {commit}" + ("" if bulk is None else f"\nbulk_window_ms = {bulk}")
    if bulk is not None and bulk < commit:
        with pytest.raises(ConfigError) as caught:
            parse(config(text), "edge.toml")
        assert [p.split(": ")[1] for p in caught.value.problems] == ["storage.bulk_window_ms"]
        return
    storage = parse(config(text), "edge.toml").storage
    assert storage.bulk_window >= storage.commit_window_ms
    assert storage.bulk_window == (min(10 * commit, max(commit, 1000)) if bulk is None else bulk)
