"""INA219 driver against datasheet vectors, and through its chip model on SimulatedBus."""

import dataclasses
import re
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import Hardware, SensorConfigError, SensorError, SensorTimeout, SimulatedBus
from sensors.ina219 import (
    INA219,
    SENSOR_TYPE,
    INA219Params,
    INA219Sensor,
    calibration_value,
    config_word,
)
from sensors.sim.ina219 import SimulatedINA219, simulate
from tests.sensors.fakes import ReplayBus, Sleeps
from tests.sensors.hardware import i2c_chip

CONFIG, SHUNT, BUS, POWER, CURRENT, CAL = range(6)


def word(value: int) -> list[int]:
    return [value >> 8, value & 0xFF]


# SBOS448G section 9.2 and table 8 (register results for the example circuit): 10 A
# load, VCM = 12 V, R_shunt = 2 mOhm, PGA /1 (40 mV), BRNG = 0 (16 V). The example takes
# Current_LSB = 1 mA (15 A / 2**15 = 457.78 uA rounded up), i.e. a 2**15 mA = 32.768 A
# register full scale, giving Cal = 20480 (5000h).
EXAMPLE = {"shunt_ohms": 0.002, "max_current": 32.768, "bus_range_v": 16, "shunt_range_mv": 40}
EXAMPLE_REGISTERS = {
    CAL: [word(0x5000)],
    SHUNT: [word(0x07D0)],  # 2000 x 10 uV = 20 mV
    BUS: [word(0x5D98)],  # 0BB3h = 2995 x 4 mV = 11.98 V
    CURRENT: [word(0x2710)],  # 10000 x 1 mA = 10.0 A
    POWER: [word(0x1766)],  # 5990 x 20 mW = 119.8 W
}


def test_datasheet_example_config_and_calibration() -> None:
    assert config_word(16, 40, 1) == 0x019F
    assert calibration_value(0.002, 32.768) == 20480
    driver = INA219(ReplayBus({}), **EXAMPLE)
    assert (driver.config, driver.calibration) == (0x019F, 0x5000)
    assert driver.current_lsb == pytest.approx(1e-3, rel=1e-12)
    assert driver.power_lsb == pytest.approx(20e-3, rel=1e-12)


def test_driver_decodes_the_datasheet_example_registers() -> None:
    bus = ReplayBus({k: list(v) for k, v in EXAMPLE_REGISTERS.items()})
    reading = INA219(bus, 0x45, **EXAMPLE, sleep=Sleeps()).read()
    assert reading == {
        "voltage": pytest.approx(11.98, abs=1e-12),
        "shunt_voltage": pytest.approx(0.020, abs=1e-12),
        "current": pytest.approx(10.0, abs=1e-9),
        "power": pytest.approx(119.8, abs=1e-9),
    }
    # The calibration register already holds 20480, so nothing is written.
    assert bus.calls == [("read_block", 0x45, reg, 2) for reg in (CAL, BUS, SHUNT, CURRENT, POWER)]


def test_model_reproduces_the_datasheet_example_registers() -> None:
    bus = SimulatedBus()
    bus.attach(0x40, SimulatedINA219(lambda: 11.98, lambda: 10.0, shunt_ohms=0.002))
    bus.write_i2c_block_data(0x40, CAL, word(0x5000))
    bus.write_i2c_block_data(0x40, CONFIG, word(0x019F))
    bus.read_i2c_block_data(0x40, BUS, 2)  # the conversion restarted by the config write
    assert bus.read_i2c_block_data(0x40, BUS, 2) == word(0x5D98 | 0x0002)  # CNVR set
    assert bus.read_i2c_block_data(0x40, SHUNT, 2) == word(0x07D0)
    assert bus.read_i2c_block_data(0x40, CURRENT, 2) == word(0x2710)
    assert bus.read_i2c_block_data(0x40, POWER, 2) == word(0x1766)


