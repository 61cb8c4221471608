"""BME280 driver against the datasheet's worked example, and through its model on SimulatedBus."""

import re
import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import Hardware, SensorConfigError, SensorError, SensorTimeout, Signal, SimulatedBus
from sensors.bme280 import (
    BME280,
    CALIB_H,
    CALIB_TP,
    CHIP_ID,
    CONFIG,
    CTRL_HUM,
    CTRL_MEAS,
    DATA,
    EXAMPLE_CALIBRATION,
    RESET,
    SENSOR_TYPE,
    STATUS,
    STATUS_POLLS,
    BME280Params,
    Calibration,
    compensate,
    compensate_humidity,
    measurement_time,
    t_fine,
)
from sensors.sim.bme280 import SimulatedBME280, simulate
from tests.sensors.hardware import i2c_chip

# BMP280 datasheet (BST-BMP280-DS001) 3.12, table 15: the worked compensation example; the
# BME280 uses the same temperature and pressure compensation.
ADC_T = 519888
ADC_P = 415148
# Calibration bytes at 0x88..0xA1 written out by hand (little-endian words), not by the
# module's encoder: T1 27504, T2 26435, T3 -1000, P1 36477, P2 -10685, P3 3024, P4 2855,
# P5 140, P6 -7, P7 15500, P8 -14600, P9 6000, 0xA0 unused, H1 75.
CALIB_TP_BYTES = bytes.fromhex("706b 4367 18fc 7d8e 43d6 d00b 270b 8c00 f9ff 8c3c f8c6 7017 00 4b")
# 0xE1..0xE7: H2 362 (0x016A), H3 0, H4 313 = 0x139 -> 0xE4 0x13, 0xE5[3:0] 0x9,
# H5 50 = 0x032 -> 0xE6 0x03, 0xE5[7:4] 0x2, H6 30.
CALIB_H_BYTES = bytes.fromhex("6a01 00 13 29 03 1e")
# A humidity reading pinned from the datasheet's 32-bit integer formula (int_humidity below)
# at the worked example's temperature, cross-checked against the driver's double formula.
ADC_H = 0x6A2C
INT_HUMIDITY_Q22_10 = 40220  # 39.277 %RH (the double formula: 39.281)


class RegisterBus:
    """A fixed 256-byte register map that records every transfer; no chip logic at all."""

    def __init__(self, registers: dict[int, bytes], status: Sequence[int] = ()) -> None:
        self.map = bytearray(256)
        for start, data in registers.items():
            self.map[start : start + len(data)] = data
        self.status = list(status)  # scripted status reads, then 0x00
        self.calls: list[tuple[object, ...]] = []

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        self.calls.append(("read", i2c_addr, register))
        if register == STATUS:
            return self.status.pop(0) if self.status else 0x00
        return self.map[register]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self.calls.append(("write", i2c_addr, register, value))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self.calls.append(("read_block", i2c_addr, register, length))
        return list(self.map[register : register + length])

    def _unused(self, *args: object) -> Any:
        raise AssertionError("the BME280 driver uses byte and block register transfers only")

    read_byte = write_byte = read_word_data = write_word_data = _unused
    write_i2c_block_data = close = _unused


def data_bytes(adc_p: int, adc_t: int, adc_h: int) -> bytes:
    return bytes(
        (
            *(adc_p >> 12, adc_p >> 4 & 0xFF, (adc_p & 0xF) << 4),
            *(adc_t >> 12, adc_t >> 4 & 0xFF, (adc_t & 0xF) << 4),
            *(adc_h >> 8, adc_h & 0xFF),
        )
    )


def example_bus(adc_h: int = ADC_H, chip_id: int = 0x60) -> RegisterBus:
    return RegisterBus(
        {
            CHIP_ID: bytes([chip_id]),
            CALIB_TP: CALIB_TP_BYTES,
            CALIB_H: CALIB_H_BYTES,
            DATA: data_bytes(ADC_P, ADC_T, adc_h),
        },
        status=[0x01, 0x00, 0x08, 0x00],  # im_update once after reset, measuring once
    )


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# -- the datasheet's integer formulas (BME280 datasheet 4.2.3), written independently ----


