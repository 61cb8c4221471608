"""GpioInput and GpioEdge on gpiozero's MockFactory with a hand-advanced clock."""

import pytest
from gpiozero.pins.mock import MockFactory

from sensors import SensorConfigError, SensorError
from sensors.gpio import GpioEdge, GpioInput
from tests.sensors.fakes import FakeClock


@pytest.mark.parametrize(
    ("pull", "active_low", "idle_active"),
    [
        ("up", True, False),  # button to ground: idle high = inactive
        ("down", False, False),  # button to 3V3: idle low = inactive
        ("up", False, True),  # pairings gpiozero cannot express are inverted by us
        ("down", True, True),
    ],
)
def test_input_level_follows_pull_and_polarity(
    factory: MockFactory, pull: str, active_low: bool, idle_active: bool
) -> None:
    with GpioInput(17, pull=pull, active_low=active_low, pin_factory=factory) as gpio:  # type: ignore[arg-type]
        assert gpio.read() is idle_active
        pin = factory.pin(17)
        (pin.drive_high if pull == "down" else pin.drive_low)()
        assert gpio.read() is (not idle_active)


@pytest.mark.parametrize("active_low", [True, False])
def test_floating_input_uses_active_low_as_gpiozero_active_state(
    factory: MockFactory, active_low: bool
) -> None:
    with GpioInput(5, pull="none", active_low=active_low, pin_factory=factory) as gpio:
        factory.pin(5).drive_low()
        assert gpio.read() is active_low
        factory.pin(5).drive_high()
        assert gpio.read() is (not active_low)


@pytest.mark.parametrize(
    ("pin", "pull", "match"),
    [(28, "up", "0..27"), (-1, "up", "0..27"), (17, "sideways", "pull"), (2, "down", "GPIO2")],
)
def test_bad_pin_or_pull_is_a_config_error(
    factory: MockFactory, pin: int, pull: str, match: str
) -> None:
    with pytest.raises(SensorConfigError, match=match):
        GpioInput(pin, pull=pull, pin_factory=factory)  # type: ignore[arg-type]


def test_pin_in_use_is_a_sensor_error_and_close_frees_it(factory: MockFactory) -> None:
    first = GpioInput(17, pin_factory=factory)
    with pytest.raises(SensorError, match="GPIO17"):
        GpioInput(17, pin_factory=factory)
    first.close()
    first.close()  # idempotent
    with pytest.raises(SensorError, match="closed"):
        first.read()
    GpioInput(17, pin_factory=factory).close()


def start_edge(
    factory: MockFactory, clock: FakeClock, debounce: float = 0.05, **kwargs: object
) -> tuple[GpioEdge, list[bool]]:
    events: list[bool] = []
    edge = GpioEdge(22, now=clock, debounce=debounce, pin_factory=factory, **kwargs)  # type: ignore[arg-type]
    edge.start(events.append)
    return edge, events


def test_edge_reports_each_change(factory: MockFactory) -> None:
    clock = FakeClock()
    edge, events = start_edge(factory, clock)
    pin = factory.pin(22)
    pin.drive_low()  # pressed (pull-up, active low)
    clock.t = 1.0
    pin.drive_high()
    assert events == [True, False]
    edge.close()


def test_edge_ignores_bounces_within_debounce(factory: MockFactory) -> None:
    clock = FakeClock(0.0)
    edge, events = start_edge(factory, clock, debounce=0.05)
    pin = factory.pin(22)
    pin.drive_low()  # accepted at t=0
    for t in (0.01, 0.02, 0.03, 0.049):
        clock.t = t
        pin.drive_high()  # bounce: within 50 ms of the accepted change
        pin.drive_low()  # back to the state already reported
    clock.t = 0.05
    pin.drive_high()  # exactly `debounce` later: accepted
    assert events == [True, False]
    edge.close()


def test_edge_ignores_a_change_back_to_the_reported_state(factory: MockFactory) -> None:
    clock = FakeClock()
    edge, events = start_edge(factory, clock)
    pin = factory.pin(22)
    pin.drive_low()
    clock.t = 0.01
    pin.drive_high()  # ignored: bounce
    clock.t = 1.0
    pin.drive_low()  # a real change of the pin, but True was already reported
    assert events == [True]
    edge.close()


def test_edge_zero_debounce_reports_every_change(factory: MockFactory) -> None:
    edge, events = start_edge(factory, FakeClock(), debounce=0.0)
    pin = factory.pin(22)
    for _ in range(3):
        pin.drive_low()
        pin.drive_high()
    assert events == [True, False] * 3
    edge.close()


def test_edge_with_inverted_polarity(factory: MockFactory) -> None:
    edge, events = start_edge(factory, FakeClock(), pull="up", active_low=False)
    factory.pin(22).drive_low()  # idle high was already "active"
    assert events == [False]
    edge.close()


def test_edge_level_at_start_counts_as_reported(factory: MockFactory) -> None:
    factory.pin(22).drive_low()
    edge = GpioEdge(22, now=FakeClock(), pull="none", active_low=True, pin_factory=factory)
    events: list[bool] = []
    edge.start(events.append)
    factory.pin(22).drive_low()
    assert events == []
    factory.pin(22).drive_high()
    assert events == [False]
    edge.close()


def test_edge_close_is_idempotent_and_silences_emit(factory: MockFactory) -> None:
    clock = FakeClock()
    edge, events = start_edge(factory, clock)
    edge.close()
    edge.close()
    factory.pin(22).drive_low()
    assert events == []
    with pytest.raises(SensorError, match="closed"):
        edge.start(events.append)


@pytest.mark.filterwarnings("error")
def test_edge_closed_without_starting_raises_no_gpiozero_warning(factory: MockFactory) -> None:
    GpioEdge(22, now=FakeClock(), pin_factory=factory).close()  # CallbackSetToNone before


def test_edge_start_twice_is_an_error(factory: MockFactory) -> None:
    edge, events = start_edge(factory, FakeClock())
    with pytest.raises(SensorError, match="already started"):
        edge.start(events.append)
    edge.close()


def test_edge_emit_may_close_the_sensor(factory: MockFactory) -> None:
    edge = GpioEdge(22, now=FakeClock(), pin_factory=factory)
    events: list[bool] = []

    def emit(active: bool) -> None:
        events.append(active)
        edge.close()

    edge.start(emit)
    factory.pin(22).drive_low()
    factory.pin(22).drive_high()
    assert events == [True]


@pytest.mark.parametrize("debounce", [-0.1, float("nan"), float("inf")])
def test_edge_refuses_bad_debounce(factory: MockFactory, debounce: float) -> None:
    with pytest.raises(SensorConfigError, match="debounce"):
        GpioEdge(22, now=FakeClock(), debounce=debounce, pin_factory=factory)
