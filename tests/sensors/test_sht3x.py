"""SHT3x driver against datasheet vectors, and through its model on SimulatedBus (plain
reads through i2c_rdwr)."""

import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from smbus2 import i2c_msg

from sensors import Hardware, SensorConfigError, SensorError, Signal, SimulatedBus
from sensors.errors import CRCError
from sensors.ports import I2C_M_RD
from sensors.sht3x import SENSOR_TYPE, SHT3x, SHT3xParams, crc8, encode_humidity, encode_temperature
from sensors.sim.sht3x import SimulatedSHT3x, simulate
from tests.sensors.hardware import i2c_chip

T_LSB = 175.0 / 65535.0
RH_LSB = 100.0 / 65535.0


def crc8_by_division(data: bytes) -> int:
    """An independent CRC-8: the remainder of data * x^8 over GF(2) by x^8+x^5+x^4+1 (0x131),
    with the init value 0xFF folded into the first byte (no reflection, no final XOR)."""
    n = (int.from_bytes(data, "big") ^ 0xFF << 8 * (len(data) - 1)) << 8
    for bit in range(n.bit_length() - 1, 7, -1):
        if n >> bit & 1:
            n ^= 0x131 << (bit - 8)
    return n


class ReplayBus:
    """Answers plain reads with canned bytes and records every transfer and sleep."""

    def __init__(self, result: Sequence[int]) -> None:
        self.result = list(result)
        self.calls: list[tuple[object, ...]] = []

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        self.calls.append(("write_block", i2c_addr, register, list(data)))

    def i2c_rdwr(self, *i2c_msgs: Any) -> None:
        self.calls.append(("rdwr", [(m.addr, m.flags, m.len) for m in i2c_msgs]))
        for i, byte in enumerate(self.result):
            i2c_msgs[0].buf[i] = byte

    def sleep(self, seconds: float) -> None:
        self.calls.append(("sleep", seconds))

    def _unused(self, *args: object) -> Any:
        raise AssertionError("the SHT3x driver sends commands and makes plain reads only")

    read_byte = write_byte = read_byte_data = write_byte_data = _unused
    read_word_data = write_word_data = read_i2c_block_data = close = _unused


def result(t_raw: int, rh_raw: int) -> list[int]:
    t, rh = bytes((t_raw >> 8, t_raw & 0xFF)), bytes((rh_raw >> 8, rh_raw & 0xFF))
    return [*t, crc8_by_division(t), *rh, crc8_by_division(rh)]


# -- 1. datasheet vectors, transfer bytes ---------------------------------------------------


def test_crc_of_the_datasheet_example() -> None:
    assert crc8(bytes([0xBE, 0xEF])) == 0x92  # SHT3x-DIS 4.12
    assert crc8_by_division(bytes([0xBE, 0xEF])) == 0x92


@given(st.binary(min_size=1, max_size=8))
def test_crc_agrees_with_polynomial_division(data: bytes) -> None:
    assert crc8(data) == crc8_by_division(data)
    assert crc8(data + bytes([crc8(data)])) == 0  # no final XOR: a word and its CRC check to 0


@pytest.mark.parametrize(
    ("t_raw", "rh_raw", "celsius", "percent"),
    [
        # T = -45 + 175 * raw / 65535, RH = 100 * raw / 65535 (datasheet 4.13)
        (0x0000, 0x0000, -45.0, 0.0),
        (0xFFFF, 0xFFFF, 130.0, 100.0),
        (0x6666, 0x6666, 25.0, 40.0),  # 0x6666 / 0xFFFF = 0.4 exactly
        (0x3333, 0xCCCC, -10.0, 80.0),
    ],
)
def test_driver_decodes_the_datasheet_conversion(
    t_raw: int, rh_raw: int, celsius: float, percent: float
) -> None:
    bus = ReplayBus(result(t_raw, rh_raw))
    reading = SHT3x(bus, 0x45, sleep=bus.sleep).read()
    assert reading == pytest.approx({"temperature": celsius, "humidity": percent}, abs=1e-12)


@pytest.mark.parametrize(
    ("repeatability", "command", "wait"),
    [("high", 0x2400, 0.0155), ("medium", 0x240B, 0.0065), ("low", 0x2416, 0.0045)],
)
def test_driver_sends_a_single_shot_command_waits_and_makes_a_plain_read(
    repeatability: Any, command: int, wait: float
) -> None:
    bus = ReplayBus(result(0x6666, 0x8000))
    SHT3x(bus, repeatability=repeatability, sleep=bus.sleep).read()
    assert bus.calls == [
        ("write_block", 0x44, command >> 8, [command & 0xFF]),
        ("sleep", wait),
        ("rdwr", [(0x44, I2C_M_RD, 6)]),  # one read message: no register byte is written
    ]


@pytest.mark.parametrize(
    ("index", "word"), [(2, "temperature"), (5, "humidity"), (1, "temperature"), (3, "humidity")]
)
def test_a_crc_mismatch_raises_crc_error(index: int, word: str) -> None:
    data = result(0x6666, 0x8000)
    data[index] ^= 0x04
    bus = ReplayBus(data)
    with pytest.raises(CRCError, match=f"{word}.*expected") as info:
        SHT3x(bus, sleep=bus.sleep).read()
    assert isinstance(info.value, OSError) and isinstance(info.value, SensorError)


# -- 2. the driver against the model --------------------------------------------------------


def on_simulated_bus(
    values: dict[str, float], address: int = 0x44
) -> tuple[SHT3x, SimulatedSHT3x, SimulatedBus]:
    bus = SimulatedBus()
    chip = SimulatedSHT3x(lambda: values["temperature"], lambda: values["humidity"])
    bus.attach(address, chip)
    return SHT3x(bus, address, sleep=lambda s: None), chip, bus


