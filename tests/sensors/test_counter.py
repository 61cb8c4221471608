"""PulseCounter on gpiozero's MockFactory with a hand-advanced clock, and PulseTrain driving it."""

import dataclasses
import math
import re
import subprocess
import sys
import threading
import typing
from pathlib import Path

import pytest
from gpiozero.pins.mock import MockFactory

from sensors import Hardware, Piecewise, SensorConfigError, SensorError
from sensors.counter import SENSOR_TYPE, CounterParams, PulseCounter
from sensors.sim import SIMULATED_TYPES
from sensors.sim.pulses import PulseTrain
from tests.sensors.fakes import FakeClock

ROOT = Path(__file__).resolve().parents[2]
PIN = 6


def pulse(factory: MockFactory, clock: FakeClock, at: float, *, low: bool = True) -> None:
    """One pulse at time ``at``: the pin driven to its active level, then back."""
    pin = factory.pin(PIN)
    clock.t = at
    (pin.drive_low if low else pin.drive_high)()
    (pin.drive_high if low else pin.drive_low)()


def test_rate_is_edges_per_second_since_the_previous_read(factory: MockFactory) -> None:
    clock = FakeClock(100.0)
    with PulseCounter(PIN, now=clock, pin_factory=factory) as counter:
        for i in range(6):
            pulse(factory, clock, 100.0 + 0.25 * i)
        clock.t = 102.0  # first read: since construction at t=100
        assert counter.read() == {"rate": 3.0, "count": 6}
        for i in range(2):
            pulse(factory, clock, 102.5 + 0.5 * i)
        clock.t = 106.0
        assert counter.read() == {"rate": 0.5, "count": 8}
        clock.t = 107.0
        assert counter.read() == {"rate": 0.0, "count": 8}


def test_edges_before_construction_are_not_counted(factory: MockFactory) -> None:
    clock = FakeClock()
    factory.pin(PIN).drive_low()
    factory.pin(PIN).drive_high()
    with PulseCounter(PIN, now=clock, pin_factory=factory) as counter:
        clock.t = 1.0
        assert counter.read() == {"rate": 0.0, "count": 0}


def test_a_read_at_the_same_instant_repeats_the_rate_and_keeps_the_window(
    factory: MockFactory,
) -> None:
    clock = FakeClock()
    with PulseCounter(PIN, now=clock, pin_factory=factory) as counter:
        assert counter.read() == {"rate": 0.0, "count": 0}  # no time has passed yet
        pulse(factory, clock, 0.5)
        clock.t = 1.0
        assert counter.read() == {"rate": 1.0, "count": 1}
        pulse(factory, clock, 1.0)
        pulse(factory, clock, 1.0)
        assert counter.read() == {"rate": 1.0, "count": 3}  # same instant: previous rate
        clock.t = 2.0
        assert counter.read() == {"rate": 2.0, "count": 3}  # the two edges at t=1 are not lost


@pytest.mark.parametrize(
    ("edge", "pull", "active_low", "on_activate", "on_release"),
    [
        ("rising", "up", True, 1, 0),  # active = pin low
        ("falling", "up", True, 0, 1),
        ("both", "up", True, 1, 1),
        ("rising", "down", False, 1, 0),  # active = pin high
        ("falling", "down", False, 0, 1),
        ("rising", "up", False, 1, 0),  # pairings gpiozero cannot express: inverted by us
        ("falling", "down", True, 0, 1),
        ("both", "none", False, 1, 1),
    ],
)
def test_edge_selects_the_start_or_end_of_a_pulse(
    factory: MockFactory,
    edge: typing.Any,
    pull: typing.Any,
    active_low: bool,
    on_activate: int,
    on_release: int,
) -> None:
    pin = factory.pin(PIN)
    idle_low = not active_low
    counter = PulseCounter(
        PIN, now=FakeClock(), edge=edge, pull=pull, active_low=active_low, pin_factory=factory
    )
    # The pull has set the pin's level; bring it to idle (an edge itself, if it was active).
    (pin.drive_low if idle_low else pin.drive_high)()
    idle_count = counter.count
    (pin.drive_high if idle_low else pin.drive_low)()  # the pulse starts
    assert counter.count - idle_count == on_activate
    (pin.drive_low if idle_low else pin.drive_high)()  # and ends
    assert counter.count - idle_count == on_activate + on_release
    counter.close()


def test_debounce_is_a_minimum_spacing_on_the_injected_clock(factory: MockFactory) -> None:
    clock = FakeClock()
    with PulseCounter(PIN, now=clock, debounce=0.01, pin_factory=factory) as counter:
        pulse(factory, clock, 1.0)  # counted
        for t in (1.001, 1.005, 1.0099):
            pulse(factory, clock, t)  # contact bounce: within 10 ms of the counted edge
        pulse(factory, clock, 1.01)  # exactly `debounce` later: counted
        pulse(factory, clock, 1.015)
        pulse(factory, clock, 1.5)
        assert counter.count == 3