@pytest.mark.parametrize(
    ("bus_range_v", "shunt_range_mv", "samples", "expected"),
    [
        (32, 320, 1, 0x399F),  # the power-up value (table 2)
        (16, 40, 1, 0x019F),  # table 8
        (32, 160, 128, 0x37FF),  # BRNG 1, PG 10, BADC = SADC = 1111, MODE 111
        (16, 80, 2, 0x0CCF),  # BRNG 0, PG 01, BADC = SADC = 1001, MODE 111
    ],
)
def test_config_word_from_the_datasheet_fields(
    bus_range_v: int, shunt_range_mv: int, samples: int, expected: int
) -> None:
    assert config_word(bus_range_v, shunt_range_mv, samples) == expected


# Equation 1 (section 8.5.1) by hand: Cal = trunc(0.04096 / (max_current / 2**15 * R)).
@pytest.mark.parametrize(
    ("shunt_ohms", "max_current", "cal"),
    [
        (0.1, 3.2, 4194),  # 0.04096 / (97.65625e-6 * 0.1) = 4194.304
        (0.1, 3.2768, 4096),  # Current_LSB = 100 uA exactly
        (0.01, 10.0, 13421),  # 13421.77... truncates, and is odd: FS0 is void
    ],
)
def test_calibration_follows_equation_1(shunt_ohms: float, max_current: float, cal: int) -> None:
    assert calibration_value(shunt_ohms, max_current) == cal & 0xFFFE


# Table 7 (shunt voltage register format) rows inside each PGA range, and the worked
# example of section 8.6.3.1 (-320 mV -> 8300h).
SHUNT_CODES = [
    (40, 39.99, 0x0F9F),
    (40, -39.99, 0xF061),
    (80, 79.99, 0x1F3F),
    (80, -79.99, 0xE0C1),
    (160, 159.99, 0x3E7F),
    (160, -159.99, 0xC181),
    (320, 319.99, 0x7CFF),
    (320, -319.99, 0x8301),
    (320, 0.01, 0x0001),
    (320, -0.01, 0xFFFF),
    (320, 0.0, 0x0000),
]
# Table 7 at and past each range's end: the register clips to +-full scale.
SHUNT_CLIPPED = [
    (320, 320.02, 0x7D00),
    (320, -320.00, 0x8300),
    (160, 160.02, 0x3E80),
    (160, -320.02, 0xC180),
    (80, 80.01, 0x1F40),
    (80, -80.02, 0xE0C0),
    (40, 40.02, 0x0FA0),
    (40, -319.98, 0xF060),
]


def calibrated(shunt_range_mv: int, shunt: int, bus_word: int = 0x5D9A) -> ReplayBus:
    cal = calibration_value(0.1, 3.2)
    registers = {CAL: [word(cal)], BUS: [word(bus_word)], SHUNT: [word(shunt)]}
    return ReplayBus({**registers, CURRENT: [word(0)], POWER: [word(0)]})


@pytest.mark.parametrize(("shunt_range_mv", "millivolts", "code"), SHUNT_CODES)
def test_driver_decodes_the_table_7_shunt_codes(
    shunt_range_mv: int, millivolts: float, code: int
) -> None:
    bus = calibrated(shunt_range_mv, code)
    driver = INA219(bus, shunt_range_mv=shunt_range_mv, sleep=Sleeps())
    assert driver.read()["shunt_voltage"] == pytest.approx(millivolts / 1000, abs=1e-12)


@pytest.mark.parametrize(("shunt_range_mv", "millivolts", "code"), SHUNT_CODES + SHUNT_CLIPPED)
def test_model_produces_the_table_7_shunt_codes(
    shunt_range_mv: int, millivolts: float, code: int
) -> None:
    bus = SimulatedBus()
    bus.attach(0x40, SimulatedINA219(lambda: 5.0, lambda: millivolts / 1000 / 0.1))
    bus.write_i2c_block_data(0x40, CONFIG, word(config_word(32, shunt_range_mv, 1)))
    bus.read_i2c_block_data(0x40, SHUNT, 2)  # the conversion restarted by the config write
    assert bus.read_i2c_block_data(0x40, SHUNT, 2) == word(code)