def int_t_fine(cal: Calibration, adc_t: int) -> int:
    var1 = (((adc_t >> 3) - (cal.t1 << 1)) * cal.t2) >> 11
    var2 = (((((adc_t >> 4) - cal.t1) * ((adc_t >> 4) - cal.t1)) >> 12) * cal.t3) >> 14
    return var1 + var2


def int_pressure_q24_8(cal: Calibration, fine: int, adc_p: int) -> int:
    var1 = fine - 128000
    var2 = var1 * var1 * cal.p6
    var2 = var2 + ((var1 * cal.p5) << 17)
    var2 = var2 + (cal.p4 << 35)
    var1 = ((var1 * var1 * cal.p3) >> 8) + ((var1 * cal.p2) << 12)
    var1 = (((1 << 47) + var1) * cal.p1) >> 33
    p = 1048576 - adc_p
    numerator = ((p << 31) - var2) * 3125
    p = abs(numerator) // var1 * (1 if numerator >= 0 else -1)  # C division truncates
    var1 = (cal.p9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.p8 * p) >> 19
    return ((p + var1 + var2) >> 8) + (cal.p7 << 4)


def int_humidity_q22_10(cal: Calibration, fine: int, adc_h: int) -> int:
    x = fine - 76800
    v = (((adc_h << 14) - (cal.h4 << 20) - (cal.h5 * x)) + 16384) >> 15
    v = v * (
        (
            (((((x * cal.h6) >> 10) * (((x * cal.h3) >> 11) + 32768)) >> 10) + 2097152) * cal.h2
            + 8192
        )
        >> 14
    )
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.h1) >> 4)
    v = min(max(v, 0), 419430400)
    return v >> 12


# -- 1. datasheet vectors, register bytes ---------------------------------------------------


def test_worked_example_through_the_driver() -> None:
    bus = example_bus()
    reading = BME280(bus, 0x77, sleep=Sleeps()).read()
    assert round(reading["temperature"], 2) == 25.08
    assert round(reading["pressure"] * 100, 2) == 100653.27  # hPa -> Pa
    assert abs(reading["humidity"] - INT_HUMIDITY_Q22_10 / 1024) < 0.01


def test_worked_example_in_the_datasheets_integer_arithmetic() -> None:
    fine = int_t_fine(EXAMPLE_CALIBRATION, ADC_T)
    assert fine == 128422
    assert (fine * 5 + 128) >> 8 == 2508  # 25.08 degC in 0.01 degC
    pressure = int_pressure_q24_8(EXAMPLE_CALIBRATION, fine, ADC_P)
    assert pressure >> 8 == 100653  # Pa; the datasheet's double result is 100653.27
    assert abs(pressure / 256 - 100653.27) < 0.05
    assert int_humidity_q22_10(EXAMPLE_CALIBRATION, fine, ADC_H) == INT_HUMIDITY_Q22_10


def test_driver_writes_the_datasheet_sequence() -> None:
    bus, sleeps = example_bus(), Sleeps()
    BME280(bus, 0x76, sleep=sleeps).read()
    a = 0x76
    assert bus.calls == [
        ("read", a, CHIP_ID),
        ("write", a, RESET, 0xB6),
        ("read", a, STATUS),  # im_update set: the NVM copy is running
        ("read", a, STATUS),
        ("read_block", a, CALIB_TP, 26),
        ("read_block", a, CALIB_H, 7),
        ("write", a, CONFIG, 0x00),
        ("write", a, CTRL_HUM, 0x01),  # before ctrl_meas, which latches it
        ("write", a, CTRL_MEAS, 0b001_001_01),  # osrs_t x1, osrs_p x1, forced
        ("read", a, STATUS),  # measuring
        ("read", a, STATUS),
        ("read_block", a, DATA, 8),
    ]
    assert sleeps == [0.002, 0.001, pytest.approx(0.0093), 0.001]  # 9.3 ms: datasheet 9.1


