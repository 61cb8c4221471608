"""The serial.mcu sensor's pieces: its config (a property test of the channels), the sensor
over a real pty against the simulated MCU (renaming, units, vectors put together, faults,
outputs ACKed and refused), and the runner's side (stamps, open quantities, ranges)."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.clock import VirtualClock
from edge.config.device import parse
from edge.errors import ConfigError
from edge.events import Stamp
from edge.runtime.pushed import PushedReadings
from edge.runtime.scheduler import Scheduler
from edge.runtime.sensing import SensorRunner
from edge.runtime.watcher import Watcher
from firmware_bridge.messages import Channel
from firmware_bridge.sim import SimulatedMcu
from sensors import SENSOR_TYPES
from sensors.mcu import McuParams, McuSensor
from tests.waiting import wait_until

HEAD = """
[device]
id = "m-01"
[storage]
state_dir = "/unused"
[uplink]
broker = "mqtt://127.0.0.1:1"
[[sensors]]
id = "pump"
type = "serial.mcu"
port = "/dev/ttyACM0"
"""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a TOML basic string: quotes, backslashes, controls escaped
        escaped = (
            f"\\{c}" if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or c == "\x7f" else c
            for c in value
        )
        return '"' + "".join(escaped) + '"'
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else "inf")
    return str(value)


def channels_toml(channels: list[dict[str, Any]]) -> str:
    tables = ", ".join(
        "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in c.items()) + " }" for c in channels
    )
    return f"channels = [{tables}]\n"


# --- the config ------------------------------------------------------------------------------

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=12)


@st.composite
def valid_channels(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Channels as a user writes them: scalars with optional names, units and ranges, and
    vectors whose axes are 0..n-1 in any order."""
    # One pool of distinct names: a channel left unnamed is its quantity, so no quantity
    # may clash with any channel's name on the MCU.
    pool = draw(st.lists(names, min_size=2, max_size=16, unique=True))
    half = len(pool) // 2
    mcu_names, quantities = pool[:half], pool[half : 2 * half]
    channels: list[dict[str, Any]] = []
    left = list(zip(mcu_names, quantities, strict=True))
    while left:
        width = draw(st.integers(1, min(3, len(left))))
        group, left = left[:width], left[width:]
        if width > 1:  # a vector: its axes named alike, numbered 0..width-1 in any order
            axes = draw(st.permutations(range(width)))
            channels += [{"mcu": m, "name": group[0][1], "axis": a}
                         for (m, _), a in zip(group, axes, strict=True)]  # fmt: skip
            continue
        mcu, quantity = group[0]
        channel: dict[str, Any] = {"mcu": mcu}
        if draw(st.booleans()):
            channel["name"] = quantity
        if draw(st.booleans()):
            channel["unit"] = draw(st.sampled_from(["g", "degC", "L/min", ""]))
        low = draw(st.one_of(st.none(), st.floats(-1e6, 1e6)))
        high = draw(st.one_of(st.none(), st.floats(-1e6, 1e6)))
        if low is not None and high is not None and not low < high:
            low, high = min(low, high) - 1.0, max(low, high) + 1.0
        if low is not None:
            channel["min"] = low
        if high is not None:
            channel["max"] = high
        channels.append(channel)
    return draw(st.permutations(channels))


@given(valid_channels())
def test_valid_channels_become_the_sensors_quantities_ranges_and_vectors(
    channels: list[dict[str, Any]],
) -> None:
    config = parse(HEAD + channels_toml(channels), "edge.toml")
    params: McuParams = config.sensors[0].params
    kind = SENSOR_TYPES["serial.mcu"]
    quantity = {c["mcu"]: c.get("name", c["mcu"]) for c in channels}
    assert set(kind.units_of(params)) == set(quantity.values())
    for c in channels:
        if "min" in c or "max" in c:
            low, high = kind.limits_of(params)[quantity[c["mcu"]]]
            assert (low, high) == (c.get("min", -math.inf), c.get("max", math.inf))
    widths: dict[str, int] = {}
    for c in channels:
        if "axis" in c:
            widths[c["name"]] = widths.get(c["name"], 0) + 1
    assert params.vectors() == widths
    assert not kind.quantities_open(params)