@given(st.floats(-45.0, 130.0), st.floats(0.0, 100.0))
def test_round_trip_within_half_an_lsb(celsius: float, percent: float) -> None:
    driver, _, _ = on_simulated_bus({"temperature": celsius, "humidity": percent})
    reading = driver.read()
    assert abs(reading["temperature"] - celsius) <= T_LSB / 2 + 1e-9
    assert abs(reading["humidity"] - percent) <= RH_LSB / 2 + 1e-9


def test_model_clamps_to_what_a_word_can_carry() -> None:
    driver, _, _ = on_simulated_bus({"temperature": 150.0, "humidity": -5.0}, address=0x45)
    assert driver.read() == {"temperature": 130.0, "humidity": 0.0}
    assert (encode_temperature(-60.0), encode_humidity(120.0)) == (0, 0xFFFF)


def test_each_read_samples_the_signals_afresh() -> None:
    values = {"temperature": 20.0, "humidity": 40.0}
    driver, chip, _ = on_simulated_bus(values)
    assert abs(driver.read()["temperature"] - 20.0) <= T_LSB
    values.update(temperature=-12.5, humidity=77.0)
    assert driver.read() == pytest.approx({"temperature": -12.5, "humidity": 77.0}, abs=T_LSB)
    assert chip.commands == [0x2400, 0x2400]


def test_corrupt_crc_injects_that_many_crc_errors() -> None:
    driver, chip, _ = on_simulated_bus({"temperature": 20.0, "humidity": 40.0})
    chip.corrupt_crc = 2
    for _ in range(2):
        with pytest.raises(CRCError):
            driver.read()
    assert abs(driver.read()["humidity"] - 40.0) <= RH_LSB
    assert chip.corrupt_crc == 0


def test_model_nacks_a_read_with_no_result_pending() -> None:
    _, _, bus = on_simulated_bus({"temperature": 20.0, "humidity": 40.0})
    bus.write_i2c_block_data(0x44, 0x24, [0x00])
    bus.i2c_rdwr(i2c_msg.read(0x44, 6))  # the result, once
    with pytest.raises(OSError) as info:
        bus.i2c_rdwr(i2c_msg.read(0x44, 6))
    assert info.value.errno == 121
    bus.write_i2c_block_data(0x44, 0x24, [0x16])
    bus.write_i2c_block_data(0x44, 0x30, [0xA2])  # soft reset drops the pending result
    with pytest.raises(OSError, match="no measurement result"):
        bus.i2c_rdwr(i2c_msg.read(0x44, 6))


def test_model_refuses_a_register_style_read() -> None:
    _, _, bus = on_simulated_bus({"temperature": 20.0, "humidity": 40.0})
    bus.write_i2c_block_data(0x44, 0x24, [0x00])
    with pytest.raises(OSError, match="no registers") as info:
        bus.read_i2c_block_data(0x44, 0x00, 6)  # writes 0x00 first: half a command
    assert info.value.errno == 121


def test_model_ignores_commands_it_does_not_know() -> None:
    driver, chip, bus = on_simulated_bus({"temperature": 20.0, "humidity": 40.0})
    bus.write_i2c_block_data(0x44, 0x30, [0x66])  # heater off: not modelled
    bus.write_i2c_block_data(0x44, 0x61, [0x1D, 0x00, 0x00])  # with arguments: not modelled
    assert chip.commands == [0x3066]
    assert abs(driver.read()["temperature"] - 20.0) <= T_LSB


def test_missing_chip_raises_oserror_121() -> None:
    driver, _, bus = on_simulated_bus({"temperature": 20.0, "humidity": 40.0})
    bus.detach(0x44)
    with pytest.raises(OSError) as info:
        driver.read()
    assert info.value.errno == 121


# -- 3. configuration errors ----------------------------------------------------------------


@pytest.mark.parametrize("address", [0x00, 0x43, 0x46, 0x76])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x44 or 0x45")):
        SHT3x(SimulatedBus(), address)


def test_constructor_refuses_an_unknown_repeatability() -> None:
    with pytest.raises(SensorConfigError, match="'high', 'medium' or 'low'"):
        SHT3x(SimulatedBus(), repeatability="best")  # type: ignore[arg-type]


# -- 4. the registry entry ------------------------------------------------------------------


def test_registry_entry_builds_a_sensor_that_reads_the_simulated_part() -> None:
    params = SHT3xParams(address=0x45, repeatability="low")
    signals: dict[str, float] = {}

    def signal(quantity: str, typical: float) -> Signal:
        signals[quantity] = typical
        return lambda: signals[quantity]

    part = simulate(params, signal)
    assert (part.bus, part.address) == (1, 0x45)
    assert signals == {"temperature": 21.0, "humidity": 45.0}
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    hardware = Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0)
    sensor: Any = SENSOR_TYPE.build(params, hardware)
    assert sensor.unit == ""
    reading = sensor.read()
    assert isinstance(reading, dict)
    assert reading.keys() == SENSOR_TYPE.units.keys() == SENSOR_TYPE.limits.keys()
    assert reading == pytest.approx(signals, abs=T_LSB)
    assert isinstance(part.chip, SimulatedSHT3x) and part.chip.commands == [0x2416]
    sensor.close()
    sensor.close()
    assert abs(sensor.read()["humidity"] - 45.0) <= RH_LSB  # close() left the bus open


@pytest.mark.hardware
def test_real_chip_reads_plausible_values() -> None:
    with i2c_chip("SHT3x", 0x44) as (bus, address):
        reading = SHT3x(bus, address).read()
    assert -40.0 <= reading["temperature"] <= 125.0
    assert 0.0 <= reading["humidity"] <= 100.0
