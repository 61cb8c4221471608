"""The sensing pipeline's config: sensors and their filters, detectors, local actions.

Each entry is validated against the registries of the packages below (``sensors`` for
sensor and filter types, ``models`` for detector types), so a new type needs no change here.
"""

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from edge.config.validation import ID, Problems, build, describe, join, topic_level
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES
from sensors.filters import FILTER_TYPES


@dataclass(frozen=True)
class SensorCommon:
    """Keys every sensor has; the rest of its table belongs to its type."""

    id: str = field(
        metadata={"check": topic_level, "expects": ID, "doc": "sensor id; an MQTT topic level"}
    )
    type: str = field(metadata={"doc": "sensor type (see Sensor types)"})
    interval: float | None = field(
        default=None,
        metadata={"min": 0.001, "max": 86_400, "doc": "seconds between polls (polled types)"},
    )
    telemetry: bool = field(
        default=False, metadata={"doc": "send every reading upstream as a telemetry event"}
    )
    stuck_after: int | None = field(
        default=None,
        metadata={"min": 2, "max": 1_000_000, "doc": "identical readings that mean stuck"},
    )
    retry_max: float = field(
        default=60.0,
        metadata={
            "min": 0.1,
            "max": 86_400,
            "doc": "longest wait between retries of a failing sensor",
        },
    )


@dataclass(frozen=True)
class FilterConfig:
    type: str
    params: Any  # the filter type's frozen params dataclass


@dataclass(frozen=True)
class SensorConfig:
    id: str
    type: str
    interval: float | None
    telemetry: bool
    params: Any  # the sensor type's frozen params dataclass
    filters: tuple[FilterConfig, ...] = ()
    stuck_after: int | None = None
    retry_max: float = 60.0


@dataclass(frozen=True)
class DetectorCommon:
    sensor: str = field(metadata={"doc": "id of the sensor it watches"})
    type: str = field(metadata={"doc": "detector type (see Detectors)"})
    id: str | None = field(
        default=None,
        metadata={"check": topic_level, "expects": ID, "doc": "default: <sensor>-<type>"},
    )
    quantity: str | None = field(
        default=None, metadata={"doc": "which quantity of a multi-quantity sensor it watches"}
    )
    inputs: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "other sensors' readings (`sensor` or `sensor.quantity`) joined to each "
            "reading of this one as a vector, for a multivariate model"
        },
    )


# (sensor id, quantity or None): one series joined to a detector's own readings.
Input = tuple[str, str | None]


@dataclass(frozen=True)
class DetectorConfig:
    id: str
    sensor: str
    type: str
    params: Any  # the detector type's frozen params dataclass
    quantity: str | None = None
    inputs: tuple[Input, ...] = ()


@dataclass(frozen=True)
class ActionConfig:
    """A local action: drive a gpio.output when a detector fires, without the cloud."""

    when: str = field(metadata={"doc": "id of the detector that triggers it"})
    output: str = field(
        metadata={"doc": "id of a gpio.output sensor, or `<serial.mcu id>.<output>`"}
    )
    mode: Literal["follow", "pulse"] = field(
        default="follow",
        metadata={"doc": "follow: on while the alarm is active; pulse: on for `seconds`"},
    )
    seconds: float = field(
        default=1.0, metadata={"min": 0.001, "max": 86_400, "doc": "pulse length"}
    )


def _array(value: Any, path: str, problems: Problems) -> list[Any]:
    if not isinstance(value, list):
        problems.add(path, f"expected an array of tables ([[{path}]]), found {describe(value)}")
        return []
    return value