def test_oversampling_and_filter_reach_the_registers() -> None:
    bus, sleeps = example_bus(), Sleeps()
    driver = BME280(
        bus,
        oversampling_temperature=16,
        oversampling_pressure=2,
        oversampling_humidity=8,
        iir_filter=4,
        sleep=sleeps,
    )
    driver.read()
    writes = {call[2]: call[3] for call in bus.calls if call[0] == "write"}
    assert writes[CONFIG] == 0b010 << 2
    assert writes[CTRL_HUM] == 0b100
    assert writes[CTRL_MEAS] == 0b101_010_01
    assert (
        sleeps[2] == pytest.approx(measurement_time(16, 2, 8)) == pytest.approx(0.0622)
    )  # 1.25 + 36.8 + 5.175 + 18.975 ms


def test_only_the_first_read_sets_the_chip_up() -> None:
    bus = example_bus()
    driver = BME280(bus, sleep=Sleeps())
    driver.read()
    bus.calls.clear()
    driver.read()
    assert [c[2] for c in bus.calls] == [CTRL_HUM, CTRL_MEAS, STATUS, DATA]


@pytest.mark.parametrize(
    ("raw", "field"),
    [((0x80000, ADC_T, ADC_H), "P"), ((ADC_P, 0x80000, ADC_H), "T"), ((ADC_P, ADC_T, 0x8000), "H")],
)
def test_a_skipped_measurement_is_an_error_and_sets_the_chip_up_again(
    raw: tuple[int, int, int], field: str
) -> None:
    bus = example_bus()
    bus.map[DATA : DATA + 8] = data_bytes(*raw)
    driver = BME280(bus, sleep=Sleeps())
    with pytest.raises(SensorError, match=f"skipped a measurement.*{field} 0x8000"):
        driver.read()
    bus.calls.clear()
    bus.map[DATA : DATA + 8] = data_bytes(ADC_P, ADC_T, ADC_H)
    assert round(driver.read()["temperature"], 2) == 25.08
    assert bus.calls[0] == ("read", 0x76, CHIP_ID)


@pytest.mark.parametrize(("found", "hint"), [(0x58, "BMP280"), (0x00, "0x00"), (0x61, "0x61")])
def test_a_wrong_chip_id_names_expected_and_found(found: int, hint: str) -> None:
    driver = BME280(example_bus(chip_id=found), sleep=Sleeps())
    with pytest.raises(SensorError, match=f"0x60.*{hint}|{hint}.*0x60") as info:
        driver.read()
    assert f"{found:#04x}" in str(info.value)


def test_a_stuck_measuring_bit_gives_up_after_bounded_polls() -> None:
    bus = example_bus()
    driver = BME280(bus, sleep=Sleeps())
    driver.read()
    bus.status = [0x08] * 100
    with pytest.raises(SensorTimeout, match=f"still set after {STATUS_POLLS} polls") as info:
        driver.read()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, SensorError)
    assert len(bus.status) == 100 - STATUS_POLLS


def test_calibration_nibble_packing_of_h4_and_h5() -> None:
    # 0xE4 = 0xFE, 0xE5 = 0xA3, 0xE6 = 0x80: H4 = 0xFE3 = -29, H5 = 0x80A = -2038.
    h = bytes.fromhex("6a01 00 fe a3 80 e2")
    cal = Calibration.from_registers(CALIB_TP_BYTES, h)
    assert (cal.h2, cal.h3, cal.h4, cal.h5, cal.h6) == (362, 0, -29, -2038, -30)
    assert cal.to_registers() == (CALIB_TP_BYTES, h)
    assert Calibration.from_registers(CALIB_TP_BYTES, CALIB_H_BYTES) == EXAMPLE_CALIBRATION


