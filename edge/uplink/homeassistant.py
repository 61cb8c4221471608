"""Home Assistant's MQTT discovery: what a device announces, and the topics both sides use.

One retained config message per entity on
``<discovery>/<component>/edgeline__<device>/<kind>__<key>/config`` (the layout Home
Assistant documents, the device as its ``<node_id>``):

- each numeric quantity of a sensor with ``telemetry = true`` is a ``sensor``, read from the
  sensor's telemetry events (``{prefix}/{device}/events/telemetry/{sensor}``), which carry
  every reading that passed the filters, with the unit this config promises;
- each boolean input (``gpio.input``, ``gpio.edge``) and each detector is a
  ``binary_sensor``, each output (``gpio.output``, an MCU's outputs) a ``switch`` (or a
  ``binary_sensor`` when the config keeps them read-only), read from the device's retained
  state document ``{prefix}/{device}/ha/state``: events are history, not state (a state
  event is not retained, so Home Assistant restarted would not know a door is open, and
  during a backlog drain a warning goes before an older info event, so an alarm's
  ``clear`` could arrive before the ``active`` it ended);
- availability is the device's retained status (birth, and the will ``offline``).

A switch's ``command_topic`` is ``{prefix}/{device}/ha/set/{output}``: Home Assistant sends
plain ``ON`` or ``OFF`` there, and either ``edge homeassistant bridge`` turns them into signed
``output`` commands or the device takes them itself (``switches = "unsigned"``).

Everything here is pure: the runtime publishes (:mod:`edge.runtime.homeassistant`), the
bridge listens (:mod:`edge.cloud.homeassistant`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from edge.config.device import Config, SensorConfig
from edge.config.homeassistant import Switches
from edge.config.sensing import action_outputs
from sensors import SENSOR_TYPES

Component = Literal["sensor", "binary_sensor", "switch"]

ON, OFF = "ON", "OFF"  # Home Assistant's default payload_on / payload_off, both ways
MAX_SWITCH_PAYLOAD = 16  # bytes: a switch command is ON or OFF, anything longer is dropped
BOOLEAN_TYPES = frozenset({"gpio.input", "gpio.edge"})  # read as true / false
MIN_EXPIRE = 60  # seconds: expire_after never shorter, whatever the sensor's interval

# edgeline's unit -> (Home Assistant's spelling, device class). A device class only where
# the unit names one physical quantity: "%" may be moisture or a battery, "ppm" any gas.
UNITS: dict[str, tuple[str, str | None]] = {
    **dict.fromkeys(("degC", "°C"), ("°C", "temperature")),
    **dict.fromkeys(("degF", "°F"), ("°F", "temperature")),
    "K": ("K", "temperature"),
    **{unit: (unit, "pressure") for unit in ("hPa", "Pa", "kPa", "bar", "mbar", "psi")},
    "%RH": ("%", "humidity"),
    **{unit: (unit, "voltage") for unit in ("V", "mV", "kV")},
    **{unit: (unit, "current") for unit in ("A", "mA")},
    **{unit: (unit, "power") for unit in ("W", "mW", "kW")},
    "lx": ("lx", "illuminance"),
    **{unit: (unit, "frequency") for unit in ("Hz", "kHz")},
    **{unit: (unit, "speed") for unit in ("km/h", "m/s", "mph")},
    **{unit: (unit, "volume_flow_rate") for unit in ("L/min", "L/h", "m³/h")},
}
NO_UNIT = ("", "-")

# Filters that pass every reading on (or none, in a warm-up): the gap between telemetry
# events stays the poll interval. Those that hold values back add their longest wait.
_PASSING = frozenset({"calibrate", "median", "moving_average"})
_HOLDING = {"delta": "heartbeat", "heartbeat": "every", "throttle": "interval"}


@dataclass(frozen=True)
class Device:
    """What every config message says about the device, and where its topics are."""

    id: str
    name: str
    prefix: str  # [uplink] topic_prefix
    discovery: str  # [homeassistant] discovery_prefix
    version: str
    switches: Switches = "read-only"

    @property
    def node(self) -> str:
        """The device in discovery topics and as Home Assistant's device identifier."""
        return level("edgeline", self.id)

    @property
    def status_topic(self) -> str:
        return f"{self.prefix}/{self.id}/status"

    @property
    def state_topic(self) -> str:
        return state_topic(self.prefix, self.id)