def parse_sensors(value: Any, problems: Problems, declared: set[str]) -> dict[str, SensorConfig]:
    sensors: dict[str, SensorConfig] = {}
    taken: dict[tuple[int, int], SensorConfig] = {}  # (bus, address) -> first sensor there
    pins: dict[int, tuple[str, str]] = {}  # BCM pin -> (key path, id) of the sensor on it
    for i, table in enumerate(_array(value, "sensors", problems)):
        path = join("sensors", i)
        if not isinstance(table, dict):
            problems.add(path, f"expected a table, found {describe(table)}")
            continue
        common_keys = {"id", "type", "interval", "telemetry", "stuck_after", "retry_max"}
        common = build(
            SensorCommon, {k: v for k, v in table.items() if k in common_keys}, path, problems
        )
        filters = _filters(table.get("filters", []), join(path, "filters"), problems)
        if common is None:
            if isinstance(table.get("id"), str):  # its detectors get no second problem
                declared.add(table["id"])
            continue
        if common.id in declared:
            problems.add(join(path, "id"), f"expected a unique id, found '{common.id}' again")
            continue
        declared.add(common.id)
        kind = SENSOR_TYPES.get(common.type)
        if kind is None:
            unknown_type(problems, join(path, "type"), common.type, SENSOR_TYPES)
            continue
        if kind.polled and common.interval is None:
            problems.add(join(path, "interval"), "missing; expected seconds between polls")
        if not kind.polled and common.interval is not None:
            problems.add(
                join(path, "interval"), f"not used by {kind.name} (it is interrupt-driven)"
            )
        params = build(kind.params, table, path, problems, skip={*common_keys, "filters"})
        if params is not None and kind.check is not None:
            wrong = kind.check(params, common.interval)
            if wrong:
                problems.add(join(path, "interval"), wrong)
                continue
        if params is not None and hasattr(params, "address") and hasattr(params, "bus"):
            place = (params.bus, params.address)
            first = taken.setdefault(
                place, SensorConfig(common.id, common.type, None, False, params)
            )
            # Fields of one chip may be described as several i2c.registers sensors.
            if first.id != common.id and not common.type == first.type == "i2c.registers":
                problems.add(
                    join(path, "address"),
                    f"expected a free address on bus {params.bus}, found 0x{params.address:02X}"
                    f" taken by sensor '{first.id}' ({first.type})",
                )
                continue
        pin = getattr(params, "pin", None)
        if isinstance(pin, int):
            # gpiozero would refuse the second device on a pin (GPIOPinInUse) when the
            # runtime builds it; say so here, naming both sensors.
            where, first_id = pins.setdefault(pin, (join(path, "pin"), common.id))
            if first_id != common.id:
                problems.add(
                    join(path, "pin"),
                    f"expected a free GPIO pin, found {pin} taken by sensor '{first_id}' ({where})",
                )
                continue
        if params is not None:
            sensors[common.id] = SensorConfig(
                common.id,
                common.type,
                common.interval,
                common.telemetry,
                params,
                filters,
                common.stuck_after,
                common.retry_max,
            )
    return sensors


def _filters(value: Any, path: str, problems: Problems) -> tuple[FilterConfig, ...]:
    """A sensor's ``filters = [{type = "delta", delta = 0.5}, ...]``, applied in order."""
    if not isinstance(value, list):
        problems.add(path, f"expected an array of tables, found {describe(value)}")
        return ()
    chain: list[FilterConfig] = []
    for i, table in enumerate(value):
        where = join(path, i)
        if not isinstance(table, dict) or not isinstance(table.get("type"), str):
            problems.add(where, f"expected a table with a type, found {describe(table)}")
            continue
        kind = FILTER_TYPES.get(table["type"])
        if kind is None:
            unknown_type(problems, join(where, "type"), table["type"], FILTER_TYPES)
            continue
        params = build(kind.params, table, where, problems, skip={"type"})
        if params is not None:
            chain.append(FilterConfig(kind.name, params))
    return tuple(chain)


