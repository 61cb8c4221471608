"""Home Assistant MQTT discovery: every config message fits the schema Home Assistant
documents, and each state topic carries what its config message promises.

Real parts: a Mosquitto, a device (an in-process Runtime on a VirtualClock with simulated
chips and gpiozero's MockFactory pins), the bridge's own MQTT client, and Jinja2 (Home
Assistant's template engine, in the sandbox Home Assistant renders with) for every
``value_template``. The oracle below is written from Home Assistant's documentation, not
from the code under test.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from hypothesis import given
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edge.bench.mosquitto import Mosquitto
from edge.clock import VirtualClock
from edge.cloud.homeassistant import SwitchBridge
from edge.config.device import UplinkConfig, parse
from edge.errors import ConfigError
from edge.events import Event
from edge.runtime.homeassistant import RECORD, HomeAssistant, StateDocument
from edge.runtime.runtime import Runtime
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.uplink.homeassistant import (
    expire_after,
    level,
    literal,
    switch_command,
    switch_target,
)
from edge.uplink.operator import send_command
from sensors import GpioOutput
from tests.brokers import Received, Subscriber, publish
from tests.test_commands_mqtt import KEY_HEX
from tests.waiting import wait_until

# -- the oracle: Home Assistant's documented discovery schema ----------------------------
# Sources: home-assistant.io/integrations/mqtt ("Discovery topic", "Discovery payload",
# the origin options), home-assistant.io/integrations/sensor.mqtt, binary_sensor.mqtt and
# switch.mqtt (their configuration variables), developers.home-assistant.io/docs/core/
# entity/sensor ("Available device classes", "Available state classes") and home-assistant.io
# /integrations/binary_sensor and /switch (their device classes).

# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids of [a-zA-Z0-9_-].
DISCOVERY_TOPIC = re.compile(
    r"homeassistant/(?P<component>sensor|binary_sensor|switch)/"
    r"(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic",
    "device", "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "object_id", "origin",
    "payload_available", "payload_not_available", "qos", "unique_id",
}  # fmt: skip
KEYS = {
    "sensor": COMMON | {
        "device_class", "expire_after", "force_update", "last_reset_value_template", "options",
        "suggested_display_precision", "state_class", "state_topic", "unit_of_measurement",
        "value_template",
    },
    "binary_sensor": COMMON | {
        "device_class", "expire_after", "force_update", "off_delay", "payload_off",
        "payload_on", "state_topic", "value_template",
    },
    "switch": COMMON | {
        "command_template", "command_topic", "device_class", "optimistic", "payload_off",
        "payload_on", "retain", "state_off", "state_on", "state_topic", "value_template",
    },
}  # fmt: skip
REQUIRED = {
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "switch": {"command_topic"},
}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
    "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
# Sensor device classes and the units Home Assistant accepts with each (those with units).
SENSOR_UNITS = {
    "apparent_power": {"mVA", "VA", "kVA"},
    "atmospheric_pressure": {"cbar", "bar", "hPa", "mmHG", "inHg", "inH₂O", "kPa", "mbar", "Pa",
                             "psi"},
    "battery": {"%"},
    "co2": {"ppm"},
    "current": {"A", "mA"},
    "distance": {"km", "m", "cm", "mm", "mi", "nmi", "yd", "in"},
    "energy": {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal",
               "Mcal", "Gcal"},
    "frequency": {"mHz", "Hz", "kHz", "MHz", "GHz"},
    "humidity": {"%"},
    "illuminance": {"lx"},
    "moisture": {"%"},
    "power": {"mW", "W", "kW", "MW", "GW", "TW"},
    "pressure": {"cbar", "bar", "hPa", "mmHg", "inHg", "kPa", "mbar", "Pa", "psi", "mPa"},
    "speed": {"ft/s", "in/d", "in/h", "in/s", "km/h", "kn", "m/s", "mph", "mm/d", "mm/s"},
    "temperature": {"°C", "°F", "K"},
    "voltage": {"V", "mV", "µV", "kV", "MV"},
    "volume_flow_rate": {"m³/h", "m³/min", "m³/s", "ft³/min", "L/h", "L/min", "L/s", "gal/d",
                         "gal/h", "gal/min", "mL/s"},
    "wind_speed": {"ft/s", "km/h", "kn", "m/s", "mph"},
}  # fmt: skip
STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
BINARY_SENSOR_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving", "occupancy",
    "opening", "plug", "power", "presence", "problem", "running", "safety", "smoke", "sound",
    "tamper", "update", "vibration", "window",
}  # fmt: skip
SWITCH_CLASSES = {"outlet", "switch"}
# What a reading in each unit can plausibly be on the simulated bench: a number announced
# in the wrong unit (Pa for hPa, % for a fraction) falls outside.
PLAUSIBLE = {
    "°C": (-40.0, 85.0), "hPa": (300.0, 1100.0), "%": (0.0, 100.0), "V": (-7.0, 33.0),
    "A": (-3.3, 3.3), "W": (0.0, 110.0), "lx": (0.0, 65536.0), "km/h": (0.0, 500.0),
}  # fmt: skip

# Home Assistant renders templates in a sandbox, with the payload as ``value`` and, when it
# is JSON, as ``value_json``; an undefined name renders as "".
JINJA = ImmutableSandboxedEnvironment()


def render(template: str, payload: bytes) -> str:
    text = payload.decode("utf-8")
    return JINJA.from_string(template).render(value=text, value_json=json.loads(text))


def schema_problems(topic: str, body: Any) -> list[str]:
    """What in one config message departs from Home Assistant's documented schema."""
    match = DISCOVERY_TOPIC.fullmatch(topic)
    if match is None:
        return [f"{topic}: not <prefix>/<component>/[<node_id>/]<object_id>/config"]
    component = match["component"]
    if not isinstance(body, dict):
        return [f"{topic}: the payload is not a JSON object"]
    found = [f"{topic}: unknown key {key!r}" for key in set(body) - KEYS[component]]
    found += [f"{topic}: no {key}" for key in REQUIRED[component] - set(body)]
    if not isinstance(body.get("unique_id"), str) or not body["unique_id"]:
        found.append(f"{topic}: an entity with a device needs a unique_id")
    for item in body.get("availability", []):
        if set(item) - AVAILABILITY_KEYS or "topic" not in item:
            found.append(f"{topic}: availability item {item}")
    device = body.get("device", {})
    if set(device) - DEVICE_KEYS or not device.get("identifiers"):
        found.append(f"{topic}: device {device}")
    origin = body.get("origin", {})
    if set(origin) - ORIGIN_KEYS or not origin.get("name"):
        found.append(f"{topic}: origin {origin}")
    device_class = body.get("device_class")
    if component == "sensor":
        if device_class is not None and device_class not in SENSOR_UNITS:
            found.append(f"{topic}: sensor device class {device_class!r}")
        elif device_class is not None:
            unit = body.get("unit_of_measurement")
            if unit not in SENSOR_UNITS[device_class]:
                found.append(f"{topic}: unit {unit!r} is not one of {device_class}'s")
        if body.get("state_class", "measurement") not in STATE_CLASSES:
            found.append(f"{topic}: state class {body['state_class']!r}")
    classes = {"binary_sensor": BINARY_SENSOR_CLASSES, "switch": SWITCH_CLASSES}.get(component)
    if classes is not None and device_class is not None and device_class not in classes:
        found.append(f"{topic}: {component} device class {device_class!r}")
    if body.get("qos", 0) not in (0, 1, 2):
        found.append(f"{topic}: qos {body['qos']!r}")
    expire = body.get("expire_after")
    if expire is not None and not (isinstance(expire, int) and expire > 0):
        found.append(f"{topic}: expire_after {expire!r}")
    for key, value in body.items():
        if key.endswith("template"):
            JINJA.parse(value)  # raises TemplateSyntaxError
    return found