@dataclass(frozen=True)
class Series:
    """One numeric quantity Home Assistant shows: a sensor's single value (``quantity``
    None) or one of its named quantities, in ``unit`` (edgeline's spelling)."""

    sensor: str
    quantity: str | None
    unit: str
    expire_after: int | None = None
    total: bool = False  # a running count (a counter's ``count``), not a measurement


@dataclass(frozen=True)
class Entity:
    component: Component
    unique_id: str
    topic: str  # its discovery topic
    config: Mapping[str, Any]  # the discovery payload


def state_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/ha/state"


def switch_topic(prefix: str, device: str, output: str) -> str:
    return f"{prefix}/{device}/ha/set/{output}"


def switch_target(prefix: str, topic: str) -> tuple[str, str] | None:
    """(device, output) of a switch command topic under ``prefix``; None for another."""
    head = f"{prefix}/"
    if not topic.startswith(head):
        return None
    levels = topic[len(head) :].split("/")
    if len(levels) != 4 or levels[1:3] != ["ha", "set"] or not levels[0] or not levels[3]:
        return None
    return levels[0], levels[3]


def switch_command(payload: bytes | bytearray) -> bool | None:
    """True for ``ON``, False for ``OFF``, None for anything else (ignored)."""
    return {ON.encode(): True, OFF.encode(): False}.get(bytes(payload))