@pytest.mark.parametrize(("shunt_range_mv", "millivolts", "code"), SHUNT_CLIPPED[::2])
def test_driver_refuses_a_shunt_voltage_at_full_scale(
    shunt_range_mv: int, millivolts: float, code: int
) -> None:
    driver = INA219(calibrated(shunt_range_mv, code), shunt_range_mv=shunt_range_mv)
    with pytest.raises(SensorError, match=f"at the \\+-{shunt_range_mv} mV full scale"):
        driver.read()


# Bus voltage register (section 8.6.3.2): bits 15..3 at 4 mV, CNVR bit 1, OVF bit 0.
@pytest.mark.parametrize(
    ("bus_word", "volts"),
    [(0x5D98, 11.98), (0x5D9A, 11.98), (0xFA00, 32.0), (0x7D02, 16.0), (0x0008, 0.004)],
)
def test_driver_decodes_bus_voltage_and_ignores_cnvr(bus_word: int, volts: float) -> None:
    driver = INA219(calibrated(320, 0, bus_word), sleep=Sleeps())
    assert driver.read()["voltage"] == pytest.approx(volts, abs=1e-12)


def test_driver_raises_on_the_math_overflow_flag() -> None:
    driver = INA219(calibrated(320, 0, 0x5D99), sleep=Sleeps())
    with pytest.raises(SensorError, match="math overflow: current beyond the calibrated range"):
        driver.read()


def test_driver_programs_calibration_then_config_and_waits_for_cnvr() -> None:
    bus = ReplayBus(
        {
            CAL: [word(0), word(0x1062)],
            BUS: [word(0x5D98), word(0x5D9A)],  # first poll: CNVR clear
            SHUNT: [word(0x1388)],  # 50 mV
            CURRENT: [word(0x1400)],
            POWER: [word(0x0400)],
        }
    )
    sleeps = Sleeps()
    reading = INA219(bus, 0x4F, sleep=sleeps).read()
    assert bus.calls[:6] == [
        ("read_block", 0x4F, CAL, 2),
        ("write_block", 0x4F, CAL, [0x10, 0x62]),  # 4194
        ("write_block", 0x4F, CONFIG, [0x39, 0x9F]),
        ("read_block", 0x4F, BUS, 2),
        ("read_block", 0x4F, BUS, 2),
        ("read_block", 0x4F, BUS, 2),
    ]
    assert sleeps.calls == pytest.approx([2 * 532e-6, 2 * 532e-6 / 10])
    lsb = 0.04096 / (4194 * 0.1)
    assert reading["current"] == pytest.approx(0x1400 * lsb)
    assert reading["power"] == pytest.approx(0x0400 * 20 * lsb)


def test_a_conversion_that_never_completes_times_out_as_an_oserror() -> None:
    bus = ReplayBus({CAL: [word(0)], BUS: [word(0x5D98)]})
    sleeps = Sleeps()
    with pytest.raises(SensorTimeout, match="0x40: no conversion ready") as info:
        INA219(bus, samples=128, sleep=sleeps).read()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, OSError)
    assert sum(sleeps.calls) == pytest.approx(3 * 2 * 68.10e-3)


def on_simulated_bus(
    volts: list[float], amps: list[float], chip_ohms: float = 0.1, **options: Any
) -> tuple[INA219, SimulatedBus, SimulatedINA219]:
    bus = SimulatedBus()
    chip = SimulatedINA219(lambda: volts[0], lambda: amps[0], shunt_ohms=chip_ohms)
    bus.attach(0x40, chip)
    return INA219(bus, sleep=Sleeps(), **options), bus, chip


@given(
    st.floats(min_value=0.0, max_value=32.0),
    st.floats(min_value=-3.19, max_value=3.19),
)
def test_round_trip_within_the_chip_resolution(volts: float, amps: float) -> None:
    driver, _, _ = on_simulated_bus([volts], [amps])
    reading = driver.read()
    current_tolerance = 5e-6 / 0.1 + driver.current_lsb  # shunt rounding + current truncation
    assert reading["voltage"] == pytest.approx(volts, abs=2e-3 + 1e-12)
    assert reading["shunt_voltage"] == pytest.approx(amps * 0.1, abs=5e-6 + 1e-12)
    assert reading["current"] == pytest.approx(amps, abs=current_tolerance)
    power_tolerance = driver.power_lsb + 2e-3 * abs(amps) + 32.0 * current_tolerance
    assert reading["power"] == pytest.approx(abs(amps) * volts, abs=power_tolerance)


