"""MPU6050 driver against datasheet vectors, its FIFO framing, and its model on SimulatedBus."""

import dataclasses
import itertools
import math
import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import Hardware, SensorConfigError, SensorError, SimulatedBus
from sensors.mpu6050 import (
    ACCEL_LSB_PER_G,
    ACCEL_RANGES,
    GYRO_LSB_PER_DPS,
    GYRO_RANGES,
    MPU6050,
    SENSOR_TYPE,
    MPU6050Params,
    MPU6050Sensor,
    decode_temperature,
    sample_rate_divider,
)
from sensors.sim.mpu6050 import SimulatedMPU6050, TimeSignal, simulate
from tests.sensors.hardware import i2c_chip


def word(value: int) -> list[int]:
    """A signed 16-bit value as the chip sends it, high byte first."""
    return [(value >> 8) & 0xFF, value & 0xFF]


class ReplayBus:
    """Answers reads with canned register bytes and records every transfer."""

    def __init__(self, registers: dict[int, list[int]] | None = None) -> None:
        self.registers = {0x75: [0x68], **(registers or {})}
        self.calls: list[tuple[object, ...]] = []

    def read_byte_data(self, i2c_addr: int, register: int) -> int:
        self.calls.append(("read_byte", i2c_addr, register))
        return self.registers[register][0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self.calls.append(("write_byte", i2c_addr, register, value))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self.calls.append(("read_block", i2c_addr, register, length))
        assert length <= 32, "smbus2 refuses blocks over 32 bytes"
        return self.registers[register][:length]

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int]) -> None:
        self.calls.append(("write_block", i2c_addr, register, list(data)))

    def _unused(self, *args: object) -> Any:
        raise AssertionError("the MPU6050 driver uses byte and block transfers only")

    read_byte = write_byte = read_word_data = write_word_data = close = _unused


WAKE_AND_DEFAULTS = [
    ("read_byte", 0x68, 0x75),
    ("write_byte", 0x68, 0x6B, 0x01),  # SLEEP clear, CLKSEL 1 (PLL, X gyro)
    ("write_block", 0x68, 0x19, [9, 3, 0x00, 0x00]),  # 1 kHz / (1 + 9) = 100 Hz, DLPF 3
]


# --- datasheet vectors -------------------------------------------------------------------


def test_constructor_checks_the_id_wakes_the_chip_and_writes_the_defaults() -> None:
    bus = ReplayBus()
    driver = MPU6050(bus)
    assert bus.calls == WAKE_AND_DEFAULTS
    assert (driver.settings.sample_rate, driver.settings.dlpf) == (100.0, 3)


@pytest.mark.parametrize(
    ("accel", "gyro", "rate", "dlpf", "block"),
    [
        # SMPLRT_DIV, CONFIG (DLPF_CFG), GYRO_CONFIG (FS_SEL << 3), ACCEL_CONFIG (AFS_SEL << 3)
        ("2g", "250dps", 1000.0, 1, [0, 1, 0x00, 0x00]),
        ("4g", "500dps", 8000.0, 0, [0, 0, 0x08, 0x08]),
        ("8g", "1000dps", 333.33, 6, [2, 6, 0x10, 0x10]),
        ("16g", "2000dps", 500.0, 1, [1, 1, 0x18, 0x18]),
        ("2g", "2000dps", 31.25, 0, [255, 0, 0x18, 0x00]),
        ("16g", "250dps", 1000.0 / 256, 5, [255, 5, 0x00, 0x18]),
    ],
)
def test_configure_writes_the_register_bytes(
    accel: Any, gyro: Any, rate: float, dlpf: int, block: list[int]
) -> None:
    bus = ReplayBus()
    driver = MPU6050(bus, 0x69)
    del bus.calls[:]
    driver.configure(accel, gyro, rate, dlpf)
    assert bus.calls == [("write_byte", 0x69, 0x6B, 0x01), ("write_block", 0x69, 0x19, block)]
    base = 8000.0 if dlpf == 0 else 1000.0
    assert driver.settings.sample_rate == base / (1 + block[0])


def burst(accel: Sequence[int], temp: int, gyro: Sequence[int]) -> list[int]:
    return [byte for value in (*accel, temp, *gyro) for byte in word(value)]


