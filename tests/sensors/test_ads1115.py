"""ADS1115 driver against datasheet vectors, and through its chip model on SimulatedBus."""

import dataclasses
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import Hardware, SensorConfigError, SensorError, SensorTimeout, SimulatedBus
from sensors.ads1115 import (
    ADS1115,
    CONFIG_POWER_UP,
    FULL_SCALES,
    SENSOR_TYPE,
    ADS1115Params,
    ADS1115Sensor,
    config_word,
    decode_volts,
)
from sensors.sim.ads1115 import SimulatedADS1115, simulate
from tests.sensors.fakes import ReplayBus, Sleeps
from tests.sensors.hardware import i2c_chip

CONVERSION, CONFIG = 0x00, 0x01
READY = [0x85, 0x83]  # config register with OS = 1: no conversion running


# SBAS444, config register field descriptions: OS bit 15, MUX 14:12, PGA 11:9, MODE 8,
# DR 7:5, COMP_QUE 1:0 (11 = comparator disabled). Each word below is assembled by hand
# from those fields.
CONFIG_VECTORS = [
    # AIN1 vs GND (MUX 101), +-4.096 V (PGA 001), single-shot, 128 SPS (DR 100):
    # 1 101 001 1 100 0 0 0 11 = 0xD383
    ("1", 4.096, 128, 0xD383),
    # AIN0 - AIN1 (000), +-2.048 V (010), single-shot, 128 SPS: the power-up value 8583h
    ("0-1", 2.048, 128, 0x8583),
    # AIN3 vs GND (111), +-6.144 V (000), 860 SPS (111): 1 111 000 1 111 0 0 0 11
    ("3", 6.144, 860, 0xF1E3),
    # AIN2 - AIN3 (011), +-0.256 V (101), 8 SPS (000): 1 011 101 1 000 0 0 0 11
    ("2-3", 0.256, 8, 0xBB03),
    # AIN0 - AIN3 (001), +-1.024 V (011), 250 SPS (101): 1 001 011 1 101 0 0 0 11
    ("0-3", 1.024, 250, 0x97A3),
]


@pytest.mark.parametrize(("channel", "full_scale", "data_rate", "word"), CONFIG_VECTORS)
def test_driver_writes_the_config_word_the_datasheet_fields_give(
    channel: str, full_scale: float, data_rate: int, word: int
) -> None:
    assert config_word(channel, full_scale, data_rate) == word
    bus = ReplayBus({CONFIG: [READY], CONVERSION: [[0x00, 0x00]]})
    ADS1115(bus, 0x4A, full_scale=full_scale, data_rate=data_rate, sleep=Sleeps()).read_channel(
        channel
    )
    assert bus.calls == [
        ("write_block", 0x4A, CONFIG, [word >> 8, word & 0xFF]),
        ("read_block", 0x4A, CONFIG, 2),
        ("read_block", 0x4A, CONVERSION, 2),
    ]


def test_power_up_config_is_the_datasheet_reset_value() -> None:
    assert CONFIG_POWER_UP == 0x8583
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedADS1115())
    assert bus.read_i2c_block_data(0x48, CONFIG, 2) == [0x85, 0x83]


# SBAS444, "Input Signal Versus Ideal Output Code" table (table 3 in rev. D):
# +FS(2^15 - 1)/2^15 -> 7FFFh, +FS/2^15 -> 0001h, 0 -> 0000h, -FS/2^15 -> FFFFh, -FS -> 8000h.
OUTPUT_CODES = [
    ((2**15 - 1) / 2**15, 0x7FFF),
    (1 / 2**15, 0x0001),
    (0.0, 0x0000),
    (-1 / 2**15, 0xFFFF),
    (-1.0, 0x8000),
]


@pytest.mark.parametrize("full_scale", [4.096, 0.256])
@pytest.mark.parametrize(("fraction_of_fs", "code"), OUTPUT_CODES)
def test_decode_gives_the_datasheet_output_codes_their_volts(
    fraction_of_fs: float, code: int, full_scale: float
) -> None:
    volts = decode_volts(code >> 8, code & 0xFF, full_scale)
    assert volts == pytest.approx(fraction_of_fs * full_scale, abs=1e-12)