MUTATIONS = {
    # mutation -> the key path (under sensors[0]) its problem is reported at
    "duplicate mcu": "sensors[0]",
    "min above max": "sensors[0].channels[{i}]",
    "axis out of range": "sensors[0].channels[{i}].axis",
    "mcu not text": "sensors[0].channels[{i}].mcu",
    "min not a number": "sensors[0].channels[{i}].min",
    "unknown key": "sensors[0].channels[{i}].scale",
    "name with a dot": "sensors[0].channels[{i}].name",
    "missing mcu": "sensors[0].channels[{i}].mcu",
    "axis without name": "sensors[0].channels[{i}]",
    "not a table": "sensors[0].channels[{i}]",
}


@given(valid_channels(), st.sampled_from(sorted(MUTATIONS)), st.data())
def test_each_broken_channel_is_named_with_its_key_path_expected_and_found(
    channels: list[dict[str, Any]], mutation: str, data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(channels) - 1))
    broken: list[Any] = [dict(c) for c in channels]
    target: dict[str, Any] = broken[i]
    if mutation == "duplicate mcu":
        broken.append({"mcu": target["mcu"], "name": "another_one"})
    elif mutation == "min above max":
        target.pop("axis", None)
        target.update({"name": target.get("name", "q"), "min": 5.0, "max": 1.0})
        broken = [target]
        i = 0
    elif mutation == "axis out of range":
        target["axis"] = data.draw(st.one_of(st.integers(-100, -1), st.integers(16, 100)))
    elif mutation == "mcu not text":
        target["mcu"] = data.draw(st.one_of(st.integers(), st.booleans()))
    elif mutation == "min not a number":
        target.pop("axis", None)
        target["min"] = data.draw(st.one_of(st.text(max_size=5), st.booleans()))
    elif mutation == "unknown key":
        target["scale"] = 2.0
    elif mutation == "name with a dot":
        target["name"] = "flow.rate"
    elif mutation == "missing mcu":
        del target["mcu"]
    elif mutation == "axis without name":
        broken = [{"mcu": "x", "axis": 0}]
        i = 0
    elif mutation == "not a table":
        broken = ["flow"]
        i = 0
    text = HEAD + (channels_toml(broken) if broken != ["flow"] else 'channels = ["flow"]\n')
    with pytest.raises(ConfigError) as raised:
        parse(text, "edge.toml")
    where = f"edge.toml: {MUTATIONS[mutation].format(i=i)}: "
    assert any(p.startswith(where) for p in raised.value.problems), raised.value.problems
    for problem in raised.value.problems:
        assert problem.startswith("edge.toml: sensors[0]")
        assert "unknown key" in problem or ("expected" in problem and (
            "found" in problem or "missing" in problem)), problem  # fmt: skip


def test_an_action_may_drive_only_an_output_the_mcu_sensor_lists() -> None:
    body = (
        HEAD
        + 'outputs = ["relay"]\n'
        + """
[[detectors]]
id = "hot"
sensor = "pump"
quantity = "flow"
type = "threshold"
above = 1.0
[[actions]]
when = "hot"
output = "pump.pump"
"""
    )
    with pytest.raises(ConfigError, match=r"actions\[0\]\.output: expected a gpio.output id or "
                       r"<serial.mcu id>.<output> \(pump.relay\), found 'pump.pump'"):  # fmt: skip
        parse(body, "edge.toml")
    parse(body.replace('"pump.pump"', '"pump.relay"'), "edge.toml")


def test_without_channels_any_quantity_may_be_watched_but_one_must_be_named() -> None:
    detector = '[[detectors]]\nsensor = "pump"\ntype = "threshold"\nabove = 1.0\n'
    with pytest.raises(ConfigError, match=r"detectors\[0\]\.quantity: missing; expected the"):
        parse(HEAD + detector, "edge.toml")
    parse(HEAD + detector + 'quantity = "anything"\n', "edge.toml")