u16 = st.integers(0, 0xFFFF)
s16 = st.integers(-0x8000, 0x7FFF)
s12 = st.integers(-2048, 2047)
u8 = st.integers(0, 0xFF)
s8 = st.integers(-128, 127)


@given(st.tuples(u16, s16, s16, u16, *[s16] * 8, u8, s16, u8, s12, s12, s8))
def test_calibration_registers_round_trip(values: tuple[int, ...]) -> None:
    cal = Calibration(*values)
    tp, h = cal.to_registers()
    assert (len(tp), len(h)) == (26, 7)
    assert Calibration.from_registers(tp, h) == cal
    assert struct.unpack_from("<H", tp)[0] == cal.t1  # dig_T1 at 0x88, low byte first


@given(
    st.integers(310_000, 710_000),  # adc_t over about -40..85 degC
    st.integers(0, 0xFFFF),
)
def test_double_humidity_agrees_with_the_integer_formula(adc_t: int, adc_h: int) -> None:
    fine = int_t_fine(EXAMPLE_CALIBRATION, adc_t)
    expected = int_humidity_q22_10(EXAMPLE_CALIBRATION, fine, adc_h) / 1024
    actual = compensate_humidity(EXAMPLE_CALIBRATION, t_fine(EXAMPLE_CALIBRATION, adc_t), adc_h)
    assert abs(actual - expected) <= 0.01


@given(st.integers(310_000, 710_000), st.integers(300_000, 700_000))
def test_double_temperature_and_pressure_agree_with_the_integer_formulas(
    adc_t: int, adc_p: int
) -> None:
    fine = int_t_fine(EXAMPLE_CALIBRATION, adc_t)
    reading = compensate(EXAMPLE_CALIBRATION, adc_t, adc_p, ADC_H)
    assert abs(reading["temperature"] - ((fine * 5 + 128) >> 8) / 100) <= 0.01
    pressure = int_pressure_q24_8(EXAMPLE_CALIBRATION, fine, adc_p) / 256
    # The integer code drops t_fine's fraction and rounds its terms: up to ~0.5 Pa apart
    # (a few 20-bit ADC steps; the chip's relative accuracy is 12 Pa).
    assert abs(reading["pressure"] * 100 - pressure) <= 0.5


# -- 2. the driver against the model on SimulatedBus ----------------------------------------


def on_simulated_bus(
    values: dict[str, float], address: int = 0x76, **options: Any
) -> tuple[BME280, SimulatedBME280, SimulatedBus]:
    bus = SimulatedBus()
    chip = SimulatedBME280(
        lambda: values["temperature"], lambda: values["pressure"], lambda: values["humidity"]
    )
    bus.attach(address, chip)
    return BME280(bus, address, sleep=Sleeps(), **options), chip, bus


@given(
    st.floats(-40.0, 85.0),
    st.floats(300.0, 1100.0),
    st.floats(0.0, 100.0),
)
def test_round_trip_within_resolution(temperature: float, pressure: float, humidity: float) -> None:
    values = {"temperature": temperature, "pressure": pressure, "humidity": humidity}
    driver, _, _ = on_simulated_bus(values)
    reading = driver.read()
    assert reading.keys() == {"temperature", "pressure", "humidity"}
    # Half a 20-bit (T, P) or 16-bit (H) ADC step of the example calibration, and a margin.
    assert abs(reading["temperature"] - temperature) <= 0.0002
    assert abs(reading["pressure"] - pressure) <= 0.001
    assert abs(reading["humidity"] - humidity) <= 0.004


def test_model_clamps_to_the_operating_range() -> None:
    values = {"temperature": 120.0, "pressure": 50.0, "humidity": 130.0}
    driver, _, _ = on_simulated_bus(values)
    reading = driver.read()
    assert abs(reading["temperature"] - 85.0) < 0.001
    assert abs(reading["pressure"] - 300.0) < 0.001
    assert reading["humidity"] == 100.0


