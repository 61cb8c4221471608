"""TMP102 driver against datasheet vectors, and through its chip model on SimulatedBus."""

import re
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import TMP102, SensorConfigError, SimulatedBus, SimulatedTMP102
from sensors.tmp102 import decode_temperature, encode_temperature
from tests.sensors.hardware import i2c_chip

LSB = 0.0625


class ReplayBus:
    """Answers block reads with canned register bytes and records every transfer."""

    def __init__(self, registers: dict[int, list[int]]) -> None:
        self.registers = registers
        self.calls: list[tuple[object, ...]] = []

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self.calls.append(("read_block", i2c_addr, register, length))
        return self.registers[register][:length]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        self.calls.append(("write_block", i2c_addr, register, list(data)))
        self.registers[register] = list(data)

    def _unused(self, *args: object) -> Any:
        raise AssertionError("the TMP102 driver uses only i2c block transfers")

    read_byte = write_byte = read_byte_data = write_byte_data = _unused
    read_word_data = write_word_data = close = _unused


# TMP102 datasheet (SBOS397), 12-bit temperature data format, as raw register values.
DATASHEET_12_BIT = [
    (127.9375, 0x7FF0),
    (100.0, 0x6400),
    (80.0, 0x5000),
    (75.0, 0x4B00),
    (50.0, 0x3200),
    (25.0, 0x1900),
    (0.25, 0x0040),
    (0.0, 0x0000),
    (-0.25, 0xFFC0),
    (-25.0, 0xE700),
    (-55.0, 0xC900),
]
# 13-bit (extended mode) format: left-aligned 13 bits with bit 0 set to flag the format.
DATASHEET_13_BIT = [
    (150.0, 0x4B01),
    (128.0, 0x4001),
    (127.9375, 0x3FF9),
    (0.0, 0x0001),
    (-0.25, 0xFFE1),
    (-55.0, 0xE481),
]


@pytest.mark.parametrize(("celsius", "raw"), DATASHEET_12_BIT + DATASHEET_13_BIT)
def test_driver_decodes_datasheet_outputs(celsius: float, raw: int) -> None:
    bus = ReplayBus({0x00: [raw >> 8, raw & 0xFF]})
    assert TMP102(bus, 0x49).read() == {"temperature": celsius}
    assert bus.calls == [("read_block", 0x49, 0x00, 2)]


@pytest.mark.parametrize(("celsius", "raw"), DATASHEET_12_BIT)
def test_model_encodes_datasheet_outputs_in_normal_mode(celsius: float, raw: int) -> None:
    assert encode_temperature(celsius) == (raw >> 8, raw & 0xFF)


@pytest.mark.parametrize(("celsius", "raw"), DATASHEET_13_BIT)
def test_model_encodes_datasheet_outputs_in_extended_mode(celsius: float, raw: int) -> None:
    assert encode_temperature(celsius, extended=True) == (raw >> 8, raw & 0xFF)


@pytest.mark.parametrize("address", [0x00, 0x47, 0x4C, 0x77])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x48..0x4B")):
        TMP102(ReplayBus({}), address)
    assert issubclass(SensorConfigError, ValueError)


def on_simulated_bus(temperature: list[float], address: int = 0x48) -> tuple[TMP102, SimulatedBus]:
    bus = SimulatedBus()
    bus.attach(address, SimulatedTMP102(lambda: temperature[0]))
    return TMP102(bus, address), bus


@given(st.floats(min_value=-55.0, max_value=127.9375))
def test_round_trip_within_half_an_lsb(celsius: float) -> None:
    driver, _ = on_simulated_bus([celsius])
    assert abs(driver.read()["temperature"] - celsius) <= LSB / 2


@given(st.floats(min_value=-55.0, max_value=150.0))
def test_round_trip_within_half_an_lsb_in_extended_mode(celsius: float) -> None:
    driver, _ = on_simulated_bus([celsius])
    driver.extended_mode = True
    assert abs(driver.read()["temperature"] - celsius) <= LSB / 2


@pytest.mark.parametrize(
    ("celsius", "extended", "expected"),
    [
        (200.0, False, 127.9375),
        (128.0, False, 127.9375),
        (200.0, True, 150.0),
        (-90.0, False, -55.0),
    ],
)
def test_model_clamps_to_the_chip_range(celsius: float, extended: bool, expected: float) -> None:
    driver, _ = on_simulated_bus([celsius])
    driver.extended_mode = extended
    assert driver.read() == {"temperature": expected}


def test_each_read_samples_the_signal_afresh() -> None:
    temperature = [21.0]
    driver, _ = on_simulated_bus(temperature)
    assert driver.read()["temperature"] == 21.0
    temperature[0] = 22.5
    assert driver.read()["temperature"] == 22.5


def test_config_powers_up_as_0x60a0_and_keeps_read_only_bits() -> None:
    driver, bus = on_simulated_bus([20.0])
    assert bus.read_i2c_block_data(0x48, 0x01, 2) == [0x60, 0xA0]
    assert driver.extended_mode is False
    driver.extended_mode = True
    assert bus.read_i2c_block_data(0x48, 0x01, 2) == [0x60, 0xB0]
    assert driver.extended_mode is True
    bus.write_i2c_block_data(0x48, 0x01, [0x00, 0x00])
    assert bus.read_i2c_block_data(0x48, 0x01, 2) == [0x60, 0x20]  # R1/R0 and AL stay


def test_extended_mode_switch_is_a_read_modify_write_of_the_em_bit() -> None:
    bus = ReplayBus({0x01: [0x60, 0xA0]})
    TMP102(bus).extended_mode = True
    assert bus.calls[-1] == ("write_block", 0x48, 0x01, [0x60, 0xB0])


def test_temperature_register_ignores_writes() -> None:
    driver, bus = on_simulated_bus([20.0])
    bus.write_i2c_block_data(0x48, 0x00, [0x7F, 0xF0])
    assert driver.read()["temperature"] == 20.0


def test_missing_chip_raises_oserror_121() -> None:
    driver, bus = on_simulated_bus([20.0], address=0x48)
    bus.detach(0x48)
    with pytest.raises(OSError) as info:
        driver.read()
    assert info.value.errno == 121


@given(st.integers(min_value=0, max_value=0xFFFF))
def test_decode_inverts_encode_on_every_register_value(raw: int) -> None:
    celsius = decode_temperature(raw >> 8, raw & 0xFF)
    extended = bool(raw & 1)
    # Only values inside the chip's range are ever produced by the model.
    if -55.0 <= celsius <= (150.0 if extended else 127.9375):
        msb, lsb = encode_temperature(celsius, extended=extended)
        unused = 0x0006 if extended else 0x000F  # bits that always read 0 (and the flag)
        assert (msb << 8 | lsb) == (raw & ~unused) | (1 if extended else 0)


@pytest.mark.hardware
def test_real_chip_reads_a_plausible_temperature() -> None:
    with i2c_chip("TMP102", 0x48) as (bus, address):
        assert -55.0 <= TMP102(bus, address).read()["temperature"] <= 150.0