# -- the device ------------------------------------------------------------------------

DEVICE = "ha-01"
SCENARIO = """
[device]
id = "{device}"
[storage]
state_dir = "{state}"
commit_window_ms = 0
[uplink]
broker = "{broker}"
backoff_min = 0.1
backoff_max = 0.5
{commands}
[homeassistant]
enabled = true
switches = "{switches}"

[[sensors]]
id = "probe"
type = "i2c.tmp102"
interval = 1.0
telemetry = true
filters = [{{type = "delta", delta = 0.01, heartbeat = 30.0}}]
{extra}
[[sensors]]
id = "door"
type = "gpio.input"
pin = 5
interval = 0.5

[[sensors]]
id = "fan"
type = "gpio.output"
pin = 19

[[detectors]]
id = "probe-hot"
sensor = "probe"
type = "threshold"
above = 30.0
hysteresis = 0.5

[simulation]
duration = 600.0

[simulation.signals.probe]
points = [[0, 22.0], [6, 22.0], [7, 35.0], [600, 35.0]]
"""
# Every other kind of sensor edgeline announces: several quantities, a single value with a
# configured unit, a vector left out (the MPU-6050's accel and gyro), a counter's total.
EVERY_KIND = """
[[sensors]]
id = "env"
type = "i2c.bme280"
interval = 1.0
telemetry = true
[[sensors]]
id = "air"
type = "i2c.sht3x"
interval = 1.0
telemetry = true
[[sensors]]
id = "adc"
type = "i2c.ads1115"
address = 0x49
channel = "all"
interval = 1.0
telemetry = true
[[sensors]]
id = "supply"
type = "i2c.ina219"
interval = 1.0
telemetry = true
[[sensors]]
id = "light"
type = "i2c.bh1750"
interval = 1.0
telemetry = true
[[sensors]]
id = "motor"
type = "i2c.mpu6050"
interval = 1.0
telemetry = true
[[sensors]]
id = "soil"
type = "i2c.registers"
address = 0x36
register = 0x0F
scale = 0.001
unit = "%"
interval = 1.0
telemetry = true
[[sensors]]
id = "button"
type = "gpio.edge"
pin = 6
[[sensors]]
id = "wind"
type = "gpio.counter"
pin = 13
scale = 2.4
unit = "km/h"
interval = 1.0
telemetry = true
"""