def test_debounce_with_both_edges_spaces_every_counted_edge(factory: MockFactory) -> None:
    clock = FakeClock()
    with PulseCounter(PIN, now=clock, edge="both", debounce=0.1, pin_factory=factory) as counter:
        pulse(factory, clock, 1.0)  # the release at the same instant is within debounce
        assert counter.count == 1
        clock.t = 1.2
        factory.pin(PIN).drive_low()
        assert counter.count == 2


def test_scale_and_unit_give_an_anemometer_in_km_per_h(factory: MockFactory) -> None:
    clock = FakeClock()
    with PulseCounter(PIN, now=clock, scale=2.4, unit="km/h", pin_factory=factory) as counter:
        assert counter.unit == ""  # several quantities: see units
        assert counter.units == {"rate": "km/h", "count": ""}
        for i in range(10):
            pulse(factory, clock, 0.1 * i)
        clock.t = 2.0
        reading = counter.read()
        assert reading["rate"] == pytest.approx(12.0)  # 5 Hz * 2.4 km/h per Hz
        assert reading["count"] == 10


def test_edges_from_another_thread_are_all_counted(factory: MockFactory) -> None:
    clock = FakeClock()
    counter = PulseCounter(PIN, now=clock, pin_factory=factory)
    pin = factory.pin(PIN)
    done = threading.Event()
    totals: list[float] = []

    def drive() -> None:
        for _ in range(2000):
            pin.drive_low()
            pin.drive_high()
        done.set()

    thread = threading.Thread(target=drive)
    thread.start()
    while not done.is_set():  # reads race the callbacks; each reads a consistent snapshot
        clock.t += 1.0
        totals.append(counter.read()["rate"])
    thread.join()
    clock.t += 1.0
    totals.append(counter.read()["rate"])
    assert sum(totals) == 2000  # every window of 1 s: rate = edges in it, none lost or doubled
    assert counter.count == 2000
    counter.close()


def test_close_is_idempotent_stops_counting_and_frees_the_pin(factory: MockFactory) -> None:
    clock = FakeClock()
    counter = PulseCounter(PIN, now=clock, pin_factory=factory)
    pulse(factory, clock, 0.0)
    counter.close()
    counter.close()
    pulse(factory, clock, 1.0)
    assert counter.count == 1
    with pytest.raises(SensorError, match="closed"):
        counter.read()
    PulseCounter(PIN, now=clock, pin_factory=factory).close()


def test_pin_in_use_is_a_sensor_error(factory: MockFactory) -> None:
    with (
        PulseCounter(PIN, now=FakeClock(), pin_factory=factory),
        pytest.raises(SensorError, match=f"GPIO{PIN}"),
    ):
        PulseCounter(PIN, now=FakeClock(), pin_factory=factory)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"edge": "up"}, "edge"),
        ({"debounce": -0.001}, "debounce"),
        ({"debounce": math.nan}, "debounce"),
        ({"scale": 0.0}, "scale"),
        ({"scale": math.inf}, "scale"),
        ({"pull": "sideways"}, "pull"),
    ],
)
def test_bad_options_are_config_errors(
    factory: MockFactory, kwargs: dict[str, typing.Any], match: str
) -> None:
    with pytest.raises(SensorConfigError, match=match):
        PulseCounter(PIN, now=FakeClock(), pin_factory=factory, **kwargs)


def test_bad_pin_is_a_config_error(factory: MockFactory) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0..27")):
        PulseCounter(28, now=FakeClock(), pin_factory=factory)


def run_train(train: PulseTrain, clock: FakeClock, until: float, poll: float) -> None:
    """What a scenario driver does: advance at each returned time, at most ``poll`` apart."""
    due = clock.t
    while due <= until:
        clock.t = due
        due = min(train.advance(), clock.t + poll)


def test_pulse_train_drives_a_counter_at_the_signal_rate(factory: MockFactory) -> None:
    clock = FakeClock()
    counter = PulseCounter(PIN, now=clock, debounce=0.01, pin_factory=factory)
    train = PulseTrain(factory.pin(PIN), lambda: 20.0, clock)
    run_train(train, clock, until=10.0, poll=1.0)
    assert counter.count == train.pulses == 200  # 20 Hz for 10 s, none merged by debounce
    clock.t = 10.0
    assert counter.read() == {"rate": 20.0, "count": 200}
    counter.close()