def test_burst_decodes_datasheet_sensitivities_and_temperature() -> None:
    # PS-MPU-6000A-00 sensitivity tables: AFS_SEL 0 = 16384 LSB/g, FS_SEL 0 = 131 LSB/(deg/s);
    # its temperature sensor: -521 LSB at 35 degC; register map: degC = TEMP_OUT / 340 + 36.53.
    bus = ReplayBus({0x3B: burst([0x4000, -0x4000, 0], -521, [131, -131, 0x7FFF])})
    driver = MPU6050(bus)
    reading = driver.read()
    assert bus.calls[-1] == ("read_block", 0x68, 0x3B, 14)
    assert reading["accel"] == (1.0, -1.0, 0.0)
    assert reading["gyro"] == (1.0, -1.0, 32767 / 131)
    assert reading["temperature"] == pytest.approx(35.0, abs=0.003)  # 34.9976


def test_0xc000_is_minus_one_g() -> None:
    raw = [0x40, 0x00, 0xC0, 0x00, 0x80, 0x00] + [0] * 8
    reading = MPU6050(ReplayBus({0x3B: raw})).read()
    assert reading["accel"] == (1.0, -1.0, -2.0)


@pytest.mark.parametrize(
    ("accel_range", "expected_g"), [("2g", 1.0), ("4g", 2.0), ("8g", 4.0), ("16g", 8.0)]
)
@pytest.mark.parametrize(
    ("gyro_range", "raw", "expected_dps"),
    [("250dps", 1310, 10.0), ("500dps", 655, 10.0), ("1000dps", 328, 10.0), ("2000dps", 164, 10.0)],
)
def test_each_range_uses_its_datasheet_sensitivity(
    accel_range: Any, expected_g: float, gyro_range: Any, raw: int, expected_dps: float
) -> None:
    bus = ReplayBus({0x3B: burst([0x4000, 0, 0], 0, [raw, 0, 0])})
    driver = MPU6050(bus)
    driver.configure(accel_range, gyro_range)
    reading = driver.read()
    assert reading["accel"] == (expected_g, 0.0, 0.0)
    assert reading["gyro"] == (pytest.approx(expected_dps), 0.0, 0.0)


@pytest.mark.parametrize(("raw", "celsius"), [(0, 36.53), (340, 37.53), (-340 * 10, 26.53)])
def test_temperature_formula(raw: int, celsius: float) -> None:
    assert decode_temperature(raw) == pytest.approx(celsius)


def test_start_fifo_resets_with_fifo_disabled_then_enables_it() -> None:
    bus = ReplayBus({0x3A: [0x00]})
    driver = MPU6050(bus)
    del bus.calls[:]
    driver.start_fifo()
    assert bus.calls == [
        ("write_byte", 0x68, 0x23, 0x08),  # FIFO_EN: ACCEL_FIFO_EN
        ("write_byte", 0x68, 0x6A, 0x04),  # USER_CTRL: FIFO_RESET while FIFO_EN = 0
        ("read_byte", 0x68, 0x3A),  # INT_STATUS: clears a stale overflow flag
        ("write_byte", 0x68, 0x6A, 0x40),  # USER_CTRL: FIFO_EN
    ]
    del bus.calls[:]
    driver.start_fifo(gyro=True)
    assert bus.calls[0] == ("write_byte", 0x68, 0x23, 0x78)  # + XG, YG, ZG


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("address", [0x00, 0x67, 0x6A, 0x77])
def test_constructor_refuses_addresses_the_chip_cannot_have(address: int) -> None:
    with pytest.raises(SensorConfigError, match="0x68 or 0x69"):
        MPU6050(ReplayBus(), address)


def test_a_wrong_chip_id_names_expected_and_found() -> None:
    with pytest.raises(SensorError, match=re.escape("reads 0x70, expected 0x68")):
        MPU6050(ReplayBus({0x75: [0x70]}))  # an MPU-6500 answers 0x70


@pytest.mark.parametrize(
    ("rate", "dlpf", "message"),
    [
        (300.0, 1, "nearest: 250 Hz or 333.333 Hz"),
        (2000.0, 3, "3.90625..1000 Hz"),
        (3.0, 1, "nearest: 3.90625 Hz"),
        (20.0, 0, "31.25..8000 Hz"),
        (math.nan, 1, "positive number"),
        (100.0, 7, "DLPF_CFG of 0..6"),
    ],
)
def test_unachievable_sample_rates_name_the_nearest(rate: float, dlpf: int, message: str) -> None:
    with pytest.raises(SensorConfigError, match=re.escape(message)):
        sample_rate_divider(rate, dlpf)
    driver = MPU6050(ReplayBus())
    with pytest.raises(SensorConfigError):
        driver.configure(sample_rate=rate, dlpf=dlpf)
    assert driver.settings.sample_rate == 100.0  # unchanged