def parse_detectors(
    value: Any, sensors: Mapping[str, SensorConfig], declared: set[str], problems: Problems
) -> list[DetectorConfig]:
    detectors: list[DetectorConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(_array(value, "detectors", problems)):
        path = join("detectors", i)
        if not isinstance(table, dict):
            problems.add(path, f"expected a table, found {describe(table)}")
            continue
        common_keys = {"id", "sensor", "type", "quantity", "inputs"}
        common = build(
            DetectorCommon, {k: v for k, v in table.items() if k in common_keys}, path, problems
        )
        if common is None:
            continue
        if common.sensor not in declared:  # a declared but invalid sensor is reported already
            known = dict.fromkeys(sorted(declared))
            unknown_type(problems, join(path, "sensor"), common.sensor, known, what="a sensor id")
        kind = DETECTOR_TYPES.get(common.type)
        if kind is None:
            unknown_type(problems, join(path, "type"), common.type, DETECTOR_TYPES)
            continue
        params = build(kind.params, table, path, problems, skip=common_keys)
        ident = common.id or f"{common.sensor}-{common.type}"
        if ident in seen:
            problems.add(join(path, "id"), f"expected a unique id, found '{ident}' again")
            continue
        seen.add(ident)
        sensor = sensors.get(common.sensor)
        if sensor is not None:
            _check_quantity(sensor, common.quantity, join(path, "quantity"), problems)
        inputs = _inputs(common, params, sensors, declared, join(path, "inputs"), problems)
        if params is not None and sensor is not None and inputs is not None:
            detectors.append(
                DetectorConfig(ident, common.sensor, common.type, params, common.quantity, inputs)
            )
    return detectors


def _inputs(
    common: DetectorCommon,
    params: Any,
    sensors: Mapping[str, SensorConfig],
    declared: set[str],
    path: str,
    problems: Problems,
) -> tuple[Input, ...] | None:
    """The detector's joined series, checked: scalar quantities of other declared sensors."""
    if not common.inputs:
        return ()
    found: list[Input] = []
    ok = True
    for i, name in enumerate(common.inputs):
        where = join(path, i)
        sensor_id, dot, quantity = name.partition(".")
        joined: Input = (sensor_id, quantity if dot else None)
        if sensor_id not in declared:
            unknown_type(problems, where, sensor_id, dict.fromkeys(declared), what="a sensor id")
            ok = False
            continue
        if joined == (common.sensor, common.quantity) or joined in found:
            problems.add(where, f"expected a series not already in the vector, found '{name}'")
            ok = False
            continue
        sensor = sensors.get(sensor_id)
        if sensor is not None:
            before = len(problems.items)
            _check_quantity(sensor, joined[1], where, problems)
            ok = ok and len(problems.items) == before
        found.append(joined)
    width = getattr(params, "width", None)
    if params is not None and width != 1 + len(found):
        takes = f"width {width}" if isinstance(width, int) else "no vectors"
        problems.add(
            path,
            f"expected a detector taking vectors of width {1 + len(found)} (this reading and "
            f"{len(found)} joined), found type '{common.type}' with {takes}",
        )
        ok = False
    return tuple(found) if ok else None


def _check_quantity(
    sensor: SensorConfig, quantity: str | None, path: str, problems: Problems
) -> None:
    """A detector on a multi-quantity sensor names one of its quantities; others name none."""
    kind = SENSOR_TYPES[sensor.type]
    units = kind.units_of(sensor.params)
    if not units and kind.quantities_open(sensor.params):
        if quantity is None:  # the hardware names them: any name, but one must be given
            problems.add(path, f"missing; expected the name of a channel of sensor '{sensor.id}'")
    elif units and quantity not in units:
        found = "nothing" if quantity is None else f"'{quantity}'"
        choices = ", ".join(units)
        problems.add(path, f"expected one of {choices} (sensor '{sensor.id}'), found {found}")
    elif not units and quantity is not None:
        problems.add(path, f"not used: sensor '{sensor.id}' has a single value")


def parse_actions(
    value: Any,
    sensors: Mapping[str, SensorConfig],
    detectors: list[DetectorConfig],
    problems: Problems,
) -> tuple[ActionConfig, ...]:
    actions = []
    detector_ids = {d.id: d for d in detectors}
    outputs = action_outputs(sensors)
    for i, table in enumerate(_array(value, "actions", problems)):
        path = join("actions", i)
        action = build(ActionConfig, table, path, problems)
        if action is None:
            continue
        if action.when not in detector_ids:
            unknown_type(
                problems, join(path, "when"), action.when, detector_ids, what="a detector id"
            )
        if action.output not in outputs:
            unknown_type(
                problems,
                join(path, "output"),
                action.output,
                outputs,
                what="a gpio.output id or <serial.mcu id>.<output>",
            )
        actions.append(action)
    return tuple(actions)


def action_outputs(sensors: Mapping[str, SensorConfig]) -> dict[str, SensorConfig]:
    """What an action may switch: each gpio.output, and each output a serial.mcu sensor
    lists, as ``<sensor>.<output>``."""
    found: dict[str, SensorConfig] = {}
    for sensor in sensors.values():
        if sensor.type == "gpio.output":
            found[sensor.id] = sensor
        for name in getattr(sensor.params, "outputs", ()) if sensor.type == "serial.mcu" else ():
            found[f"{sensor.id}.{name}"] = sensor
    return found


def unknown_type(
    problems: Problems, path: str, found: str, known: Mapping[str, Any], what: str = "one of"
) -> None:
    close = difflib.get_close_matches(found, list(known), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    choices = ", ".join(sorted(known)) or "none defined"
    problems.add(path, f"expected {what} ({choices}), found '{found}'{hint}")