# --- the sensor on a pty -------------------------------------------------------------------


class Heard:
    """A ``Readings`` that keeps what it is told (on the link's thread)."""

    def __init__(self) -> None:
        self.readings: list[tuple[Any, float, bool]] = []
        self.blocks: list[tuple[str, Any, Any]] = []
        self.faults: list[Exception] = []
        self.reports: list[tuple[str, str, Any, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def reading(self, value: Any, at: float, synced: bool) -> None:
        self.readings.append((value, at, synced))

    def block(self, quantity: str, times: Any, samples: Any, synced: bool) -> None:
        self.blocks.append((quantity, times, samples))

    def fault(self, error: Exception) -> None:
        self.faults.append(error)

    def report(self, kind: str, severity: str, value: Any, fields: dict[str, Any]) -> None:
        self.reports.append((kind, severity, value, fields))


CHANNELS = [Channel(0, "ax", "g"), Channel(1, "ay", "g"), Channel(2, "flow", "L/min"),
            Channel(3, "spare", "V")]  # fmt: skip


@pytest.fixture
def mcu(tmp_path: Path) -> Iterator[SimulatedMcu]:
    with SimulatedMcu(tmp_path / "tty-mcu", CHANNELS, ["relay"], seed=1) as simulated:
        yield simulated


def sensor_on(mcu: SimulatedMcu, table: str) -> tuple[McuSensor, Heard]:
    text = HEAD.replace("/dev/ttyACM0", str(mcu.port)) + table
    params = parse(text, "edge.toml").sensors[0].params
    sensor = McuSensor(params, mcu.clock, reopen_s=0.05, retries=2, retry_s=0.05)
    heard = Heard()
    sensor.listen(heard)
    wait_until(lambda: sensor.link.online, timeout=10)
    return sensor, heard


def test_channels_are_renamed_units_filled_in_and_axes_made_vectors(mcu: SimulatedMcu) -> None:
    sensor, heard = sensor_on(mcu, """
channels = [
  { mcu = "ax", name = "accel", axis = 0 },
  { mcu = "ay", name = "accel", axis = 1 },
  { mcu = "flow", name = "water" },
]
""")  # fmt: skip
    try:
        at = mcu.clock()
        mcu.reading(2, 3.5, at)
        mcu.reading(3, 9.0, at)  # not in the config: ignored
        mcu.reading(1, -0.5, at)  # an axis, out of order: waits for the other
        mcu.reading(0, 0.25, at)
        mcu.samples(0, at, 0.001, np.arange(4, dtype=np.float32))
        mcu.samples(1, at, 0.001, np.arange(4, dtype=np.float32) + 10)
        mcu.samples(1, at + 1, 0.001, np.ones(4, dtype=np.float32))  # its x was lost
        mcu.samples(0, at + 2, 0.001, np.ones(4, dtype=np.float32))
        mcu.samples(1, at + 2, 0.001, np.ones(4, dtype=np.float32))
        wait_until(lambda: len(heard.blocks) == 2 and len(heard.readings) == 2)
        assert [r[0] for r in heard.readings] == [{"water": 3.5}, {"accel": (0.25, -0.5)}]
        quantity, times, samples = heard.blocks[0]
        assert quantity == "accel" and samples.shape == (4, 2)
        assert samples[:, 1].tolist() == [10.0, 11.0, 12.0, 13.0]
        assert np.allclose(np.diff(times), 0.001)
        assert sensor.units == {"water": "L/min", "accel": "g"}
        status = sensor.status()
        assert status["ignored_readings"] == 1 and status["incomplete_vectors"] == 1
    finally:
        sensor.close()


def test_a_vanished_port_is_a_fault_and_commands_are_acked_refused_or_given_up(
    mcu: SimulatedMcu,
) -> None:
    sensor, heard = sensor_on(mcu, 'outputs = ["relay", "siren"]\n')
    try:
        sensor.output("relay").set(True)
        sensor.output("siren").set(True)  # the MCU has no siren: NACK
        wait_until(lambda: len(heard.reports) == 2)
        assert mcu.outputs["relay"] is True
        (ack, nack) = heard.reports
        assert ack == ("state", "info", True, {"output": "relay", "acked": True})
        assert nack[:3] == ("health", "warning", True) and "no output siren" in nack[3]["error"]
        assert mcu.commands == [{"set": {"relay": True}}, {"set": {"siren": True}}]  # no retry
        mcu.close()
        wait_until(lambda: len(heard.faults) == 1)
        assert "offline" in str(heard.faults[0])
        sensor.output("relay").set(False)  # nobody there: tried, then given up, and said
        wait_until(lambda: len(heard.reports) == 3)
        assert heard.reports[2][3]["state"] == "command_failed"
    finally:
        sensor.close()


# --- the runner's side ------------------------------------------------------------------------


def test_a_pushed_reading_is_stamped_when_measured_and_synced_only_when_both_clocks_are() -> None:
    clock = VirtualClock(start_wall=1_000_000.0)
    clock.advance(10.0)
    scheduler = Scheduler(clock)
    config = parse(HEAD, "edge.toml").sensors[0]
    kind = SENSOR_TYPES["serial.mcu"]
    stored: list[tuple[str, Any, Stamp, dict[str, Any]]] = []

    def emit(sensor: str, k: str, severity: str, value: Any, stamp: Stamp, f: Any) -> None:
        stored.append((k, value, stamp, f))

    device: Any = object()
    runner = SensorRunner(config, kind, device, [], emit=emit, on_detection=lambda *a: None)
    pushed = PushedReadings(runner, scheduler, clock, Watcher())
    now, wall = clock.monotonic(), clock.wall()
    stamp = pushed.stamp(now - 2.5, True)
    assert (stamp.mono, stamp.wall) == (now - 2.5, wall - 2.5)
    assert stamp.synced == clock.synced()
    assert pushed.stamp(now, False).synced is False


def test_open_quantities_get_a_channel_each_with_the_filters_and_configured_ranges() -> None:
    text = HEAD + 'channels = [{ mcu = "flow", max = 10.0 }]\n'
    config = parse(text, "edge.toml").sensors[0]
    kind = SENSOR_TYPES["serial.mcu"]
    events: list[tuple[str, Any, dict[str, Any]]] = []

    def emit(sensor: str, k: str, severity: str, value: Any, stamp: Stamp, f: Any) -> None:
        events.append((k, value, f))

    device: Any = object()
    runner = SensorRunner(config, kind, device, [], emit=emit, on_detection=lambda *a: None)
    assert runner.channels["flow"].limits == (-math.inf, 10.0)
    runner.reading({"flow": 12.0}, Stamp(1.0, 1.0, True))
    assert events[-1][0] == "health" and events[-1][2]["state"] == "out_of_range"
    runner.block("accel", np.arange(3.0), np.zeros((3, 3)), Stamp(2.0, 2.0, True))
    assert runner.readings == 2

    open_config = parse(HEAD, "edge.toml").sensors[0]
    runner = SensorRunner(open_config, kind, device, [], emit=emit, on_detection=lambda *a: None)
    assert runner.channels == {}
    runner.fault(ConnectionError("gone"), Stamp(3.0, 3.0, True))
    runner.reading({"anything": 1.0}, Stamp(4.0, 4.0, True))
    assert "anything" in runner.channels
    assert [e[2].get("state") for e in events[-2:]] == ["degraded", "recovered"]


def test_edge_run_without_pyserial_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.oracles import run_cli

    config = tmp_path / "edge.toml"
    config.write_text(HEAD.replace("/unused", str(tmp_path / "state")))
    monkeypatch.setitem(sys.modules, "serial", None)  # import serial: ImportError
    code, printed = run_cli(["run", "--config", str(config)])
    assert code == 2, printed
    lines = [line for line in printed.splitlines() if "pyserial" in line]
    assert len(lines) == 1 and "pip install pyserial" in lines[0]
    assert "Traceback" not in printed