def test_each_read_is_one_forced_measurement_of_fresh_signals() -> None:
    values = {"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0}
    driver, chip, bus = on_simulated_bus(values, address=0x77)
    assert abs(driver.read()["temperature"] - 20.0) < 0.001
    values["temperature"] = 30.0
    assert chip.measurements == 1  # nothing measures between reads: the chip sleeps
    assert abs(driver.read()["temperature"] - 30.0) < 0.001
    assert chip.measurements == 2
    assert bus.read_byte_data(0x77, CTRL_MEAS) & 0x03 == 0  # back in sleep mode


def test_measuring_bit_reads_set_for_the_first_poll_after_a_trigger() -> None:
    _, chip, bus = on_simulated_bus({"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0})
    bus.write_byte_data(0x76, CTRL_MEAS, 0b001_001_01)
    assert bus.read_byte_data(0x76, STATUS) == 0x08
    assert bus.read_byte_data(0x76, STATUS) == 0x00
    chip.busy_polls = 3
    bus.write_byte_data(0x76, CTRL_MEAS, 0b001_001_10)  # 10 is forced mode too
    assert [bus.read_byte_data(0x76, STATUS) for _ in range(4)] == [0x08, 0x08, 0x08, 0x00]
    assert chip.measurements == 2


def test_driver_gives_up_on_a_model_that_never_finishes() -> None:
    driver, chip, _ = on_simulated_bus({"temperature": 20.0, "pressure": 1000.0, "humidity": 4.0})
    chip.busy_polls = STATUS_POLLS
    with pytest.raises(SensorTimeout, match="did not finish a measurement"):
        driver.read()
    chip.busy_polls = STATUS_POLLS - 1
    assert abs(driver.read()["humidity"] - 4.0) < 0.01


def test_ctrl_hum_takes_effect_only_with_the_next_ctrl_meas_write() -> None:
    _, _, bus = on_simulated_bus({"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0})
    bus.write_byte_data(0x76, CTRL_MEAS, 0b001_001_01)
    bus.write_byte_data(0x76, CTRL_HUM, 0b001)  # too late for this measurement
    assert bus.read_i2c_block_data(0x76, DATA + 6, 2) == [0x80, 0x00]  # humidity skipped
    bus.write_byte_data(0x76, CTRL_MEAS, 0b001_001_01)
    assert bus.read_i2c_block_data(0x76, DATA + 6, 2) != [0x80, 0x00]
    bus.write_byte_data(0x76, CTRL_MEAS, 0b000_001_01)  # temperature skipped
    assert bus.read_i2c_block_data(0x76, DATA + 3, 3) == [0x80, 0x00, 0x00]


def test_soft_reset_restores_power_on_registers() -> None:
    driver, _, bus = on_simulated_bus(
        {"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0}, iir_filter=16
    )
    driver.read()
    assert bus.read_byte_data(0x76, CONFIG) == 0b100 << 2
    bus.write_byte_data(0x76, RESET, 0x00)  # not the reset word: ignored
    assert bus.read_byte_data(0x76, CONFIG) == 0b100 << 2
    bus.write_byte_data(0x76, RESET, 0xB6)
    assert [bus.read_byte_data(0x76, r) for r in (CTRL_HUM, CTRL_MEAS, CONFIG, RESET)] == [0] * 4
    assert bus.read_i2c_block_data(0x76, DATA, 8) == [0x80, 0, 0, 0x80, 0, 0, 0x80, 0]
    assert bus.read_byte_data(0x76, STATUS) == 0x01  # im_update while the NVM is copied
    assert bus.read_byte_data(0x76, STATUS) == 0x00
    assert bus.read_byte_data(0x76, CHIP_ID) == 0x60
    assert bus.read_i2c_block_data(0x76, CALIB_TP, 26) == list(CALIB_TP_BYTES)
    assert abs(driver.read()["humidity"] - 40.0) < 0.01  # ctrl_hum is rewritten every read


def test_read_only_registers_ignore_writes() -> None:
    driver, _, bus = on_simulated_bus({"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0})
    bus.write_i2c_block_data(0x76, CALIB_TP, [0] * 26)
    bus.write_byte_data(0x76, CHIP_ID, 0x58)
    bus.write_i2c_block_data(0x76, DATA, [0x80, 0, 0, 0x80, 0, 0, 0x80, 0])
    assert abs(driver.read()["temperature"] - 20.0) < 0.001


def test_normal_mode_measures_on_each_data_read() -> None:
    values = {"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0}
    _, chip, bus = on_simulated_bus(values)
    bus.write_byte_data(0x76, CTRL_HUM, 0b001)
    bus.write_byte_data(0x76, CTRL_MEAS, 0b001_001_11)
    values["temperature"] = 25.0
    adc_t = bus.read_i2c_block_data(0x76, DATA + 3, 3)
    raw = adc_t[0] << 12 | adc_t[1] << 4 | adc_t[2] >> 4
    assert abs(t_fine(EXAMPLE_CALIBRATION, raw) / 5120 - 25.0) < 0.001
    assert chip.measurements == 1


def test_missing_chip_raises_oserror_121() -> None:
    driver, _, bus = on_simulated_bus({"temperature": 20.0, "pressure": 1000.0, "humidity": 40.0})
    driver.read()
    bus.detach(0x76)
    with pytest.raises(OSError) as info:
        driver.read()
    assert info.value.errno == 121


# -- 3. configuration errors ----------------------------------------------------------------


@pytest.mark.parametrize("address", [0x00, 0x75, 0x78, 0x44])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x76 or 0x77")):
        BME280(example_bus(), address)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("oversampling_temperature", 3),
        ("oversampling_pressure", 0),
        ("oversampling_humidity", 32),
        ("iir_filter", 1),
    ],
)
def test_constructor_refuses_unsupported_options(option: str, value: int) -> None:
    with pytest.raises(SensorConfigError, match=f"{option} must be one of"):
        BME280(example_bus(), **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [("oversampling_temperature", 5), ("oversampling_humidity", 12), ("iir_filter", 3)],
)
def test_params_refuse_values_between_the_allowed_ones(option: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{option} must be"):
        BME280Params(**{option: value})


# -- 4. the registry entry ------------------------------------------------------------------


def test_registry_entry_builds_a_sensor_that_reads_the_simulated_part() -> None:
    params = BME280Params(address=0x77, oversampling_pressure=16, iir_filter=2)
    signals: dict[str, float] = {}

    def signal(quantity: str, typical: float) -> Signal:
        signals[quantity] = typical
        return lambda: signals[quantity]

    part = simulate(params, signal)
    assert (part.bus, part.address) == (1, 0x77)
    assert signals == {"temperature": 21.0, "pressure": 1013.25, "humidity": 45.0}
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    hardware = Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0)
    sensor: Any = SENSOR_TYPE.build(params, hardware)
    assert sensor.unit == ""  # several quantities, each with its unit in SENSOR_TYPE.units
    reading = sensor.read()
    assert isinstance(reading, dict)
    assert reading.keys() == SENSOR_TYPE.units.keys() == SENSOR_TYPE.limits.keys()
    for quantity, value in reading.items():
        assert value == pytest.approx(signals[quantity], abs=0.01)
    sensor.close()
    sensor.close()
    assert abs(sensor.read()["pressure"] - 1013.25) < 0.01  # close() left the bus open


@pytest.mark.hardware
def test_real_chip_reads_plausible_values() -> None:
    with i2c_chip("BME280", 0x76) as (bus, address):
        reading = BME280(bus, address).read()
    assert -40.0 <= reading["temperature"] <= 85.0
    assert 300.0 <= reading["pressure"] <= 1100.0
    assert 0.0 <= reading["humidity"] <= 100.0
