"""BH1750 driver against the datasheet example, and through its chip model on SimulatedBus
(plain reads through i2c_rdwr)."""

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from sensors import Hardware, SensorConfigError, SimulatedBus
from sensors.bh1750 import BH1750, SENSOR_TYPE, BH1750Params, BH1750Sensor, decode_lux, encode_lux
from sensors.ports import I2C_M_RD
from sensors.sim.bh1750 import SimulatedBH1750, simulate
from tests.sensors.hardware import i2c_chip


class ReplayBus:
    """Answers raw reads with canned bytes and records every transfer (and sleep) in order."""

    def __init__(self, result: list[int]) -> None:
        self.result = result
        self.calls: list[tuple[object, ...]] = []

    def write_byte(self, i2c_addr: int, value: int) -> None:
        self.calls.append(("write_byte", i2c_addr, value))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        for msg in i2c_msgs:
            assert msg.flags & I2C_M_RD
            self.calls.append(("read", msg.addr, msg.len))
            for i, byte in enumerate(self.result[: msg.len]):
                msg.buf[i] = byte

    def sleep(self, seconds: float) -> None:
        self.calls.append(("sleep", seconds))

    def _unused(self, *args: object) -> Any:
        raise AssertionError("a register read or write would send the BH1750 an instruction")

    read_byte = read_byte_data = write_byte_data = read_word_data = write_word_data = _unused
    read_i2c_block_data = write_i2c_block_data = _unused


# BH1750FVI datasheet (ROHM, Rev.B), "I2C Bus Access", 4) Read Format, example:
# High Byte "1000_0011", Low Byte "1001_0000": (2^15 + 2^9 + 2^8 + 2^7 + 2^4) / 1.2 ~ 28067 lx.
DATASHEET_EXAMPLE = ([0b1000_0011, 0b1001_0000], (2**15 + 2**9 + 2**8 + 2**7 + 2**4) / 1.2)


def test_driver_decodes_the_datasheet_example_and_sends_only_opcodes() -> None:
    raw, lux = DATASHEET_EXAMPLE
    bus = ReplayBus(raw)
    assert BH1750(bus, 0x5C, sleep=bus.sleep).read() == {"illuminance": lux}
    assert round(lux) == 28067
    assert bus.calls == [
        ("write_byte", 0x5C, 0x01),  # power on
        ("write_byte", 0x5C, 0x20),  # one-time H-resolution measurement
        ("sleep", 0.180),  # the longest H-resolution measurement time
        ("read", 0x5C, 2),  # a bare 2-byte read: no register byte first
    ]


@pytest.mark.parametrize(
    ("raw", "lux"),
    [([0x00, 0x00], 0.0), ([0x00, 0x01], 1 / 1.2), ([0xFF, 0xFF], 65535 / 1.2)],
)
def test_decode_covers_the_whole_count_range(raw: list[int], lux: float) -> None:
    assert decode_lux(*raw) == lux


def test_model_encodes_the_datasheet_example() -> None:
    raw, lux = DATASHEET_EXAMPLE
    assert encode_lux(lux) == tuple(raw)


def on_simulated_bus(lux: list[float], address: int = 0x23) -> tuple[BH1750, SimulatedBus]:
    bus = SimulatedBus()
    bus.attach(address, SimulatedBH1750(lambda: lux[0]))
    return BH1750(bus, address, sleep=lambda seconds: None), bus


@given(st.floats(min_value=0.0, max_value=65535 / 1.2))
def test_round_trip_within_half_a_count(lux: float) -> None:
    driver, _ = on_simulated_bus([lux])
    assert abs(driver.read()["illuminance"] - lux) <= 1 / 1.2 / 2 + 1e-9


@pytest.mark.parametrize(("lux", "expected"), [(100000.0, 65535 / 1.2), (-5.0, 0.0)])
def test_model_clips_to_the_count_range(lux: float, expected: float) -> None:
    driver, _ = on_simulated_bus([lux])
    assert driver.read() == {"illuminance": expected}


def test_each_read_measures_afresh() -> None:
    lux = [120.0]
    driver, _ = on_simulated_bus(lux)
    assert driver.read() == {"illuminance": 120.0}
    lux[0] = 5.0  # 6 counts
    assert driver.read() == {"illuminance": 5.0}


def test_model_one_time_measurement_holds_its_result_and_powers_down() -> None:
    lux = [300.0]
    chip = SimulatedBH1750(lambda: lux[0])
    bus = SimulatedBus()
    bus.attach(0x23, chip)
    bus.write_byte(0x23, 0x01)
    assert chip.powered
    bus.write_byte(0x23, 0x20)
    assert not chip.powered  # back in power-down after the measurement
    lux[0] = 10.0
    message = i2c_msg.read(0x23, 2)
    bus.i2c_rdwr(message)
    assert list(message) == [0x01, 0x68]  # 360 counts: 300 lx, not the newer 10 lx