def test_unknown_ranges_name_the_choices() -> None:
    driver = MPU6050(ReplayBus())
    with pytest.raises(SensorConfigError, match="'2g', '4g', '8g', '16g'"):
        driver.configure(accel_range="3g")  # type: ignore[arg-type]
    with pytest.raises(SensorConfigError, match="'250dps', '500dps'"):
        driver.configure(gyro_range="250")  # type: ignore[arg-type]


def test_read_fifo_before_start_fifo_says_what_to_do() -> None:
    with pytest.raises(SensorError, match=re.escape("call start_fifo() first")):
        MPU6050(ReplayBus()).read_fifo()


# --- FIFO framing against a scripted FIFO -----------------------------------------------


class FifoBus(ReplayBus):
    """A chip whose FIFO the test fills byte by byte, as the chip writes it."""

    def __init__(self) -> None:
        super().__init__({0x3A: [0x00]})
        self.fifo = bytearray()

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        if register == 0x72:
            self.registers[0x72] = word(len(self.fifo))
        elif register == 0x74:
            assert length <= len(self.fifo), "read past the FIFO's contents"
            self.registers[0x74] = list(self.fifo[:length])
            del self.fifo[:length]
        return super().read_i2c_block_data(i2c_addr, register, length)


def accel_frame(x: int, y: int, z: int) -> bytes:
    return bytes(word(x) + word(y) + word(z))


def test_a_frame_still_being_written_waits_for_the_next_read() -> None:
    bus = FifoBus()
    driver = MPU6050(bus)
    driver.start_fifo()
    third = accel_frame(0x2000, 0x1000, 0x4000)
    bus.fifo += accel_frame(0x4000, 0, 0) + accel_frame(0, 0x4000, 0) + third[:3]  # 15 bytes
    assert driver.read_fifo() == [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)]
    assert bus.fifo == third[:3]  # the partial frame was left in place
    bus.fifo += third[3:] + accel_frame(-0x4000, 0, 0)
    assert driver.read_fifo() == [(0.5, 0.25, 1.0), (-1.0, 0.0, 0.0)]
    assert bus.fifo == b""


def test_fifo_is_read_in_whole_frame_blocks_of_at_most_30_bytes() -> None:
    bus = FifoBus()
    driver = MPU6050(bus)
    driver.start_fifo()
    bus.fifo += b"".join(accel_frame(i, -i, 2 * i) for i in range(23)) + b"\x01\x02"
    del bus.calls[:]
    samples = driver.read_fifo()
    assert [round(s[0] * 16384) for s in samples] == list(range(23))
    assert bus.calls[0] == ("read_block", 0x68, 0x72, 2)
    sizes = [c[3] for c in bus.calls if c[:3] == ("read_block", 0x68, 0x74)]
    assert sizes == [30, 30, 30, 30, 18]  # 138 bytes = 23 frames; 2 bytes stay
    assert bus.calls[-1] == ("read_byte", 0x68, 0x3A)  # overflow checked after the drain


def test_an_overflow_flag_discards_what_was_read_and_resets() -> None:
    bus = FifoBus()
    driver = MPU6050(bus)
    driver.configure(sample_rate=500.0, dlpf=1)
    driver.start_fifo()
    bus.fifo += bytes(range(256)) * 4  # 1024 bytes, misaligned garbage
    bus.registers[0x3A] = [0x10]  # FIFO_OFLOW_INT
    del bus.calls[:]
    with pytest.raises(SensorError, match=r"FIFO overflow: samples lost .* 170 samples, 0\.34 s"):
        driver.read_fifo()
    assert bus.calls[-3:] == [
        ("write_byte", 0x68, 0x6A, 0x04),
        ("read_byte", 0x68, 0x3A),
        ("write_byte", 0x68, 0x6A, 0x40),
    ]


# --- the chip model -------------------------------------------------------------------------


class HandClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class RecordingBus(SimulatedBus):
    """A SimulatedBus that remembers the length of every block read, and can run a hook."""

    def __init__(self) -> None:
        super().__init__()
        self.block_reads: list[tuple[int, int]] = []
        self.on_fifo_read: list[typing.Callable[[], None]] = []

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self.block_reads.append((register, length))
        if register == 0x74 and self.on_fifo_read:
            self.on_fifo_read.pop(0)()
        return super().read_i2c_block_data(i2c_addr, register, length)


def constant(value: float) -> TimeSignal:
    return lambda _t: value


ZERO = constant(0.0)


class Rig(typing.NamedTuple):
    """A driver on a model on a recording bus, with the model's hand-advanced clock."""

    driver: MPU6050
    chip: SimulatedMPU6050
    bus: RecordingBus
    clock: HandClock


def on_model(
    accel: tuple[TimeSignal, TimeSignal, TimeSignal] = (ZERO, ZERO, ZERO),
    gyro: tuple[TimeSignal, TimeSignal, TimeSignal] = (ZERO, ZERO, ZERO),
    temperature: TimeSignal | None = None,
) -> Rig:
    clock = HandClock()
    chip = SimulatedMPU6050(clock, accel, gyro, temperature or constant(25.0))
    bus = RecordingBus()
    bus.attach(0x68, chip)
    return Rig(MPU6050(bus), chip, bus, clock)


def in_range(lsb_per_unit: float) -> st.SearchStrategy[float]:
    top = 0x7FFF / lsb_per_unit
    return st.floats(min_value=-top, max_value=top)


@given(st.data())
def test_burst_round_trip_within_half_an_lsb(data: st.DataObject) -> None:
    afs = data.draw(st.integers(0, 3))
    fs = data.draw(st.integers(0, 3))
    a_lsb, g_lsb = ACCEL_LSB_PER_G[afs], GYRO_LSB_PER_DPS[fs]
    accel = [data.draw(in_range(a_lsb)) for _ in range(3)]
    gyro = [data.draw(in_range(g_lsb)) for _ in range(3)]
    celsius = data.draw(st.floats(min_value=-40.0, max_value=85.0))
    driver, *_ = on_model(
        (constant(accel[0]), constant(accel[1]), constant(accel[2])),
        (constant(gyro[0]), constant(gyro[1]), constant(gyro[2])),
        constant(celsius),
    )
    driver.configure(ACCEL_RANGES[afs], GYRO_RANGES[fs])
    reading = driver.read()
    slack = 1e-9  # a value exactly half an LSB between codes may land either side, plus float error
    assert reading["accel"] == pytest.approx(accel, abs=0.5 / a_lsb + slack)
    assert reading["gyro"] == pytest.approx(gyro, abs=0.5 / g_lsb + slack)
    assert reading["temperature"] == pytest.approx(celsius, abs=0.5 / 340 + slack)


@pytest.mark.parametrize(
    ("accel_range", "gyro_range", "a_lsb", "g_lsb"),
    [("2g", "250dps", 16384.0, 131.0), ("16g", "2000dps", 2048.0, 16.4)],
)
def test_model_clips_at_full_scale(
    accel_range: Any, gyro_range: Any, a_lsb: float, g_lsb: float
) -> None:
    driver, *_ = on_model((constant(50.0), constant(-50.0), constant(1.0)), (constant(5000.0),) * 3)
    driver.configure(accel_range, gyro_range)
    reading = driver.read()
    assert reading["accel"] == (32767 / a_lsb, -32768 / a_lsb, 1.0)
    assert reading["gyro"] == (32767 / g_lsb,) * 3


def test_model_powers_up_asleep_and_the_driver_wakes_it() -> None:
    clock = HandClock()
    chip = SimulatedMPU6050(clock, (constant(0.5),) * 3)
    bus = SimulatedBus()
    bus.attach(0x69, chip)
    assert bus.read_byte_data(0x69, 0x75) == 0x68  # WHO_AM_I ignores AD0
    assert bus.read_byte_data(0x69, 0x6B) == 0x40
    assert bus.read_i2c_block_data(0x69, 0x3B, 6) == [0] * 6  # asleep: no conversions
    assert MPU6050(bus, 0x69).read()["accel"] == (0.5, 0.5, 0.5)
    bus.write_byte_data(0x69, 0x6B, 0x80)  # DEVICE_RESET
    assert bus.read_byte_data(0x69, 0x6B) == 0x40
    assert bus.read_byte_data(0x69, 0x19) == 0


