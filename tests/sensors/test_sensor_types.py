"""The sensor registry: params conventions the config validator relies on, and builds."""

import dataclasses
import types
import typing

import pytest
from gpiozero.pins.mock import MockFactory

from sensors import (
    SENSOR_TYPES,
    Hardware,
    I2CBus,
    Piecewise,
    SensorType,
    SimulatedBus,
    SimulatedTMP102,
    Value,
)
from tests.sensors.fakes import FakeClock


def is_allowed_annotation(annotation: object) -> bool:
    """int, float, bool, str, Literal[...] of strings, X | None, a tuple of one of these
    (a list) or of a params dataclass (an array of tables) that follows the convention."""
    if annotation in (int, float, bool, str):
        return True
    if typing.get_origin(annotation) is tuple:
        item, *rest = typing.get_args(annotation)
        if rest != [Ellipsis]:
            return False
        if dataclasses.is_dataclass(item):
            return all(is_allowed_annotation(f.type) for f in dataclasses.fields(item))
        return is_allowed_annotation(item)
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        return len(args) == 2 and len(rest) == 1 and is_allowed_annotation(rest[0])
    return False


def test_registry_names_and_kinds() -> None:
    assert {name: t.polled for name, t in SENSOR_TYPES.items()} == {
        "i2c.tmp102": True,
        "gpio.input": True,
        "gpio.edge": False,
        "gpio.counter": True,
        "gpio.output": False,
        "i2c.registers": True,
        "i2c.mpu6050": True,
        "i2c.bme280": True,
        "i2c.sht3x": True,
        "i2c.ads1115": True,
        "i2c.ina219": True,
        "i2c.bh1750": True,
        "serial.mcu": False,
    }
    assert all(name == t.name and t.summary for name, t in SENSOR_TYPES.items())


@pytest.mark.parametrize("sensor_type", SENSOR_TYPES.values(), ids=lambda t: t.name)
def test_params_follow_the_config_convention(sensor_type: SensorType) -> None:
    params = sensor_type.params
    assert dataclasses.is_dataclass(params)
    assert params.__dataclass_params__.frozen  # type: ignore[attr-defined]
    for f in dataclasses.fields(params):
        # f.type must be a real type object: the validator reads it without evaluating strings.
        assert is_allowed_annotation(f.type), (sensor_type.name, f.name, f.type)
        assert isinstance(f.metadata.get("doc"), str), (sensor_type.name, f.name)
        assert f.metadata["doc"] and "\n" not in f.metadata["doc"]


def field_map(sensor_type: str) -> dict[str, dataclasses.Field[object]]:
    return {f.name: f for f in dataclasses.fields(SENSOR_TYPES[sensor_type].params)}


def test_params_defaults_and_ranges() -> None:
    tmp102 = field_map("i2c.tmp102")
    assert (tmp102["bus"].default, tmp102["bus"].metadata["min"]) == (1, 0)
    assert tmp102["address"].default == 0x48
    assert tmp102["address"].metadata["choices"] == (0x48, 0x49, 0x4A, 0x4B)
    assert tmp102["address"].metadata["hex"] is True

    edge = field_map("gpio.edge")
    assert edge["pin"].default is dataclasses.MISSING  # the only required field
    assert (edge["pin"].metadata["min"], edge["pin"].metadata["max"]) == (0, 27)
    assert typing.get_args(edge["pull"].type) == ("up", "down", "none")
    assert (edge["pull"].default, edge["active_low"].default) == ("up", True)
    assert edge["debounce"].default == 0.05
    assert (edge["debounce"].metadata["min"], edge["debounce"].metadata["max"]) == (0.0, 10.0)
    assert set(field_map("gpio.input")) == {"pin", "pull", "active_low"}


@pytest.mark.parametrize("name", ["gpio.input", "gpio.edge"])
def test_i2c_pins_refuse_other_pulls(name: str) -> None:
    params = SENSOR_TYPES[name].params
    with pytest.raises(ValueError, match=r"pull.*pin 3"):
        params(pin=3, pull="none")
    assert params(pin=3).pull == "up"
    assert params(pin=4, pull="down").pull == "down"


def hardware(
    bus: I2CBus | None = None, factory: object | None = None, clock: FakeClock | None = None
) -> tuple[Hardware, list[int]]:
    """Hardware over the given fakes, and the list of bus numbers the sensor opened."""
    opened: list[int] = []

    def i2c(n: int) -> I2CBus:
        opened.append(n)
        assert bus is not None
        return bus

    return Hardware(pin_factory=factory, i2c=i2c, now=clock or FakeClock()), opened


def test_build_tmp102_reads_degc_from_the_configured_bus_and_address() -> None:
    clock = FakeClock()
    bus = SimulatedBus()
    bus.attach(0x4A, SimulatedTMP102(Piecewise([(0.0, 20.0), (10.0, 30.0)], clock)))
    t = SENSOR_TYPES["i2c.tmp102"]
    hw, opened = hardware(bus)
    sensor = t.build(t.params(bus=3, address=0x4A), hw)
    assert opened == [3]
    assert sensor.unit == "degC"
    assert sensor.read() == 20.0  # type: ignore[union-attr]
    clock.t = 5.0
    assert sensor.read() == 25.0  # type: ignore[union-attr]
    sensor.close()
    assert bus.read_i2c_block_data(0x4A, 0x01, 2) == [0x60, 0xA0]  # the shared bus stays open


def test_build_gpio_input() -> None:
    factory = MockFactory()
    t = SENSOR_TYPES["gpio.input"]
    sensor = t.build(t.params(pin=17), hardware(factory=factory)[0])
    assert sensor.unit == ""
    value: Value = sensor.read()  # type: ignore[union-attr]
    assert value is False
    factory.pin(17).drive_low()
    assert sensor.read() is True  # type: ignore[union-attr]
    sensor.close()
    factory.close()


def test_build_gpio_edge_debounces_on_the_hardware_clock() -> None:
    factory, clock = MockFactory(), FakeClock()
    t = SENSOR_TYPES["gpio.edge"]
    sensor = t.build(t.params(pin=27, debounce=1.0), hardware(factory=factory, clock=clock)[0])
    events: list[Value] = []
    sensor.start(events.append)  # type: ignore[union-attr]
    pin = factory.pin(27)
    pin.drive_low()
    clock.t = 0.5
    pin.drive_high()  # within the 1 s debounce
    clock.t = 2.0
    pin.drive_low()
    pin.drive_high()
    assert events == [True, False]
    sensor.close()
    factory.close()