def test_model_continuous_mode_measures_on_each_read_until_power_down() -> None:
    lux = [50.0]
    chip = SimulatedBH1750(lambda: lux[0])
    bus = SimulatedBus()
    bus.attach(0x23, chip)
    bus.write_byte(0x23, 0x10)
    assert bus.read_byte(0x23) == 0x00  # 60 counts: high byte
    lux[0] = 1000.0
    message = i2c_msg.read(0x23, 2)
    bus.i2c_rdwr(message)
    assert list(message) == [0x04, 0xB0]  # 1200 counts
    bus.write_byte(0x23, 0x00)
    lux[0] = 5.0
    bus.i2c_rdwr(message)
    assert list(message) == [0x04, 0xB0]  # powered down: the last result stays


def test_model_reset_clears_the_result_only_when_powered() -> None:
    chip = SimulatedBH1750(lambda: 100.0)
    bus = SimulatedBus()
    bus.attach(0x23, chip)
    bus.write_byte(0x23, 0x20)
    bus.write_byte(0x23, 0x07)  # ignored in power-down
    assert chip.data == 120
    bus.write_byte(0x23, 0x01)
    bus.write_byte(0x23, 0x07)
    assert chip.data == 0


def test_model_takes_one_opcode_per_write() -> None:
    chip = SimulatedBH1750(lambda: 100.0)
    bus = SimulatedBus()
    bus.attach(0x23, chip)
    bus.write_byte_data(0x23, 0x01, 0x20)  # two bytes without a stop: only the first counts
    assert chip.powered
    assert chip.data == 0


@pytest.mark.parametrize("opcode", [0x11, 0x13, 0x21, 0x23, 0x42, 0x7F])
def test_model_refuses_instructions_it_does_not_model(opcode: int) -> None:
    bus = SimulatedBus()
    bus.attach(0x23, SimulatedBH1750(lambda: 1.0))
    with pytest.raises(NotImplementedError, match=f"instruction 0x{opcode:02X}"):
        bus.write_byte(0x23, opcode)


def test_missing_chip_raises_oserror_121() -> None:
    driver, bus = on_simulated_bus([10.0])
    bus.detach(0x23)
    with pytest.raises(OSError) as info:
        driver.read()
    assert info.value.errno == 121


@pytest.mark.parametrize("address", [0x00, 0x22, 0x24, 0x5B, 0x5D])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x23 (ADDR low) or 0x5C (ADDR high)")):
        BH1750(SimulatedBus(), address)


def test_params_refuse_addresses_between_the_two() -> None:
    with pytest.raises(ValueError, match=r"0x23 .* or 0x5C"):
        BH1750Params(address=0x40)
    assert BH1750Params().address == 0x23


def test_model_takes_a_register_reads_byte_as_an_instruction_after_the_read() -> None:
    chip = SimulatedBH1750(lambda: 100.0)
    bus = SimulatedBus()
    bus.attach(0x23, chip)
    # The common shortcut read_i2c_block_data(addr, 0x20, 2) reads the old result (0
    # here) while the 0x20 it sends starts a new measurement.
    assert bus.read_i2c_block_data(0x23, 0x20, 2) == [0x00, 0x00]
    assert chip.data == 120


def hardware(bus: SimulatedBus, sleep: Callable[[float], None] = lambda s: None) -> Hardware:
    return Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0, sleep=sleep)


def test_registry_entry_builds_a_working_sensor() -> None:
    sleeps: list[float] = []
    bus = SimulatedBus()
    bus.attach(0x5C, SimulatedBH1750(lambda: 480.0))
    sensor = SENSOR_TYPE.build(BH1750Params(address=0x5C), hardware(bus, sleeps.append))
    assert isinstance(sensor, BH1750Sensor)
    assert (sensor.unit, sensor.read()) == ("lx", 480.0)
    assert sleeps == [0.180]
    sensor.close()
    bus.write_byte(0x5C, 0x01)  # the shared bus stays open


def test_simulate_feeds_the_illuminance_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    asked: list[tuple[str, float]] = []

    def signal(quantity: str, typical: float) -> Any:
        asked.append((quantity, typical))
        return lambda: 750.0

    part = simulate(BH1750Params(bus=0, address=0x5C), signal)
    assert (part.bus, part.address, asked) == (0, 0x5C, [("illuminance", 300.0)])
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    sensor = SENSOR_TYPE.build(BH1750Params(address=0x5C), hardware(bus))
    assert isinstance(sensor, BH1750Sensor)
    assert sensor.read() == 750.0


@pytest.mark.hardware
def test_real_chip_reads_a_plausible_illuminance() -> None:
    with i2c_chip("BH1750", 0x23) as (bus, address):
        assert 0.0 <= BH1750(bus, address).read()["illuminance"] <= 65535 / 1.2