@pytest.mark.parametrize("full_scale", [4.096, 0.256])
@pytest.mark.parametrize(("fraction_of_fs", "code"), OUTPUT_CODES[1:4])
def test_driver_decodes_the_datasheet_output_codes(
    fraction_of_fs: float, code: int, full_scale: float
) -> None:
    bus = ReplayBus({CONFIG: [READY], CONVERSION: [[code >> 8, code & 0xFF]]})
    driver = ADS1115(bus, channel="1", full_scale=full_scale, sleep=Sleeps())
    assert driver.read() == {"voltage": pytest.approx(fraction_of_fs * full_scale, abs=1e-12)}
    pga = 0xD3 if full_scale == 4.096 else 0xDB  # PGA 001 or 101
    assert bus.calls[0] == ("write_block", 0x48, CONFIG, [pga, 0x83])


@pytest.mark.parametrize("code", [0x7FFF, 0x8000])
def test_driver_refuses_a_clipped_full_scale_code(code: int) -> None:
    bus = ReplayBus({CONFIG: [READY], CONVERSION: [[code >> 8, code & 0xFF]]})
    driver = ADS1115(bus, 0x4B, channel="2-3", full_scale=0.512, sleep=Sleeps())
    with pytest.raises(SensorError, match=r"at 0x4B: input 2-3 is at the \+-0.512 V full scale"):
        driver.read()


@pytest.mark.parametrize(("fraction_of_fs", "code"), OUTPUT_CODES)
def test_model_produces_the_datasheet_output_codes(fraction_of_fs: float, code: int) -> None:
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedADS1115(ain2=lambda: fraction_of_fs * 2.048))
    bus.write_i2c_block_data(0x48, CONFIG, [0xE5, 0x83])  # start: AIN2, +-2.048 V
    bus.read_i2c_block_data(0x48, CONFIG, 2)  # busy
    assert bus.read_i2c_block_data(0x48, CONFIG, 2)[0] & 0x80  # done
    assert bus.read_i2c_block_data(0x48, CONVERSION, 2) == [code >> 8, code & 0xFF]


def test_driver_sleeps_one_conversion_time_then_polls_os_until_ready() -> None:
    busy = [0x05, 0x83]  # OS = 0
    bus = ReplayBus({CONFIG: [busy, busy, READY], CONVERSION: [[0x40, 0x00]]})
    sleeps = Sleeps()
    assert ADS1115(bus, data_rate=8, sleep=sleeps).read() == {"voltage": 1.024}
    assert sleeps.calls == [1 / 8, 1 / 80, 1 / 80]
    assert [c[2] for c in bus.calls] == [CONFIG, CONFIG, CONFIG, CONFIG, CONVERSION]


def test_a_conversion_that_never_ends_times_out_as_an_oserror() -> None:
    bus = ReplayBus({CONFIG: [[0x05, 0x83]], CONVERSION: [[0, 0]]})
    sleeps = Sleeps()
    with pytest.raises(SensorTimeout, match="0x48: conversion not done") as info:
        ADS1115(bus, data_rate=860, sleep=sleeps).read()
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, OSError)
    assert sum(sleeps.calls) == pytest.approx(3 / 860)
    assert ("read_block", 0x48, CONVERSION, 2) not in bus.calls


def on_simulated_bus(
    inputs: list[float], address: int = 0x48, **options: Any
) -> tuple[ADS1115, SimulatedBus]:
    bus = SimulatedBus()
    chip = SimulatedADS1115(*(lambda n=n: inputs[n] for n in range(4)))
    bus.attach(address, chip)
    return ADS1115(bus, address, sleep=Sleeps(), **options), bus