def test_model_fifo_reset_needs_fifo_en_clear() -> None:
    rig = on_model()
    rig.driver.start_fifo()
    rig.clock.t = 0.05
    assert rig.bus.read_i2c_block_data(0x68, 0x72, 2) == [0, 30]  # 5 samples at 100 Hz
    rig.bus.write_byte_data(0x68, 0x6A, 0x44)  # FIFO_EN | FIFO_RESET: ignored, as the map says
    assert rig.bus.read_i2c_block_data(0x68, 0x72, 2) == [0, 30]
    assert rig.bus.read_byte_data(0x68, 0x6A) == 0x40  # FIFO_RESET clears itself
    rig.bus.write_byte_data(0x68, 0x6A, 0x04)
    assert rig.bus.read_i2c_block_data(0x68, 0x72, 2) == [0, 0]


def test_model_fifo_does_not_fill_while_asleep_or_disabled() -> None:
    rig = on_model()
    rig.clock.t = 1.0
    assert rig.bus.read_i2c_block_data(0x68, 0x72, 2) == [0, 0]  # FIFO not enabled
    rig.driver.start_fifo()
    rig.bus.write_byte_data(0x68, 0x6B, 0x41)  # SLEEP
    rig.clock.t = 2.0
    assert rig.bus.read_i2c_block_data(0x68, 0x72, 2) == [0, 0]
    rig.bus.write_byte_data(0x68, 0x6B, 0x01)
    rig.clock.t = 2.1
    assert rig.driver.read_fifo() == [(0.0, 0.0, 0.0)] * 10


def test_model_drops_the_oldest_bytes_on_overflow_and_the_driver_never_returns_them() -> None:
    ramp = 0.25  # g per second on x, so each sample's value says when it was taken
    rig = on_model((lambda t: ramp * t, constant(0.0), constant(1.0)))
    rig.driver.configure(sample_rate=500.0, dlpf=1)
    rig.driver.start_fifo()
    rig.clock.t = 0.5  # 250 samples: 1500 bytes into a 1024-byte FIFO
    assert rig.bus.read_i2c_block_data(0x68, 0x72, 2) == word(1024)  # 170 frames and 4 bytes
    assert bytes(rig.chip.fifo[-6:]) == accel_frame(round(ramp * 0.5 * 16384), 0, 16384)
    with pytest.raises(SensorError, match="FIFO overflow"):
        rig.driver.read_fifo()
    assert len(rig.chip.fifo) == 0  # reset
    rig.clock.t = 0.6
    samples = rig.driver.read_fifo()
    assert len(samples) == 50
    expected = [ramp * k / 500 for k in range(251, 301)]  # the ticks after the reset at 0.5 s
    assert [s[0] for s in samples] == pytest.approx(expected, abs=0.5 / 16384)


def test_int_status_latches_until_read_and_ignores_writes() -> None:
    rig = on_model()
    rig.driver.start_fifo()
    rig.clock.t = 20.0  # 2000 samples at 100 Hz
    rig.bus.write_byte_data(0x68, 0x3A, 0x00)
    assert rig.bus.read_byte_data(0x68, 0x3A) == 0x11  # FIFO_OFLOW_INT | DATA_RDY_INT
    assert rig.bus.read_byte_data(0x68, 0x3A) == 0x00  # cleared by the read
    rig.clock.t = 20.01
    assert rig.bus.read_byte_data(0x68, 0x3A) == 0x11  # full FIFO: the next sample overflows it


def test_an_overflow_during_the_drain_is_caught() -> None:
    rig = on_model()
    rig.driver.configure(sample_rate=1000.0, dlpf=1)
    rig.driver.start_fifo()
    rig.clock.t = 0.1  # 100 samples, 600 bytes

    def late() -> None:
        rig.clock.t = 0.2  # another 100 arrive while the first are read: 1200 bytes

    rig.bus.on_fifo_read.append(late)
    with pytest.raises(SensorError, match="FIFO overflow"):
        rig.driver.read_fifo()