def test_pulse_train_edges_fall_at_their_own_times(factory: MockFactory) -> None:
    clock = FakeClock()
    pin = factory.pin(PIN)
    pin.clear_states()
    train = PulseTrain(pin, lambda: 4.0, clock, active_low=False)
    times: list[tuple[float, bool]] = []
    due = train.advance()
    while due <= 0.5:
        clock.t = due
        before = pin.state
        due = train.advance()
        assert pin.state != before
        times.append((clock.t, pin.state))
    # 4 Hz, square, active high: high at 1/8 s, low at 2/8 s, and so on.
    assert times == [(0.125, True), (0.25, False), (0.375, True), (0.5, False)]


def test_pulse_train_follows_a_changing_rate(factory: MockFactory) -> None:
    clock = FakeClock()
    counter = PulseCounter(PIN, now=clock, pin_factory=factory)
    rate = Piecewise([(0.0, 0.0), (5.0, 0.0), (5.0, 10.0), (8.0, 10.0), (8.0, 0.0)], clock)
    train = PulseTrain(factory.pin(PIN), rate, clock)
    assert train.advance() == math.inf  # no pulses at rate 0
    run_train(train, clock, until=5.0, poll=0.1)
    clock.t = 5.0
    assert counter.read()["count"] == 0
    run_train(train, clock, until=12.0, poll=0.1)
    clock.t = 12.0
    # 10 Hz from t=5 to t=8: 30 pulses, starting at 5.05, 5.15, ... 7.95. The rate sampled
    # at the advance just before t=8 holds until the next edge, which may start a 31st.
    assert 30 <= counter.read()["count"] <= 31
    counter.close()


def test_pulse_train_on_a_coarse_period_drives_the_pulses_together(factory: MockFactory) -> None:
    clock = FakeClock()
    counter = PulseCounter(PIN, now=clock, debounce=0.001, pin_factory=factory)
    train = PulseTrain(factory.pin(PIN), lambda: 100.0, clock)
    clock.t = 1.0
    train(1.0)  # as a scheduler action: 100 pulses due, all driven at t=1
    assert train.pulses == 100
    assert counter.count == 1  # the documented trap: debounce merges a burst
    counter.close()


def test_pulse_train_ignores_rates_that_are_not_positive_numbers(factory: MockFactory) -> None:
    clock = FakeClock()
    rates = iter([math.nan, -5.0, math.inf])
    train = PulseTrain(factory.pin(PIN), lambda: next(rates), clock)
    clock.t = 10.0
    assert train.advance() == math.inf
    clock.t = 20.0
    assert train.advance() == math.inf
    assert train.pulses == 0


def test_params_conventions_and_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(CounterParams)}
    assert all(f.metadata["doc"] for f in fields.values())
    assert fields["pin"].default is dataclasses.MISSING
    assert typing.get_args(fields["edge"].type) == ("rising", "falling", "both")
    params = CounterParams(pin=5)
    assert (params.edge, params.pull, params.active_low) == ("rising", "up", True)
    assert (params.debounce, params.scale, params.unit) == (0.0, 1.0, "1/s")
    with pytest.raises(ValueError, match=r"pull.*pin 2"):
        CounterParams(pin=2, pull="down")
    with pytest.raises(ValueError, match="scale"):
        CounterParams(pin=5, scale=-2.4)


def test_registry_entry_builds_a_counter_on_the_hardware_clock(factory: MockFactory) -> None:
    assert (SENSOR_TYPE.name, SENSOR_TYPE.polled) == ("gpio.counter", True)
    assert SENSOR_TYPE.name not in SIMULATED_TYPES  # GPIO runs on gpiozero's MockFactory
    assert SENSOR_TYPE.units == {"rate": "1/s", "count": ""}
    clock = FakeClock()

    def no_i2c(n: int) -> typing.Any:
        raise AssertionError("a GPIO counter opens no I2C bus")

    hw = Hardware(pin_factory=factory, i2c=no_i2c, now=clock)
    params = CounterParams(pin=PIN, scale=2.4, unit="km/h", debounce=0.01)
    sensor = typing.cast(PulseCounter, SENSOR_TYPE.build(params, hw))
    assert sensor.units["rate"] == "km/h"
    train = PulseTrain(factory.pin(PIN), lambda: 2.5, clock)
    run_train(train, clock, until=4.0, poll=1.0)
    clock.t = 4.0
    assert sensor.read() == {"rate": pytest.approx(6.0), "count": 10}
    sensor.close()


def test_importing_the_gpio_modules_does_not_import_gpiozero() -> None:
    code = (
        "import sys, sensors.counter, sensors.output; "
        "assert 'gpiozero' not in sys.modules, 'gpiozero imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
