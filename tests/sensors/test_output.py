"""GpioOutput on gpiozero's MockFactory: pin levels, reported states, safe state on close."""

import dataclasses
import typing

import pytest
from gpiozero.pins.mock import MockFactory

from sensors import Hardware, SensorConfigError, SensorError, Value
from sensors.output import SENSOR_TYPE, GpioOutput, GpioOutputParams
from sensors.sim import SIMULATED_TYPES

PIN = 23


def level(factory: MockFactory, pin: int = PIN) -> bool:
    return bool(factory.pin(pin).state)


@pytest.mark.parametrize(
    ("active_high", "initial", "high_at_start"),
    [(True, False, False), (True, True, True), (False, False, True), (False, True, False)],
)
def test_pin_level_follows_state_and_polarity(
    factory: MockFactory, active_high: bool, initial: bool, high_at_start: bool
) -> None:
    with GpioOutput(PIN, active_high=active_high, initial=initial, pin_factory=factory) as out:
        assert factory.pin(PIN).function == "output"
        assert level(factory) is high_at_start
        assert out.state is initial
        out.set(not initial)
        assert level(factory) is (not high_at_start)
        assert out.state is (not initial)
        out.set(initial)
        assert level(factory) is high_at_start


def test_start_reports_the_state_then_each_change(factory: MockFactory) -> None:
    events: list[bool] = []
    with GpioOutput(PIN, initial=True, pin_factory=factory) as out:
        out.set(False)  # before start: not reported
        out.start(events.append)
        assert events == [False]
        out.set(True)
        out.set(True)  # no change, nothing to report
        out.set(False)
        assert events == [False, True, False]


@pytest.mark.parametrize(
    ("active_high", "safe_state", "on_before", "high_after"),
    [
        (True, "off", True, False),
        (True, "on", False, True),
        (True, "keep", True, True),
        (True, "keep", False, False),
        (False, "off", True, True),  # active low: off is the pin high
        (False, "on", False, False),
    ],
)
def test_close_leaves_the_safe_state_without_reporting_it(
    factory: MockFactory,
    active_high: bool,
    safe_state: typing.Any,
    on_before: bool,
    high_after: bool,
) -> None:
    events: list[bool] = []
    out = GpioOutput(PIN, active_high=active_high, safe_state=safe_state, pin_factory=factory)
    out.start(events.append)
    out.set(on_before)
    events.clear()
    out.close()
    # gpiozero hands the pin back as an input; MockPin keeps the level it was left at.
    assert factory.pin(PIN).function == "input"
    assert level(factory) is high_after
    assert events == []


def test_close_is_idempotent_and_frees_the_pin(factory: MockFactory) -> None:
    out = GpioOutput(PIN, initial=True, pin_factory=factory)
    out.close()
    out.close()
    assert level(factory) is False
    with pytest.raises(SensorError, match="closed"):
        out.set(True)
    with pytest.raises(SensorError, match="closed"):
        _ = out.state
    with pytest.raises(SensorError, match="closed"):
        out.start(print)
    GpioOutput(PIN, pin_factory=factory).close()


def test_pin_in_use_is_a_sensor_error(factory: MockFactory) -> None:
    with (
        GpioOutput(PIN, pin_factory=factory),
        pytest.raises(SensorError, match=f"GPIO{PIN}"),
    ):
        GpioOutput(PIN, pin_factory=factory)


def test_start_twice_is_an_error(factory: MockFactory) -> None:
    with GpioOutput(PIN, pin_factory=factory) as out:
        out.start(print)
        with pytest.raises(SensorError, match="already started"):
            out.start(print)


def test_emit_may_set_or_close_the_output(factory: MockFactory) -> None:
    out = GpioOutput(PIN, pin_factory=factory)
    events: list[bool] = []

    def emit(on: bool) -> None:
        events.append(on)
        if on:
            out.set(False)  # an interlock: switch straight back off
        elif len(events) > 2:
            out.close()

    out.start(emit)
    out.set(True)
    assert events == [False, True, False]
    assert level(factory) is False
    with pytest.raises(SensorError, match="closed"):
        out.set(True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"pin": 28}, "0..27"), ({"pin": -1}, "0..27"), ({"safe_state": "idle"}, "safe_state")],
)
def test_bad_options_are_config_errors(
    factory: MockFactory, kwargs: dict[str, typing.Any], match: str
) -> None:
    kwargs = {"pin": PIN, **kwargs}
    with pytest.raises(SensorConfigError, match=match):
        GpioOutput(pin_factory=factory, **kwargs)


def test_params_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(GpioOutputParams)}
    assert all(f.metadata["doc"] for f in fields.values())
    assert fields["pin"].default is dataclasses.MISSING
    assert (fields["pin"].metadata["min"], fields["pin"].metadata["max"]) == (0, 27)
    assert typing.get_args(fields["initial"].type) == ("off", "on")
    assert typing.get_args(fields["safe_state"].type) == ("off", "on", "keep")
    params = GpioOutputParams(pin=4)
    assert (params.active_high, params.initial, params.safe_state) == (True, "off", "off")


def test_registry_entry_builds_an_edge_sensor_reporting_its_state(factory: MockFactory) -> None:
    assert (SENSOR_TYPE.name, SENSOR_TYPE.polled) == ("gpio.output", False)
    assert SENSOR_TYPE.name not in SIMULATED_TYPES  # GPIO runs on gpiozero's MockFactory

    def no_i2c(n: int) -> typing.Any:
        raise AssertionError("a GPIO output opens no I2C bus")

    hw = Hardware(pin_factory=factory, i2c=no_i2c, now=lambda: 0.0)
    params = GpioOutputParams(pin=PIN, active_high=False, initial="on", safe_state="on")
    sensor = typing.cast(GpioOutput, SENSOR_TYPE.build(params, hw))
    assert sensor.unit == ""
    assert level(factory) is False  # on, active low
    events: list[Value] = []
    sensor.start(events.append)
    sensor.set(False)
    assert events == [True, False]
    assert level(factory) is True
    sensor.close()
    assert level(factory) is False  # safe state "on", active low