@given(
    st.sampled_from(sorted(FULL_SCALES)),
    st.sampled_from(["0", "1", "2", "3"]),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_single_ended_round_trip_within_half_an_lsb(
    full_scale: float, channel: str, fraction: float
) -> None:
    # At most the top unclipped code, 7FFEh: 7FFEh + 0.5 LSB would round either way in floats.
    volts = fraction * full_scale * (2**15 - 2) / 2**15
    inputs = [0.1, 0.2, 0.3, 0.4]
    inputs[int(channel)] = volts
    driver, _ = on_simulated_bus(inputs, channel=channel, full_scale=full_scale)
    lsb = full_scale / 2**15
    assert abs(driver.read()["voltage"] - volts) <= lsb / 2 + 1e-12


@given(
    st.sampled_from(["0-1", "0-3", "1-3", "2-3"]),
    st.floats(min_value=0.0, max_value=3.3),
    st.floats(min_value=0.0, max_value=3.3),
)
def test_differential_round_trip_within_half_an_lsb(
    channel: str, positive: float, negative: float
) -> None:
    p, n = int(channel[0]), int(channel[2])
    inputs = [9.0, 9.0, 9.0, 9.0]  # unused inputs far away: a wrong MUX would show
    inputs[p], inputs[n] = positive, negative
    driver, _ = on_simulated_bus(inputs, channel=channel, full_scale=4.096)
    assert abs(driver.read()["voltage"] - (positive - negative)) <= 4.096 / 2**15 / 2 + 1e-12


@pytest.mark.parametrize(("volts", "code"), [(5.0, 0x7FFF), (2.048, 0x7FFF), (-3.0, 0x8000)])
def test_model_clips_at_full_scale_and_the_driver_says_so(volts: float, code: int) -> None:
    driver, bus = on_simulated_bus([volts, 0.0, 0.0, 0.0], channel="0-1", full_scale=2.048)
    with pytest.raises(SensorError, match="full scale"):
        driver.read()
    assert bus.read_i2c_block_data(0x48, CONVERSION, 2) == [code >> 8, code & 0xFF]


def test_read_all_converts_each_input_against_ground() -> None:
    driver, _ = on_simulated_bus([0.5, 1.0, 1.5, 2.0], full_scale=4.096)
    assert driver.read_all() == {"ain0": 0.5, "ain1": 1.0, "ain2": 1.5, "ain3": 2.0}


def test_model_reads_busy_on_the_first_poll_and_keeps_the_old_result_until_done() -> None:
    volts = [1.0, 0.0, 0.0, 0.0]
    driver, bus = on_simulated_bus(volts, full_scale=2.048)
    driver.read()  # the conversion register now holds 1.0 V: 16000 codes, 0x3E80
    volts[0] = 0.5
    bus.write_i2c_block_data(0x48, CONFIG, [0xC5, 0x83])  # start: AIN0, +-2.048 V
    assert bus.read_i2c_block_data(0x48, CONVERSION, 2) == [0x3E, 0x80]  # still the old one
    assert bus.read_i2c_block_data(0x48, CONFIG, 2) == [0x45, 0x83]  # OS = 0: busy
    assert bus.read_i2c_block_data(0x48, CONFIG, 2) == [0xC5, 0x83]  # OS = 1: done
    assert bus.read_i2c_block_data(0x48, CONVERSION, 2) == [0x1F, 0x40]  # 0.5 V


def test_model_in_continuous_mode_converts_on_each_read() -> None:
    volts = [0.0, 0.0, 1.0, 0.0]
    _, bus = on_simulated_bus(volts)
    bus.write_i2c_block_data(0x48, CONFIG, [0x64, 0x83])  # AIN2, +-2.048 V, MODE = 0
    assert bus.read_i2c_block_data(0x48, CONVERSION, 2) == [0x3E, 0x80]
    volts[2] = -0.25
    assert bus.read_i2c_block_data(0x48, CONVERSION, 2) == [0xF0, 0x60]  # -4000 codes
    assert bus.read_i2c_block_data(0x48, CONFIG, 2) == [0xE4, 0x83]  # OS reads 1


def test_each_read_samples_the_signal_afresh() -> None:
    volts = [0.0, 1.25, 0.0, 0.0]
    driver, _ = on_simulated_bus(volts, channel="1")
    assert driver.read() == {"voltage": 1.25}
    volts[1] = 0.75
    assert driver.read() == {"voltage": 0.75}


def test_missing_chip_raises_oserror_121() -> None:
    driver, bus = on_simulated_bus([0.0] * 4)
    bus.detach(0x48)
    with pytest.raises(OSError) as info:
        driver.read()
    assert info.value.errno == 121


@pytest.mark.parametrize("address", [0x00, 0x47, 0x4C, 0x77])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x48..0x4B")):
        ADS1115(SimulatedBus(), address)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"channel": "4"}, "channel must be one of 0, 1, 2, 3"),
        ({"channel": "1-0"}, "channel must be one of"),
        ({"full_scale": 5.0}, "full-scale range must be one of 6.144, 4.096"),
        ({"data_rate": 100}, "data rate must be one of 8, 16"),
    ],
)
def test_constructor_refuses_options_the_chip_lacks(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SensorConfigError, match=message):
        ADS1115(SimulatedBus(), **options)


