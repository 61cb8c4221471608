"""Fault injection on SimulatedBus, seen through the TMP102 driver as the runtime would see it."""

import random
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import TMP102, SimulatedBus, SimulatedTMP102
from sensors.sim.bus import Fault
from sensors.tmp102 import decode_temperature

ERRNOS = {"nack": 121, "eio": 5, "timeout": 110}


class Clock:
    """A virtual clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Thermometer:
    """The true temperature, settable, counting how often the chip model samples it."""

    def __init__(self, value: float = 21.0) -> None:
        self.value = value
        self.samples = 0

    def __call__(self) -> float:
        self.samples += 1
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def temp() -> Thermometer:
    return Thermometer()


@pytest.fixture
def bus(clock: Clock, temp: Thermometer) -> Iterator[SimulatedBus]:
    with SimulatedBus(clock=clock) as b:
        b.attach(0x48, SimulatedTMP102(temp))
        yield b


def reading(bus: SimulatedBus, address: int = 0x48) -> float:
    return TMP102(bus, address).read()["temperature"]


@pytest.mark.parametrize(("kind", "code"), ERRNOS.items())
def test_error_faults_raise_their_errno_and_the_chip_sees_nothing(
    bus: SimulatedBus, temp: Thermometer, kind: str, code: int
) -> None:
    bus.inject(0x48, kind, count=2)  # type: ignore[arg-type]
    sensor = TMP102(bus)
    for _ in range(2):
        with pytest.raises(OSError) as info:
            sensor.read()
        assert info.value.errno == code
        assert "0x48" in str(info.value)
    assert temp.samples == 0
    assert sensor.read() == {"temperature": 21.0}  # recovered after count accesses
    assert bus.faults == {}


@pytest.mark.parametrize("kind", ERRNOS)
def test_error_faults_hit_writes_too(bus: SimulatedBus, kind: str) -> None:
    bus.inject(0x48, kind, count=1)  # type: ignore[arg-type]
    with pytest.raises(OSError) as info:
        bus.write_i2c_block_data(0x48, 0x01, [0x60, 0xB0])
    assert info.value.errno == ERRNOS[kind]
    assert TMP102(bus).extended_mode is False  # the write never reached the chip


@given(count=st.integers(1, 30), kind=st.sampled_from(sorted(ERRNOS)))
def test_count_is_exact(count: int, kind: str) -> None:
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedTMP102(lambda: 25.0))
    bus.inject(0x48, kind, count=count)  # type: ignore[arg-type]
    failures = 0
    for _ in range(count + 5):
        try:
            reading(bus)
        except OSError:
            failures += 1
    assert failures == count


def test_fault_without_count_lasts_until_cleared(bus: SimulatedBus) -> None:
    bus.inject(0x48, "eio")
    for _ in range(50):
        with pytest.raises(OSError):
            reading(bus)
    assert bus.faults == {0x48: Fault("eio")}
    bus.clear(0x48)
    bus.clear(0x48)  # idempotent
    assert reading(bus) == 21.0


def test_until_follows_the_bus_clock(bus: SimulatedBus, clock: Clock) -> None:
    clock.now = 100.0
    bus.inject(0x48, "timeout", until=110.0)
    clock.now = 109.9
    assert bus.faults == {0x48: Fault("timeout", until=110.0)}
    with pytest.raises(OSError) as info:
        reading(bus)
    assert info.value.errno == 110
    clock.now = 110.0
    assert bus.faults == {}
    assert reading(bus) == 21.0


def test_count_and_until_end_at_whichever_comes_first(bus: SimulatedBus, clock: Clock) -> None:
    bus.inject(0x48, "nack", count=100, until=5.0)
    with pytest.raises(OSError):
        reading(bus)
    assert bus.faults == {0x48: Fault("nack", remaining=99, until=5.0)}
    clock.now = 5.0
    assert reading(bus) == 21.0
    bus.inject(0x48, "nack", count=1, until=50.0)
    with pytest.raises(OSError):
        reading(bus)
    assert reading(bus) == 21.0


def test_vanish_nacks_everything_until_restore(bus: SimulatedBus, temp: Thermometer) -> None:
    sensor = TMP102(bus)
    sensor.extended_mode = True
    bus.inject(0x48, "vanish")
    temp.value = 140.0
    for access in (sensor.read, lambda: setattr(sensor, "extended_mode", False)):
        for _ in range(3):
            with pytest.raises(OSError) as info:
                access()
            assert info.value.errno == 121
    assert bus.faults == {0x48: Fault("vanish")}
    bus.restore(0x48)
    assert sensor.extended_mode is True  # the registers survived, as behind a loose wire
    assert sensor.read() == {"temperature": 140.0}
    with pytest.raises(ValueError, match="0x48 has not vanished"):
        bus.restore(0x48)


def test_vanish_takes_no_count_or_until(bus: SimulatedBus) -> None:
    with pytest.raises(ValueError, match="restore"):
        bus.inject(0x48, "vanish", count=3)
    with pytest.raises(ValueError, match="restore"):
        bus.inject(0x48, "vanish", until=10.0)


def test_stuck_freezes_values_while_the_signal_moves(bus: SimulatedBus, temp: Thermometer) -> None:
    assert reading(bus) == 21.0
    bus.inject(0x48, "stuck")
    samples = temp.samples
    for value in (30.0, -10.0, 99.0):
        temp.value = value
        assert reading(bus) == 21.0
    assert temp.samples == samples  # a stuck chip converts nothing
    bus.clear(0x48)
    assert reading(bus) == 99.0


def test_stuck_freezes_a_register_not_read_before_on_first_read(
    bus: SimulatedBus, temp: Thermometer
) -> None:
    bus.inject(0x48, "stuck", count=4)
    temp.value = 35.5
    assert reading(bus) == 35.5
    temp.value = 0.0
    assert [reading(bus) for _ in range(3)] == [35.5] * 3
    assert reading(bus) == 0.0  # count ran out


def test_stuck_chip_still_takes_writes(bus: SimulatedBus, temp: Thermometer) -> None:
    sensor = TMP102(bus)
    assert sensor.extended_mode is False
    bus.inject(0x48, "stuck")
    sensor.extended_mode = True
    assert sensor.extended_mode is False  # the configuration register reads frozen too
    bus.clear(0x48)
    assert sensor.extended_mode is True
    temp.value = 140.0
    assert sensor.read() == {"temperature": 140.0}  # 13-bit format: beyond 12-bit's 128


def garbage_readings(seed: int | None, n: int = 20) -> list[float]:
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedTMP102(lambda: 21.0))
    if seed is None:
        bus.inject(0x48, "garbage")
    else:
        bus.inject(0x48, "garbage", seed=seed)
    return [reading(bus) for _ in range(n)]


def test_garbage_is_the_seeded_generators_bytes(bus: SimulatedBus) -> None:
    bus.inject(0x48, "garbage", seed=7)
    rng = random.Random(7)
    for length in (2, 1, 5):
        assert bus.read_i2c_block_data(0x48, 0x00, length) == list(rng.randbytes(length))
    expected = rng.randbytes(2)
    assert reading(bus) == decode_temperature(expected[0], expected[1])


def test_garbage_is_deterministic_per_seed() -> None:
    assert garbage_readings(3) == garbage_readings(3)
    assert garbage_readings(3) != garbage_readings(4)
    assert garbage_readings(None) == garbage_readings(0)
    assert len(set(garbage_readings(3))) > 10  # noise, not a constant


def test_garbage_reads_still_reach_the_chip(bus: SimulatedBus, temp: Thermometer) -> None:
    bus.inject(0x48, "garbage", count=2)
    reading(bus)
    reading(bus)
    assert temp.samples == 2
    temp.value = -20.0
    assert reading(bus) == -20.0


@pytest.mark.parametrize("kind", ["nack", "eio", "timeout", "vanish", "stuck", "garbage"])
def test_other_addresses_are_unaffected(bus: SimulatedBus, temp: Thermometer, kind: str) -> None:
    other = Thermometer(-5.0)
    bus.attach(0x49, SimulatedTMP102(other))
    reading(bus)
    bus.inject(0x48, kind)  # type: ignore[arg-type]
    temp.value = other.value = 60.0
    for _ in range(3):
        assert reading(bus, 0x49) == 60.0
    assert list(bus.faults) == [0x48]
    if kind in ("stuck", "garbage"):
        assert reading(bus) != 60.0
    else:
        with pytest.raises(OSError):
            reading(bus)


def test_inject_replaces_the_previous_fault(bus: SimulatedBus) -> None:
    bus.inject(0x48, "nack")
    bus.inject(0x48, "eio", count=1)
    assert bus.faults == {0x48: Fault("eio", remaining=1)}
    with pytest.raises(OSError) as info:
        reading(bus)
    assert info.value.errno == 5
    assert reading(bus) == 21.0


def test_detach_drops_the_faults(bus: SimulatedBus, temp: Thermometer) -> None:
    bus.inject(0x48, "vanish")
    bus.detach(0x48)
    assert bus.faults == {}
    bus.attach(0x48, SimulatedTMP102(temp))
    assert reading(bus) == 21.0


def test_inject_refuses_mistakes(bus: SimulatedBus) -> None:
    with pytest.raises(ValueError, match="one of nack, eio, timeout"):
        bus.inject(0x48, "brownout")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no chip attached at address 0x49"):
        bus.inject(0x49, "nack")
    with pytest.raises(ValueError, match="count"):
        bus.inject(0x48, "nack", count=0)
    with pytest.raises(ValueError, match="seed is for garbage"):
        bus.inject(0x48, "stuck", seed=1)
    with pytest.raises(ValueError, match="already passed"):
        bus.inject(0x48, "nack", until=0.0)
    with pytest.raises(ValueError, match="finite"):
        bus.inject(0x48, "nack", until=float("nan"))
    with pytest.raises(ValueError, match="needs a clock"):
        clockless = SimulatedBus()
        clockless.attach(0x48, SimulatedTMP102(lambda: 0.0))
        clockless.inject(0x48, "nack", until=1.0)
    assert bus.faults == {}


def test_count_holds_across_threads(bus: SimulatedBus) -> None:
    bus.inject(0x48, "nack", count=1000)
    failures: list[int] = []

    def reader() -> None:
        sensor = TMP102(bus)
        for _ in range(500):
            try:
                sensor.read()
            except OSError:
                failures.append(1)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(failures) == 1000