@dataclass
class Rig:
    runtime: Runtime
    clock: VirtualClock
    hardware: SimulatedHardware
    broker: Mosquitto

    def advance(self, seconds: int) -> None:
        """``seconds`` more polls of the probe, all of them acknowledged by the broker."""
        probe = self.runtime.sensors["probe"]
        start = probe.readings
        for second in range(1, seconds + 1):
            self.clock.advance(1.0)
            wait_until(lambda: probe.readings >= start + second)  # noqa: B023 - at once
        wait_until(lambda: self.runtime.outbox.stats().pending == 0)


def start_device(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    switches: str = "read-only",
    extra: str = "",
    commands: str = "",
    device: str = DEVICE,
) -> Rig:
    text = SCENARIO.format(device=device, state=tmp_path / "state", broker=broker.url,
                           switches=switches, extra=extra, commands=commands)  # fmt: skip
    scenario = parse_scenario(text, "ha.toml", overrides={})
    clock = VirtualClock()
    hardware = SimulatedHardware(scenario, clock)
    runtime = Runtime(scenario.config, hardware=hardware.hardware, clock=clock)
    runtime.start()
    return Rig(runtime, clock, hardware, broker)


def configs(messages: list[Received]) -> dict[str, Any]:
    """The newest config message on each discovery topic (None: an empty one, a removal)."""
    found: dict[str, Any] = {}
    for message in messages:
        if message.topic.startswith("homeassistant/"):
            found[message.topic] = json.loads(message.payload) if message.payload else None
    return found


def state(messages: list[Received], topic: str) -> list[bytes]:
    return [m.payload for m in messages if m.topic == topic]