def test_read_channel_refuses_an_unknown_channel() -> None:
    driver, _ = on_simulated_bus([0.0] * 4)
    with pytest.raises(SensorConfigError, match="'all'"):
        driver.read_channel("all")


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"range": 3.3}, "range must be one of"), ({"data_rate": 500}, "data rate must be one of")],
)
def test_params_refuse_values_the_chip_lacks(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ADS1115Params(**changes)


def test_params_defaults_and_ranges() -> None:
    fields = {f.name: f for f in dataclasses.fields(ADS1115Params)}
    assert fields["address"].default == 0x48
    assert fields["address"].metadata["choices"] == (0x48, 0x49, 0x4A, 0x4B)
    assert fields["address"].metadata["hex"] is True
    assert (fields["channel"].default, fields["range"].default) == ("0", 4.096)
    assert fields["data_rate"].default == 128


def hardware(bus: SimulatedBus, sleep: Callable[[float], None] = lambda s: None) -> Hardware:
    return Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0, sleep=sleep)


def no_sleep(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    sleeps = Sleeps()
    monkeypatch.setattr(time, "sleep", sleeps)
    return sleeps


def test_registry_entry_builds_a_single_channel_sensor() -> None:
    sleeps = Sleeps()
    bus = SimulatedBus()
    bus.attach(0x49, SimulatedADS1115(ain3=lambda: 2.5))
    params = ADS1115Params(address=0x49, channel="3")
    sensor = SENSOR_TYPE.build(params, hardware(bus, sleeps))  # the conversion waits go here
    assert isinstance(sensor, ADS1115Sensor)
    assert sensor.unit == "V"
    assert sensor.read() == 2.5
    assert sleeps.calls == [1 / 128, 1 / 1280]  # the model reads busy on the first poll
    sensor.close()
    assert bus.read_i2c_block_data(0x49, CONFIG, 2)  # the shared bus stays open


def test_registry_entry_builds_an_all_channel_sensor(monkeypatch: pytest.MonkeyPatch) -> None:
    no_sleep(monkeypatch)
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedADS1115(lambda: 0.25, lambda: 0.5, lambda: 0.75, lambda: 1.0))
    sensor = SENSOR_TYPE.build(ADS1115Params(channel="all"), hardware(bus))
    assert isinstance(sensor, ADS1115Sensor)
    assert sensor.unit == ""
    assert sensor.read() == {"ain0": 0.25, "ain1": 0.5, "ain2": 0.75, "ain3": 1.0}
    assert set(SENSOR_TYPE.units) == {"ain0", "ain1", "ain2", "ain3"}


@pytest.mark.parametrize("channel", ["2", "1-3"])
def test_simulate_feeds_the_voltage_signal_to_the_channel(
    channel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_sleep(monkeypatch)
    asked: list[tuple[str, float]] = []

    def signal(quantity: str, typical: float) -> Any:
        asked.append((quantity, typical))
        return lambda: 1.5

    part = simulate(ADS1115Params(bus=3, address=0x4B, channel=channel), signal)
    assert (part.bus, part.address) == (3, 0x4B)
    assert asked == [("voltage", 2.048)]
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    sensor = SENSOR_TYPE.build(ADS1115Params(address=0x4B, channel=channel), hardware(bus))
    assert isinstance(sensor, ADS1115Sensor)
    assert sensor.read() == 1.5


def test_simulate_all_channels_asks_for_four_signals(monkeypatch: pytest.MonkeyPatch) -> None:
    no_sleep(monkeypatch)
    levels = {"ain0": 0.1, "ain1": 0.2, "ain2": 0.3, "ain3": 0.4}
    part = simulate(
        ADS1115Params(channel="all"), lambda quantity, typical: lambda: levels[quantity]
    )
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    sensor = SENSOR_TYPE.build(ADS1115Params(channel="all"), hardware(bus))
    assert isinstance(sensor, ADS1115Sensor)
    assert sensor.read() == pytest.approx(levels, abs=4.096 / 2**16)


@pytest.mark.hardware
def test_real_chip_reads_a_plausible_voltage() -> None:
    with i2c_chip("ADS1115", 0x48) as (bus, address):
        assert -6.144 <= ADS1115(bus, address, full_scale=6.144).read()["voltage"] <= 6.144