@given(st.floats(min_value=-0.0399, max_value=0.0399))
def test_round_trip_on_the_40_mv_range_with_a_small_shunt(amps_fraction: float) -> None:
    amps = amps_fraction / 0.002  # up to ~20 A across 2 mOhm
    driver, _, _ = on_simulated_bus([12.0], [amps], chip_ohms=0.002, **EXAMPLE)
    reading = driver.read()
    assert reading["current"] == pytest.approx(amps, abs=5e-6 / 0.002 + driver.current_lsb)


def test_a_wrong_calibration_in_the_chip_shows_in_current_and_power() -> None:
    _, bus, _ = on_simulated_bus([10.0], [1.0])
    bus.write_i2c_block_data(0x40, CAL, word(4096))  # Current_LSB 100 uA at 0.1 ohm
    bus.read_i2c_block_data(0x40, BUS, 2)
    assert bus.read_i2c_block_data(0x40, CURRENT, 2) == word(10000)  # 1 A
    assert bus.read_i2c_block_data(0x40, POWER, 2) == word(5000)  # 10000 * 2500 / 5000
    bus.write_i2c_block_data(0x40, CAL, word(8192))
    bus.read_i2c_block_data(0x40, BUS, 2)
    assert bus.read_i2c_block_data(0x40, CURRENT, 2) == word(20000)  # doubled
    assert bus.read_i2c_block_data(0x40, POWER, 2) == word(10000)


def test_calibration_bit_0_is_void() -> None:
    _, bus, _ = on_simulated_bus([10.0], [1.0])
    bus.write_i2c_block_data(0x40, CAL, [0x7F, 0xFF])
    assert bus.read_i2c_block_data(0x40, CAL, 2) == [0x7F, 0xFE]


def test_driver_reprograms_a_chip_that_was_reset() -> None:
    driver, bus, chip = on_simulated_bus([12.0], [1.5])
    assert driver.read()["current"] == pytest.approx(1.5, abs=2e-4)
    bus.write_i2c_block_data(0x40, CONFIG, [0x80, 0x00])  # RST
    assert bus.read_i2c_block_data(0x40, CAL, 2) == [0, 0]
    assert driver.read()["current"] == pytest.approx(1.5, abs=2e-4)
    assert bus.read_i2c_block_data(0x40, CAL, 2) == word(driver.calibration)
    assert chip.words[CONFIG] == driver.config


def test_model_sets_ovf_and_the_driver_raises_beyond_max_current() -> None:
    driver, bus, _ = on_simulated_bus([12.0], [1.0], max_current=0.5)
    with pytest.raises(SensorError, match="math overflow") as info:
        driver.read()
    assert "max_current = 0.5 A" in str(info.value)
    assert bus.read_i2c_block_data(0x40, BUS, 2)[1] & 0x01  # OVF


def test_model_clips_the_bus_voltage_to_its_range() -> None:
    driver, _, _ = on_simulated_bus([20.0], [0.1], bus_range_v=16)
    assert driver.read()["voltage"] == 16.0
    driver, _, _ = on_simulated_bus([-1.0], [0.1])
    assert driver.read()["voltage"] == 0.0


def test_each_read_samples_the_signals_afresh() -> None:
    volts, amps = [5.0], [0.5]
    driver, _, _ = on_simulated_bus(volts, amps)
    assert driver.read()["voltage"] == 5.0
    volts[0], amps[0] = 3.3, -0.25
    reading = driver.read()
    assert reading["voltage"] == pytest.approx(3.3)
    assert reading["current"] == pytest.approx(-0.25, abs=2e-4)