def test_gyro_in_the_fifo_makes_12_byte_frames_read_24_bytes_at_a_time() -> None:
    rig = on_model(
        (constant(0.5), constant(-0.5), constant(1.0)),
        (constant(10.0), constant(-20.0), constant(30.0)),
    )
    rig.driver.start_fifo(gyro=True)
    rig.clock.t = 0.1
    del rig.bus.block_reads[:]
    frames = rig.driver.read_fifo_frames()
    assert len(frames) == 10
    assert frames[0].accel == (0.5, -0.5, 1.0)
    assert frames[0].gyro == pytest.approx((10.0, -20.0, 30.0), abs=0.5 / 131)
    assert [n for r, n in rig.bus.block_reads if r == 0x74] == [24, 24, 24, 24, 24]
    assert rig.driver.read_fifo() == []


def test_reconfiguring_empties_a_running_fifo() -> None:
    rig = on_model((constant(1.0), constant(0.0), constant(0.0)))
    rig.driver.start_fifo()
    rig.clock.t = 0.05
    rig.driver.configure(accel_range="4g")  # 5 frames at 16384 LSB/g are in the FIFO
    rig.clock.t = 0.1
    assert rig.driver.read_fifo() == [(1.0, 0.0, 0.0)] * 5


def test_a_200_hz_sine_comes_back_at_200_hz() -> None:
    # Sampled at 500 Hz; phase 0.3 keeps samples off the zero crossings.
    def sine(t: float) -> float:
        return 0.5 * math.sin(2 * math.pi * 200.0 * t + 0.3)

    rig = on_model((sine, constant(0.0), constant(1.0)))
    rig.driver.configure(sample_rate=500.0, dlpf=1)
    rig.driver.start_fifo()
    samples: list[tuple[float, float, float]] = []
    for poll in range(1, 11):  # the runtime polling at 10 Hz for one second
        rig.clock.t = poll / 10
        samples += rig.driver.read_fifo()
    assert len(samples) == 500
    x = [s[0] for s in samples]
    crossings = sum(1 for a, b in itertools.pairwise(x) if (a > 0) != (b > 0))
    assert crossings / 2 / 1.0 == pytest.approx(200.0, abs=1.0)
    assert max(x) == pytest.approx(0.5, abs=0.02)
    assert all(n <= 30 for r, n in rig.bus.block_reads)


@given(st.lists(st.integers(min_value=0, max_value=300), min_size=1, max_size=20))
def test_every_sample_arrives_once_in_order_at_its_tick(polls_ms: list[int]) -> None:
    # Polls at most 300 ms apart (150 samples at 500 Hz) never overflow the FIFO.
    rig = on_model((lambda t: 0.3 * t, constant(0.0), constant(1.0)))
    rig.driver.configure(sample_rate=500.0, dlpf=1)
    rig.driver.start_fifo()
    samples: list[tuple[float, float, float]] = []
    elapsed_ms = 0
    for interval in polls_ms:
        elapsed_ms += interval
        rig.clock.t = elapsed_ms / 1000
        samples += rig.driver.read_fifo()
    ticks = elapsed_ms // 2
    assert len(samples) == ticks
    assert [s[0] for s in samples] == pytest.approx(
        [0.3 * k / 500 for k in range(1, ticks + 1)], abs=0.5 / 16384
    )
    assert all(n <= 30 and n % 6 == 0 for r, n in rig.bus.block_reads if r == 0x74)


def test_missing_chip_raises_oserror_121() -> None:
    rig = on_model()
    rig.bus.detach(0x68)
    with pytest.raises(OSError) as info:
        rig.driver.read()
    assert info.value.errno == 121


# --- the registry entry ----------------------------------------------------------------------


def is_allowed_annotation(annotation: object) -> bool:
    """int, float, bool, str, Literal[...] of strings, or X | None (the config convention)."""
    if annotation in (int, float, bool, str):
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(arg, str) for arg in typing.get_args(annotation))
    if isinstance(annotation, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(rest) == 1 and is_allowed_annotation(rest[0])
    return False


def test_params_follow_the_config_convention() -> None:
    assert SENSOR_TYPE.name == "i2c.mpu6050" and SENSOR_TYPE.polled
    assert SENSOR_TYPE.params is MPU6050Params
    fields = {f.name: f for f in dataclasses.fields(MPU6050Params)}
    for f in fields.values():
        assert is_allowed_annotation(f.type), f.name
        assert f.metadata["doc"] and "\n" not in f.metadata["doc"]
    assert fields["address"].metadata["choices"] == (0x68, 0x69)
    assert fields["address"].metadata["hex"] is True
    assert MPU6050Params() == MPU6050Params(1, 0x68, "2g", "250dps", 100.0, 3, "burst")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 300.0, "dlpf": 1}, "nearest: 250 Hz or 333.333 Hz"),
        ({"sample_rate": 2000.0, "dlpf": 0, "mode": "fifo"}, "at most 1000 Hz in fifo mode"),
    ],
)
def test_params_refuse_rates_the_chip_cannot_make(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MPU6050Params(**kwargs)
    assert MPU6050Params(sample_rate=2000.0, dlpf=0).sample_rate == 2000.0  # fine in burst


def hardware(bus: SimulatedBus) -> Hardware:
    return Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0)