@pytest.fixture
def every_kind(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[tuple[Rig, Subscriber]]:
    with Subscriber(mosquitto.url, "#") as everything:
        rig = start_device(tmp_path, mosquitto, switches="unsigned", extra=EVERY_KIND)
        try:
            yield rig, everything
        finally:
            rig.runtime.close(timeout=2)


def test_every_config_message_fits_home_assistants_schema(
    every_kind: tuple[Rig, Subscriber],
) -> None:
    rig, everything = every_kind
    homeassistant = rig.runtime.homeassistant
    assert homeassistant is not None
    expected = {entity.topic for entity in homeassistant.entities}
    announced = configs(everything.wait_for(lambda ms: expected <= set(configs(ms))))
    problems = [p for topic, body in announced.items() for p in schema_problems(topic, body)]
    assert problems == []
    unique_ids = [body["unique_id"] for body in announced.values()]
    assert len(unique_ids) == len(set(unique_ids))
    # One node per device, its device identifier: what a broker ACL gives each device.
    nodes = {re.sub(r"^homeassistant/\w+/([^/]+)/.*", r"\1", topic) for topic in announced}
    assert nodes == {f"edgeline__{DEVICE}"}
    assert {body["device"]["identifiers"][0] for body in announced.values()} == nodes
    by_name = {body["name"]: (topic.split("/")[1], body) for topic, body in announced.items()}
    # What a Home Assistant user sees: each quantity with its device class and unit, the
    # vectors left out, the inputs, the output as a switch, the detector as a problem.
    assert {name: (c, b.get("device_class"), b.get("unit_of_measurement"))
            for name, (c, b) in by_name.items()} == {
        "probe": ("sensor", "temperature", "°C"),
        "env temperature": ("sensor", "temperature", "°C"),
        "env pressure": ("sensor", "pressure", "hPa"),
        "env humidity": ("sensor", "humidity", "%"),
        "air temperature": ("sensor", "temperature", "°C"),
        "air humidity": ("sensor", "humidity", "%"),
        **{f"adc ain{n}": ("sensor", "voltage", "V") for n in range(4)},
        "supply voltage": ("sensor", "voltage", "V"),
        "supply shunt_voltage": ("sensor", "voltage", "V"),
        "supply current": ("sensor", "current", "A"),
        "supply power": ("sensor", "power", "W"),
        "light": ("sensor", "illuminance", "lx"),
        "motor temperature": ("sensor", "temperature", "°C"),
        "soil": ("sensor", None, "%"),
        "wind rate": ("sensor", "speed", "km/h"),
        "wind count": ("sensor", None, None),
        "door": ("binary_sensor", None, None),
        "button": ("binary_sensor", None, None),
        "fan": ("switch", "switch", None),
        "probe-hot": ("binary_sensor", "problem", None),
    }  # fmt: skip
    assert by_name["wind count"][1]["state_class"] == "total_increasing"
    assert by_name["probe"][1]["expire_after"] == 93  # 3 x (1 s poll + 30 s heartbeat)
    assert by_name["env pressure"][1]["expire_after"] == 60  # at least a minute
    assert all(m.retain for m in rig_retained(rig, "homeassistant/#", len(expected)))


def rig_retained(rig: Rig, topic: str, count: int) -> list[Received]:
    """What a subscriber that comes later gets: the retained messages."""
    with Subscriber(rig.broker.url, topic) as late:
        return late.wait_for_count(count)


def test_each_state_topic_renders_what_its_config_promises(
    every_kind: tuple[Rig, Subscriber],
) -> None:
    rig, everything = every_kind
    homeassistant = rig.runtime.homeassistant
    assert homeassistant is not None
    rig.advance(12)  # the probe crosses 30 degC at 7 s: its detector goes active
    messages = everything.messages
    announced = configs(messages)
    for body in announced.values():
        payloads = state(messages, body["state_topic"])
        assert payloads, f"nothing on {body['state_topic']} for {body['name']}"
        rendered = [render(body["value_template"], payload) for payload in payloads]
        if body["state_topic"].endswith("/ha/state"):  # inputs, outputs, detectors
            allowed = {body["payload_on"], body["payload_off"], "None"}
            assert set(rendered) <= allowed, (body["name"], rendered)
            continue
        numbers = [float(text) for text in rendered if text not in ("", "None")]
        assert numbers, f"{body['name']}: no number in {rendered}"
        assert all(math.isfinite(n) for n in numbers)
        unit = body.get("unit_of_measurement")
        low, high = (-math.inf, math.inf) if unit is None else PLAUSIBLE[unit]
        assert all(low <= n <= high for n in numbers), (body["name"], numbers)
    document = json.loads(state(messages, homeassistant.device.state_topic)[-1])
    by_name = {body["name"]: body for body in announced.values()}
    newest = state(messages, homeassistant.device.state_topic)[-1]
    shown = {name: render(by_name[name]["value_template"], newest)
             for name in ("door", "button", "fan", "probe-hot")}  # fmt: skip
    # The door's pin idles high (pulled up, active low): closed. The fan is off. The probe
    # passed its limit: its detector says there is a problem. The button never reported.
    assert shown == {"door": "OFF", "button": "None", "fan": "OFF", "probe-hot": "ON"}
    assert document["detectors"] == {"probe-hot": "ON"}


def test_availability_follows_the_birth_and_the_will(tmp_path: Path, mosquitto: Mosquitto) -> None:
    rig = start_device(tmp_path, mosquitto)
    try:
        homeassistant = rig.runtime.homeassistant
        assert homeassistant is not None
        body = homeassistant.entities[0].config
        (availability,) = body["availability"]
        status = rig_retained(rig, availability["topic"], 1)[-1]
        assert render(availability["value_template"], status.payload) == "online"
        assert availability["payload_available"] == "online"
    finally:
        rig.runtime.crash()  # a power cut: the broker publishes the last will
    with Subscriber(mosquitto.url, availability["topic"]) as watcher:
        last = watcher.wait_for(lambda ms: b"offline" in ms[-1].payload if ms else False)[-1]
    assert render(availability["value_template"], last.payload) == "offline"
    assert availability["payload_not_available"] == "offline"


def test_an_unsigned_switch_command_switches_the_output(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    rig = start_device(tmp_path, mosquitto, switches="unsigned")
    fan_pin = rig.hardware.pins.pin(19)
    homeassistant = rig.runtime.homeassistant
    assert homeassistant is not None
    switch = next(e.config for e in homeassistant.entities if e.component == "switch")
    try:
        with Subscriber(mosquitto.url, homeassistant.device.state_topic) as states:

            def shown() -> str:
                return render(switch["value_template"], states.messages[-1].payload)

            states.wait_for(lambda ms: bool(ms) and shown() == "OFF")
            publish(mosquitto.url, switch["command_topic"], switch["payload_on"])
            states.wait_for(lambda ms: shown() == "ON")
            assert fan_pin.state is True
            for wrong in ("on", "1", "ON ", "OFF\n", "{}"):  # HA sends exactly ON or OFF
                publish(mosquitto.url, switch["command_topic"], wrong)
            # (A retained command reaches a subscriber already there as a fresh one, retain
            # flag off: only one met on subscribing is stale; the switch tests cover that.)
            wait_until(lambda: homeassistant.ignored == 5)
            assert fan_pin.state is True and shown() == "ON"
            publish(mosquitto.url, switch["command_topic"], switch["payload_off"])
            states.wait_for(lambda ms: shown() == "OFF")
            assert fan_pin.state is False
    finally:
        publish(mosquitto.url, switch["command_topic"], b"", retain=True)
        rig.runtime.close(timeout=2)


def test_a_retained_switch_command_met_on_subscribing_is_not_acted_on(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """An ON left retained on the command topic would switch the output at every reconnect:
    it is dropped. A bad payload sent after it (the broker keeps the order) proves it came."""
    topic = f"edgeline/{DEVICE}/ha/set/fan"
    publish(mosquitto.url, topic, "ON", retain=True)
    try:
        rig = start_device(tmp_path, mosquitto, switches="unsigned")
        homeassistant = rig.runtime.homeassistant
        assert homeassistant is not None
        try:
            switch = next(e.config for e in homeassistant.entities if e.component == "switch")
            assert switch["command_topic"] == topic
            wait_until(lambda: rig.runtime.uplink.online)
            publish(mosquitto.url, topic, "on")  # not ON: ignored, and counted
            wait_until(lambda: homeassistant.ignored == 1)
            assert rig.hardware.pins.pin(19).state is False
        finally:
            rig.runtime.close(timeout=2)
    finally:
        publish(mosquitto.url, topic, b"", retain=True)


def test_the_bridge_sends_switch_commands_signed(tmp_path: Path, mosquitto: Mosquitto) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keys / f"{DEVICE}.key"
    key.write_text(KEY_HEX + "\n")
    key.chmod(0o600)
    commands = f'[commands]\nenabled = true\nkey_file = "{key}"'
    rig = start_device(tmp_path, mosquitto, switches="bridge", commands=commands)
    fan_pin = rig.hardware.pins.pin(19)
    homeassistant = rig.runtime.homeassistant
    assert homeassistant is not None
    switch = next(e.config for e in homeassistant.entities if e.component == "switch")
    try:
        login = UplinkConfig(broker=mosquitto.url)
        with (
            SwitchBridge(login, keys, wall=rig.clock.wall) as bridge,  # the device's time
            Subscriber(mosquitto.url, homeassistant.device.state_topic) as states,
        ):

            def shown() -> str:
                return render(switch["value_template"], states.messages[-1].payload)

            states.wait_for(lambda ms: bool(ms) and shown() == "OFF")
            publish(mosquitto.url, switch["command_topic"], switch["payload_on"])
            states.wait_for(lambda ms: shown() == "ON")
            assert fan_pin.state is True
            assert bridge.wait(lambda s: s.answered == 1, 10)
            # A device whose key the bridge lacks is not switched; garbage is ignored.
            publish(mosquitto.url, "edgeline/other-01/ha/set/fan", "ON")
            publish(mosquitto.url, switch["command_topic"], "toggle")
            assert bridge.wait(lambda s: s.no_key == {"other-01"} and s.ignored == 1, 10)
            publish(mosquitto.url, switch["command_topic"], switch["payload_off"])
            states.wait_for(lambda ms: shown() == "OFF")
            assert fan_pin.state is False and bridge.stats.sent == 2
        # The device does not take a plain command itself: it is not subscribed.
        publish(mosquitto.url, switch["command_topic"], "ON")
        assert homeassistant.ignored == 0 and fan_pin.state is False
        reply = send_command(mosquitto.url, DEVICE, bytes.fromhex(KEY_HEX), "output",
                             {"output": "pump", "on": True}, wall=rig.clock.wall)  # fmt: skip
        assert reply["ok"] is False and "output must name an output (fan)" in reply["error"]
        reply = send_command(mosquitto.url, DEVICE, bytes.fromhex(KEY_HEX), "output",
                             {"output": "fan", "on": "yes"}, wall=rig.clock.wall)  # fmt: skip
        assert reply["ok"] is False and "on must be true or false" in reply["error"]
    finally:
        rig.runtime.close(timeout=2)


def test_a_sensor_removed_from_the_config_is_removed_from_home_assistant(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    first = start_device(tmp_path, mosquitto)
    assert first.runtime.homeassistant is not None
    before = {e.topic for e in first.runtime.homeassistant.entities}
    rig_retained(first, "homeassistant/#", len(before))
    first.runtime.close(timeout=2)
    record = tmp_path / "state" / RECORD
    assert set(json.loads(record.read_text())["topics"]) == before
    # The same device without its door and its detector: their entities go.
    text = (SCENARIO.replace('[[sensors]]\nid = "door"\ntype = "gpio.input"\npin = 5\n'
                             "interval = 0.5\n", "")
            .split("[[detectors]]")[0] + "[simulation]\nduration = 60.0\n")  # fmt: skip
    with Subscriber(mosquitto.url, "homeassistant/#") as watcher:
        scenario = parse_scenario(
            text.format(device=DEVICE, state=tmp_path / "state", broker=mosquitto.url,
                        switches="read-only", extra="", commands=""),
            "ha.toml", overrides={},
        )  # fmt: skip
        clock = VirtualClock()
        runtime = Runtime(scenario.config, clock=clock,
                          hardware=SimulatedHardware(scenario, clock).hardware)  # fmt: skip
        runtime.start()
        assert runtime.homeassistant is not None
        after = {e.topic for e in runtime.homeassistant.entities}
        gone = before - after
        assert len(gone) == 2
        watcher.wait_for(lambda ms: gone <= {m.topic for m in ms if m.payload == b""})
        runtime.close(timeout=2)
    assert set(json.loads(record.read_text())["topics"]) == after  # the removals are done
    retained = configs(rig_retained(first, "homeassistant/#", len(after)))
    assert set(retained) == after


# -- config validation, names, templates, commands (no broker) ---------------------------

BASE = """
[device]
id = "ha-01"
[uplink]
broker = "{broker}"
{login}
{commands}
[homeassistant]
enabled = true
switches = "{switches}"
[[sensors]]
id = "fan"
type = "gpio.output"
pin = 19
"""


def load(broker: str = "mqtt://localhost", switches: str = "read-only", login: str = "",
         commands: str = "") -> Any:  # fmt: skip
    return parse(BASE.format(broker=broker, switches=switches, login=login, commands=commands))


@given(
    scheme=st.sampled_from(["mqtt", "mqtts"]),
    host=st.sampled_from(["localhost", "127.0.0.1", "127.8.9.1", "[::1]", "broker.lan",
                          "10.0.0.5", "192.168.1.2", "mqtt.example.net", "[fe80::1]"]),
    username=st.booleans(),
)  # fmt: skip
def test_unsigned_switches_need_a_broker_on_this_host_or_tls_with_a_login(
    scheme: str, host: str, username: bool
) -> None:
    login = 'username = "ha-01"' if username else ""
    local = host in ("localhost", "127.0.0.1", "127.8.9.1", "[::1]")
    try:
        config = load(f"{scheme}://{host}", "unsigned", login)
    except ConfigError as exc:
        assert not local and not (scheme == "mqtts" and username)
        (problem,) = exc.problems
        assert problem.startswith("<config>: homeassistant.switches: expected 'read-only' or")
        assert "anyone who can publish there could switch the outputs" in problem
    else:
        assert local or (scheme == "mqtts" and username)
        assert config.homeassistant.switches == "unsigned"


def test_bridged_switches_need_commands() -> None:
    with pytest.raises(ConfigError) as refused:
        load(switches="bridge")
    assert refused.value.problems == [
        "<config>: homeassistant.switches: expected [commands] enabled for 'bridge' (it sends "
        "signed `output` commands), found commands disabled; enable them, or set switches = "
        "'read-only'"
    ]
    config = load(switches="bridge", commands="[commands]\nenabled = true\nallow_unsigned = true")
    assert config.homeassistant.switches == "bridge"
    assert parse('[device]\nid = "d"\n[uplink]\nbroker = "mqtt://b"').homeassistant.enabled is False


VALUES = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.sampled_from(["read-only", "bridge", "unsigned", "homeassistant", "a/b", "$SYS", "a/+"]),
    st.lists(st.integers(), max_size=2),
)  # fmt: skip


@given(st.dictionaries(
    st.sampled_from(["enabled", "discovery_prefix", "name", "switches", "enable", "prefix"]),
    VALUES, max_size=4,
))  # fmt: skip
def test_the_homeassistant_section_is_validated_with_its_key_paths(table: dict[str, Any]) -> None:
    data = {"device": {"id": "d"}, "uplink": {"broker": "mqtt://localhost"},
            "commands": {"enabled": True, "allow_unsigned": True},
            "homeassistant": table}  # fmt: skip
    from edge.config.device import validate

    try:
        config = validate(data, "ha.toml")
    except ConfigError as exc:
        assert exc.problems
        assert all(p.startswith("ha.toml: homeassistant.") for p in exc.problems), exc.problems
    else:
        settings = config.homeassistant
        assert settings.enabled is table.get("enabled", False)
        assert settings.switches == table.get("switches", "read-only")
        prefix = settings.discovery_prefix
        assert prefix and not prefix.startswith("$") and "+" not in prefix and "//" not in prefix


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4))
def test_ids_become_discovery_ids_without_two_ever_meeting(parts: list[str]) -> None:
    text = level(*parts)
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", text)
    # Decoded back, the same parts: so two different tuples never give one id.
    decoded = [
        re.sub(r"(?:_[0-9a-f]{2})+", lambda m: bytes.fromhex(m[0].replace("_", "")).decode(
            "utf-8", "surrogatepass"), part)
        for part in text.split("__")
    ]  # fmt: skip
    assert decoded == parts


@given(st.text(max_size=30).filter(lambda t: "\x00" not in t), st.sampled_from(["ON", "OFF"]))
def test_a_template_reads_any_id_back(key: str, value: str) -> None:
    template = f"{{{{ value_json['states'][{literal(key)}] }}}}"
    document = json.dumps({"states": {key: value, key + "x": "other"}}).encode()
    assert render(template, document) == value


@pytest.mark.fuzz
@given(st.binary(max_size=20), st.text(max_size=40))
def test_only_on_or_off_on_a_known_output_switches(payload: bytes, topic: str) -> None:
    posted: list[Any] = []
    config = load(switches="unsigned")
    with GpioOutput(19, pin_factory=MockFactory()) as fan:
        homeassistant = HomeAssistant(config, {}, {"fan": fan}, post=posted.append,
                                      clock=VirtualClock(), version="0")  # fmt: skip
        for where in (topic, "edgeline/ha-01/ha/set/fan", "edgeline/ha-01/ha/set/pump"):
            homeassistant.received(where, payload)
        switching = payload in (b"ON", b"OFF")
        assert len(posted) == switching * (1 + (topic == "edgeline/ha-01/ha/set/fan"))
        for switch in posted:
            switch()
        assert fan.state is (payload == b"ON")
    assert switch_command(payload) == {b"ON": True, b"OFF": False}.get(payload)


def test_switch_topics_name_the_device_and_the_output() -> None:
    assert switch_target("edgeline", "edgeline/pi-01/ha/set/pump.valve") == ("pi-01", "pump.valve")
    assert switch_target("site/a", "site/a/pi-01/ha/set/fan") == ("pi-01", "fan")
    for topic in ("edgeline/pi-01/ha/set", "edgeline/pi-01/cmd/output", "other/pi-01/ha/set/f",
                  "edgeline/pi-01/ha/set/fan/x", "edgeline//ha/set/fan"):  # fmt: skip
        assert switch_target("edgeline", topic) is None


def event(seq: int, sensor: str, kind: str, severity: str, value: Any, **fields: Any) -> Event:
    body = {"seq": seq, "sensor": sensor, "kind": kind, "severity": severity, "value": value,
            **fields}  # fmt: skip
    priority = {"critical": 0, "warning": 1, "info": 2}[severity]
    return Event(seq, priority, sensor, kind, json.dumps(body))


def test_the_state_document_follows_commit_order() -> None:
    document = StateDocument(["door", "fan"], ["pump.valve"], ["hot", "cold"])
    assert json.loads(document.payload("t")) == {
        "ts": "t",
        "states": {"door": None, "fan": None, "pump.valve": None},
        "detectors": {"hot": "OFF", "cold": "OFF"},
    }
    # An alarm that fired and cleared: in a backlog drain the clear (info) would reach the
    # broker after... or before the active (warning); the document goes by commit order.
    changed = document.apply([
        event(1, "t", "threshold", "warning", 31.0, detector="hot", state="active"),
        event(2, "t", "telemetry", "info", 31.0),
        event(3, "t", "threshold", "info", 29.0, detector="hot", state="clear"),
        event(4, "pump", "state", "info", True, output="valve", acked=True),
        event(5, "door", "state", "info", True),
        event(6, "t", "threshold", "warning", 1.0, detector="elsewhere", state="active"),
        event(7, "pump", "state", "info", True, output="other", acked=True),
        event(8, "fan", "health", "warning", None, state="degraded"),
    ])  # fmt: skip
    assert changed
    body = json.loads(document.payload("t"))
    assert body["states"] == {"door": "ON", "fan": None, "pump.valve": "ON"}
    assert body["detectors"] == {"hot": "OFF", "cold": "OFF"}
    assert not document.apply([event(9, "door", "state", "info", True)])


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('interval = 1.0', 60),
        ('interval = 30.0', 90),
        ('interval = 5.0\nfilters = [{type = "delta", delta = 0.2, heartbeat = 300.0}]', 915),
        ('interval = 5.0\nfilters = [{type = "median", window = 3}, {type = "throttle", '
         'interval = 60.0}]', 195),
        ('interval = 5.0\nfilters = [{type = "delta", delta = 0.2}]', None),
        ('interval = 5.0\nfilters = [{type = "debounce", samples = 3}]', None),
        ('interval = 5.0\nfilters = [{type = "clamp", max = 50.0, drop = true}]', None),
    ],
)  # fmt: skip
def test_expire_after_is_three_times_the_longest_gap_the_config_allows(
    table: str, expected: int | None
) -> None:
    config = parse(f'[device]\nid = "d"\n[uplink]\nbroker = "mqtt://b"\n[[sensors]]\nid = "t"\n'
                   f'type = "i2c.tmp102"\ntelemetry = true\n{table}\n')  # fmt: skip
    assert expire_after(config.sensors[0]) == expected