def level(*parts: str) -> str:
    """``parts`` as one string of ``[A-Za-z0-9_-]`` (what Home Assistant allows in a
    discovery topic's ids): letters, digits and '-' kept, any other character written as
    ``_`` and its UTF-8 bytes in hex, parts joined by ``__``. An escape always puts a hex
    digit after its ``_``, so ``__`` only ever separates parts: two different tuples of
    ids never give the same string."""
    return "__".join(
        "".join(
            char
            if char.isascii() and (char.isalnum() or char == "-")
            else "".join(f"_{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
            for char in part
        )
        for part in parts
    )


def literal(text: str) -> str:
    """``text`` as a Jinja string literal: Python's ASCII repr, whose escapes (``\\'``,
    ``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN``) Jinja reads back to the same text."""
    return ascii(text)


def expire_after(sensor: SensorConfig) -> int | None:
    """Seconds after which Home Assistant should call a reading stale: three times the
    longest gap the config allows between two telemetry events (the poll interval, plus the
    heartbeat of a filter that holds unchanged values back), at least a minute. None when
    nothing bounds the gap: a pushed sensor, or a filter that may hold values back for good
    (``debounce``, ``clamp`` with ``drop``, ``delta`` without a heartbeat)."""
    if sensor.interval is None:
        return None
    gap = sensor.interval
    for chain in sensor.filters:
        if chain.type in _PASSING or (chain.type == "clamp" and not chain.params.drop):
            continue
        wait = getattr(chain.params, _HOLDING.get(chain.type, ""), None)
        if wait is None:
            return None
        gap += float(wait)
    return max(MIN_EXPIRE, math.ceil(3 * gap))


def series(config: Config, units: Mapping[str, Mapping[str | None, str]]) -> list[Series]:
    """The numeric quantities of the sensors that send telemetry. ``units`` gives each
    sensor's quantities and units as its telemetry events name them (quantity None: a
    single value), as the runtime's built sensors know them; vectors are left out."""
    found = []
    for sensor in config.sensors:
        if not sensor.telemetry or sensor.type in BOOLEAN_TYPES or sensor.type == "gpio.output":
            continue
        vectors = SENSOR_TYPES[sensor.type].vectors_of(sensor.params)
        expire = expire_after(sensor)
        for quantity, unit in units.get(sensor.id, {}).items():
            if quantity in vectors:
                continue
            total = sensor.type == "gpio.counter" and quantity == "count"
            found.append(Series(sensor.id, quantity, unit, expire, total))
    return found


def announcements(device: Device, config: Config, readings: Sequence[Series]) -> list[Entity]:
    """Every entity of ``config``: ``readings`` (from :func:`series`), boolean inputs,
    outputs and detectors, each with its discovery topic and config message."""
    entities = [_reading(device, item) for item in readings]
    entities += [
        _binary(device, "input", sensor.id, "states", None)
        for sensor in config.sensors
        if sensor.type in BOOLEAN_TYPES
    ]
    for output in action_outputs({s.id: s for s in config.sensors}):
        if device.switches == "read-only":
            entities.append(_binary(device, "output", output, "states", "power"))
        else:
            entities.append(_switch(device, output))
    entities += [
        _binary(device, "detector", detector.id, "detectors", "problem")
        for detector in config.detectors
    ]
    return entities


def _common(device: Device, unique_id: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": unique_id,
        "availability": [
            {
                "topic": device.status_topic,
                "value_template": "{{ value_json['state'] }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "device": {
            "identifiers": [device.node],
            "name": device.name,
            "manufacturer": "edgeline",
            "model": "edgeline device",
            "sw_version": device.version,
        },
        "origin": {"name": "edgeline", "sw_version": device.version},
        "qos": 1,
    }


def _entity(device: Device, component: Component, config: dict[str, Any], *key: str) -> Entity:
    """The entity on ``<discovery>/<component>/<node_id>/<object_id>/config``: the node is
    the device (so a broker ACL can give each device its own discovery topics), the object
    the entity's kind and key within it."""
    topic = f"{device.discovery}/{component}/{device.node}/{level(*key)}/config"
    return Entity(component, config["unique_id"], topic, config)


def _reading(device: Device, item: Series) -> Entity:
    key = (item.sensor,) if item.quantity is None else (item.sensor, item.quantity)
    unique_id = level("edgeline", device.id, "reading", *key)
    name = " ".join(key)
    config = _common(device, unique_id, name)
    config["state_topic"] = f"{device.prefix}/{device.id}/events/telemetry/{item.sensor}"
    if item.quantity is None:
        config["value_template"] = "{{ value_json['value'] }}"
    else:  # a quantity a filter dropped is absent: '' leaves the state as it was
        quantity = literal(item.quantity)
        config["value_template"] = f"{{{{ value_json['value'].get({quantity}, '') }}}}"
    unit, device_class = UNITS.get(item.unit, (item.unit, None))
    if unit not in NO_UNIT:
        config["unit_of_measurement"] = unit
    if device_class is not None:
        config["device_class"] = device_class
    config["state_class"] = "total_increasing" if item.total else "measurement"
    if item.expire_after is not None:
        config["expire_after"] = item.expire_after
    return _entity(device, "sensor", config, "reading", *key)


def _binary(device: Device, kind: str, key: str, table: str, device_class: str | None) -> Entity:
    unique_id = level("edgeline", device.id, kind, key)
    config = _common(device, unique_id, key)
    config["state_topic"] = device.state_topic
    config["value_template"] = f"{{{{ value_json[{literal(table)}][{literal(key)}] }}}}"
    config["payload_on"], config["payload_off"] = ON, OFF
    if device_class is not None:
        config["device_class"] = device_class
    return _entity(device, "binary_sensor", config, kind, key)


def _switch(device: Device, output: str) -> Entity:
    unique_id = level("edgeline", device.id, "output", output)
    config = _common(device, unique_id, output)
    config["state_topic"] = device.state_topic
    config["value_template"] = f"{{{{ value_json['states'][{literal(output)}] }}}}"
    config["command_topic"] = switch_topic(device.prefix, device.id, output)
    config["payload_on"], config["payload_off"] = ON, OFF
    config["device_class"] = "switch"
    return _entity(device, "switch", config, "output", output)