def test_missing_chip_raises_oserror_121() -> None:
    driver, bus, _ = on_simulated_bus([5.0], [0.5])
    bus.detach(0x40)
    with pytest.raises(OSError) as info:
        driver.read()
    assert info.value.errno == 121


@pytest.mark.parametrize("address", [0x00, 0x3F, 0x50, 0x77])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x40..0x4F")):
        INA219(SimulatedBus(), address)


INVALID_OPTIONS = [
    ({"shunt_ohms": 0.0}, "shunt_ohms must be > 0"),
    ({"max_current": -1.0}, "max_current must be > 0"),
    ({"bus_range_v": 26}, "bus_range_v must be one of 16, 32"),
    ({"shunt_range_mv": 100}, "shunt_range_mv must be one of 40, 80, 160, 320"),
    ({"samples": 3}, "samples must be one of 1, 2, 4"),
    ({"max_current": 0.1}, "max_current must be at least 0.204806 A"),
]


@pytest.mark.parametrize(("options", "message"), INVALID_OPTIONS)
def test_constructor_refuses_options_the_chip_cannot_take(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SensorConfigError, match=message):
        INA219(SimulatedBus(), **options)


@pytest.mark.parametrize(("changes", "message"), INVALID_OPTIONS)
def test_params_refuse_options_the_chip_cannot_take(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        INA219Params(**changes)


def test_params_defaults_and_ranges() -> None:
    fields = {f.name: f for f in dataclasses.fields(INA219Params)}
    assert (fields["address"].default, fields["address"].metadata["min"]) == (0x40, 0x40)
    assert fields["address"].metadata["max"] == 0x4F
    assert (fields["shunt_ohms"].default, fields["max_current"].default) == (0.1, 3.2)
    assert (fields["bus_range_v"].default, fields["shunt_range_mv"].default) == (32, 320)


def hardware(bus: SimulatedBus) -> Hardware:
    return Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0)


def test_registry_entry_builds_a_working_sensor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", Sleeps())
    bus = SimulatedBus()
    bus.attach(0x41, SimulatedINA219(lambda: 12.0, lambda: 0.25, shunt_ohms=0.05))
    params = INA219Params(address=0x41, shunt_ohms=0.05, max_current=5.0, samples=8)
    sensor = SENSOR_TYPE.build(params, hardware(bus))
    assert isinstance(sensor, INA219Sensor)
    assert sensor.unit == ""
    reading = sensor.read()
    assert (
        set(reading) == set(SENSOR_TYPE.units) == {"voltage", "shunt_voltage", "current", "power"}
    )
    assert reading["current"] == pytest.approx(0.25, abs=1e-3)
    assert reading["power"] == pytest.approx(3.0, abs=0.02)
    sensor.close()
    assert bus.read_i2c_block_data(0x41, CONFIG, 2) == word(config_word(32, 320, 8))


def test_simulate_feeds_voltage_and_current_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", Sleeps())
    asked: list[tuple[str, float]] = []
    levels = {"voltage": 24.0, "current": -1.25}

    def signal(quantity: str, typical: float) -> Any:
        asked.append((quantity, typical))
        return lambda: levels[quantity]

    params = INA219Params(bus=2, address=0x44, shunt_ohms=0.01, max_current=8.0)
    part = simulate(params, signal)
    assert (part.bus, part.address) == (2, 0x44)
    assert asked == [("voltage", 5.0), ("current", 2.0)]
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    sensor = SENSOR_TYPE.build(params, hardware(bus))
    assert isinstance(sensor, INA219Sensor)
    reading = sensor.read()
    assert reading["voltage"] == 24.0
    assert reading["current"] == pytest.approx(-1.25, abs=1e-5 / 0.01 + 8.0 / 2**15)
    assert reading["shunt_voltage"] == pytest.approx(-0.0125, abs=1e-5)


@pytest.mark.hardware
def test_real_chip_reads_a_plausible_bus_voltage() -> None:
    with i2c_chip("INA219", 0x40) as (bus, address):
        assert 0.0 <= INA219(bus, address).read()["voltage"] <= 32.0