def test_nothing_of_home_assistant_loads_unless_enabled(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from edge.clock import VirtualClock\n"
        "from edge.config.device import parse\n"
        "from edge.runtime.runtime import Runtime\n"
        "from edge.sim.hardware import SimulatedHardware\n"
        "from edge.sim.scenario import parse_scenario\n"
        f'text = \'[device]\\nid = "d"\\n[storage]\\nstate_dir = "{tmp_path}"\\n'
        '[uplink]\\nbroker = "mqtt://127.0.0.1:9"\\n[[sensors]]\\nid = "t"\\n'
        'type = "i2c.tmp102"\\ninterval = 1.0\\n[simulation]\\nduration = 1.0\\n\'\n'
        "scenario = parse_scenario(text, 's.toml', overrides={})\n"
        "clock = VirtualClock()\n"
        "runtime = Runtime(scenario.config, clock=clock,"
        " hardware=SimulatedHardware(scenario, clock).hardware)\n"
        "runtime.close(timeout=1)\n"
        "print(sorted(m for m in sys.modules if 'homeassistant' in m))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    # The config reads the section (off); the discovery and its runtime side never load.
    assert done.stdout.strip() == "['edge.config.homeassistant']"


def test_units_a_reading_carries_are_the_units_announced(
    every_kind: tuple[Rig, Subscriber],
) -> None:
    """The telemetry events name each quantity's unit; the config promises Home
    Assistant's spelling of that same unit."""
    rig, everything = every_kind
    rig.advance(2)
    messages = everything.messages
    spelling = {"degC": "°C", "%RH": "%"}
    for body in configs(messages).values():
        if not body["state_topic"].endswith(tuple(f"/telemetry/{s}" for s in rig.runtime.sensors)):
            continue
        sent = json.loads(state(messages, body["state_topic"])[-1])
        quantity = body["name"].split(" ", 1)[1] if " " in body["name"] else None
        unit = sent["unit"] if quantity is None else sent["units"][quantity]
        assert spelling.get(unit, unit) == body.get("unit_of_measurement", unit or "") or (
            unit == "" and "unit_of_measurement" not in body
        ), (body["name"], unit, body.get("unit_of_measurement"))
