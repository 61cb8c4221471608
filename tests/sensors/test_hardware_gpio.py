"""The GPIO contract over two pins wired together: GpioOutput drives, GpioInput reads,
GpioEdge reports each change, PulseCounter counts every pulse.

One suite, two pin factories (as gpiozero's own tests/test_real_pins.py): gpiozero's
MockFactory with a ``MockConnectedPin`` standing in for the wire, always; and the real
pins of a Pi with ``-m hardware`` and ``EDGELINE_TEST_GPIO_LOOP="OUT,IN"`` set (see
tests/sensors/hardware.py), skipped with the reason where they cannot load. The mock
run keeps the contract itself honest between the runs on a Pi.
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from gpiozero.pins.mock import MockConnectedPin, MockFactory

from sensors import GpioOutput, PulseCounter
from sensors.gpio import GpioEdge, GpioInput
from tests.sensors.hardware import gpio_loop

MOCK_OUT, MOCK_IN = 20, 21
#: How long a real pin gets to follow a change (gpiozero delivers edges on its own thread).
TIMEOUT = 1.0
#: How long each level of a pulse lasts: far above what lgpio's edge alerts resolve.
HALF_PULSE = 0.002


@dataclass(frozen=True)
class Loop:
    out: int
    in_: int
    factory: Any


@pytest.fixture(params=["mock", pytest.param("real", marks=pytest.mark.hardware)])
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    if request.param == "real":
        out, in_, factory = gpio_loop()
        yield Loop(out, in_, factory)  # gpiozero's default factory: shared, left open
        return
    factory = MockFactory()
    factory.pin(MOCK_OUT, pin_class=MockConnectedPin, input_pin=factory.pin(MOCK_IN))
    try:
        yield Loop(MOCK_OUT, MOCK_IN, factory)
    finally:
        factory.close()


def wait_until(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within :data:`TIMEOUT` (at once, on the mock)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_output_drives_the_input_and_reports_its_state(loop: Loop) -> None:
    states: list[bool] = []
    with (
        GpioOutput(loop.out, pin_factory=loop.factory) as out,
        GpioInput(loop.in_, pull="down", active_low=False, pin_factory=loop.factory) as gpio,
    ):
        out.start(states.append)
        assert wait_until(lambda: gpio.read() is False), "input high while the output is off"
        out.set(True)
        assert wait_until(lambda: gpio.read() is True), f"GPIO{loop.in_} did not follow on"
        out.set(False)
        assert wait_until(lambda: gpio.read() is False), f"GPIO{loop.in_} did not follow off"
        assert states == [False, True, False]


def test_edge_reports_each_change_once(loop: Loop) -> None:
    events: list[bool] = []
    with (
        GpioOutput(loop.out, pin_factory=loop.factory) as out,
        GpioEdge(
            loop.in_,
            now=time.monotonic,
            pull="down",
            active_low=False,
            debounce=0.0,
            pin_factory=loop.factory,
        ) as edge,
    ):
        edge.start(events.append)
        out.set(True)
        assert wait_until(lambda: events == [True]), events
        out.set(False)
        assert wait_until(lambda: events == [True, False]), events


@pytest.mark.parametrize("edge", ["rising", "both"])
def test_counter_counts_every_pulse(loop: Loop, edge: Any) -> None:
    pulses = 25
    expected = pulses * (2 if edge == "both" else 1)
    with (
        GpioOutput(loop.out, pin_factory=loop.factory) as out,
        PulseCounter(
            loop.in_,
            now=time.monotonic,
            edge=edge,
            pull="down",
            active_low=False,
            pin_factory=loop.factory,
        ) as counter,
    ):
        for _ in range(pulses):
            out.set(True)
            time.sleep(HALF_PULSE)
            out.set(False)
            time.sleep(HALF_PULSE)
        assert wait_until(lambda: counter.count >= expected), counter.count
        time.sleep(0.05)  # no late or spurious edges either
        reading = counter.read()
        assert reading["count"] == expected
        assert reading["rate"] > 0