def test_registry_builds_a_burst_sensor() -> None:
    rig = on_model((constant(0.0), constant(0.0), constant(1.0)))
    params = MPU6050Params(accel_range="4g", gyro_range="500dps", sample_rate=200.0, dlpf=2)
    sensor = SENSOR_TYPE.build(params, hardware(rig.bus))
    assert isinstance(sensor, MPU6050Sensor) and sensor.unit == ""
    assert sensor.read() == {
        "accel": (0.0, 0.0, 1.0),
        "gyro": (0.0, 0.0, 0.0),
        "temperature": pytest.approx(25.0, abs=0.5 / 340),
    }
    assert rig.bus.read_i2c_block_data(0x68, 0x19, 4) == [4, 2, 0x08, 0x08]
    sensor.close()
    sensor.close()
    assert rig.bus.read_byte_data(0x68, 0x75) == 0x68  # the shared bus stays open


def test_registry_builds_a_fifo_sensor_with_a_window() -> None:
    rig = on_model((lambda t: 0.1 * t, constant(0.0), constant(1.0)))
    params = MPU6050Params(sample_rate=250.0, dlpf=1, mode="fifo")
    sensor = SENSOR_TYPE.build(params, hardware(rig.bus))
    assert isinstance(sensor, MPU6050Sensor)
    rig.clock.t = 0.1
    value = sensor.read()
    assert value["samples"] == 25
    assert value["accel"] == pytest.approx((0.01, 0.0, 1.0), abs=1 / 16384)
    window = sensor.window()
    assert len(window) == 25 and window[-1] == value["accel"]
    assert sensor.read() == {"accel": pytest.approx((0.01, 0.0, 1.0), abs=1e-4), "samples": 0}
    assert sensor.window() == []
    rig.clock.t = 10.0
    with pytest.raises(SensorError, match="FIFO overflow"):
        sensor.read()
    assert sensor.window() == []


def test_simulate_feeds_the_model_from_the_scenario_signals() -> None:
    asked: dict[str, float] = {}

    def signal(quantity: str, typical: float) -> typing.Callable[[], float]:
        asked[quantity] = typical
        return lambda: typical + (0.25 if quantity == "accel_x" else 0.0)

    part = simulate(MPU6050Params(bus=3, address=0x69), signal)
    assert (part.bus, part.address) == (3, 0x69)
    assert asked == {
        "accel_x": 0.0,
        "accel_y": 0.0,
        "accel_z": 1.0,
        "gyro_x": 0.0,
        "gyro_y": 0.0,
        "gyro_z": 0.0,
        "temperature": 25.0,
    }
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    reading = MPU6050(bus, 0x69).read()
    assert reading["accel"] == (0.25, 0.0, 1.0)
    assert reading["temperature"] == pytest.approx(25.0, abs=0.5 / 340)


def test_simulate_in_fifo_mode_needs_the_clock() -> None:
    def signal(quantity: str, typical: float) -> typing.Callable[[], float]:
        return lambda: typical

    params = MPU6050Params(mode="fifo", sample_rate=100.0)
    with pytest.raises(SensorConfigError, match="needs the simulator's clock"):
        simulate(params, signal)
    clock = HandClock()
    part = simulate(params, signal, clock)
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    sensor = SENSOR_TYPE.build(params, hardware(bus))
    clock.t = 0.5
    value: Any = sensor.read()
    assert value == {"accel": (0.0, 0.0, 1.0), "samples": 50}


@pytest.mark.hardware
def test_real_chip_reads_about_one_g() -> None:
    with i2c_chip("MPU6050", 0x68) as (bus, address):
        accel = MPU6050(bus, address).read()["accel"]
        assert 0.8 <= math.sqrt(sum(a * a for a in accel)) <= 1.2  # gravity, at rest
