"""A chip described only in config: decoding, encoding, setup writes, and the registry entry."""

import dataclasses
import errno
import math
import re
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensors import TMP102, Hardware, SensorConfigError, SimulatedBus, SimulatedTMP102
from sensors.registers import (
    SENSOR_TYPE,
    RegisterLayout,
    RegisterReader,
    RegistersParams,
    parse_setup,
)
from sensors.sim.registers import SimulatedRegisters, simulate


class ReplayBus:
    """Answers block reads with canned register bytes and records every transfer."""

    def __init__(self, registers: dict[int, list[int]], *, failing_writes: int = 0) -> None:
        self.registers = registers
        self.calls: list[tuple[object, ...]] = []
        self.failing_writes = failing_writes

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int) -> list[int]:
        self.calls.append(("read_block", i2c_addr, register, length))
        return self.registers[register][:length]

    def write_byte_data(self, i2c_addr: int, register: int, value: int) -> None:
        self.calls.append(("write_byte", i2c_addr, register, value))
        if self.failing_writes:
            self.failing_writes -= 1
            raise OSError(errno.EIO, "NACK")

    def _unused(self, *args: object) -> typing.Any:
        raise AssertionError("the register reader uses block reads and byte writes only")

    read_byte = write_byte = read_byte_data = write_i2c_block_data = _unused
    read_word_data = write_word_data = close = _unused


# (layout, register bytes, value): hand-worked examples.
HAND_EXAMPLES = [
    # Big-endian signed 16-bit 0xFF38 = -200 counts at 0.01 per count.
    (RegisterLayout(0x10, 2, "big", signed=True, scale=0.01), [0xFF, 0x38], -2.0),
    (RegisterLayout(0x10, 2, "big", signed=False), [0xFF, 0x38], 65336.0),
    (RegisterLayout(0x10, 2, "little", signed=False), [0x38, 0xFF], 65336.0),
    (RegisterLayout(0x10, 2, "little", signed=True), [0x38, 0xFF], -200.0),
    (RegisterLayout(0x10, 1, signed=True), [0x80], -128.0),
    (RegisterLayout(0x10, 1, signed=False, scale=0.5, offset=-40.0), [0x80], 24.0),
    # TMP102 temperature register read as registers: 0x1900 = 25 degC, 0xE700 = -25 degC.
    (RegisterLayout(0x00, 2, signed=True, shift=4, scale=0.0625), [0x19, 0x00], 25.0),
    (RegisterLayout(0x00, 2, signed=True, shift=4, scale=0.0625), [0xE7, 0x00], -25.0),
    # 12 data bits under 4 status bits: the mask drops the status bits.
    (RegisterLayout(0x10, 2, mask=0x0FFF), [0xAB, 0xCD], 0xBCD),
    # 14-bit signed field: 0x2001 has its sign bit (bit 13) set.
    (RegisterLayout(0x10, 2, signed=True, mask=0x3FFF), [0xE0, 0x01], 0x2001 - 0x4000),
    # A field in the middle: bits 11..4, signed.
    (RegisterLayout(0x10, 2, signed=True, mask=0x0FF0, shift=4), [0xF8, 0x0F], -128.0),
    # 24-bit little-endian signed, most negative.
    (RegisterLayout(0x10, 3, "little", signed=True), [0x00, 0x00, 0x80], -(2**23)),
    (RegisterLayout(0x10, 8, "big", signed=False), [0xFF] * 8, float(2**64 - 1)),
]


@pytest.mark.parametrize(("layout", "data", "value"), HAND_EXAMPLES)
def test_reader_decodes_hand_examples_with_one_block_read(
    layout: RegisterLayout, data: list[int], value: float
) -> None:
    bus = ReplayBus({layout.register: data})
    assert RegisterReader(bus, 0x40, layout, quantity="x").read() == {"x": value}
    assert bus.calls == [("read_block", 0x40, layout.register, layout.length)]


@pytest.mark.parametrize(("layout", "data", "value"), HAND_EXAMPLES)
def test_encode_gives_the_hand_examples_back(
    layout: RegisterLayout, data: list[int], value: float
) -> None:
    # Bits outside the field come from the register's current bytes.
    assert layout.encode(value, around=data) == bytes(data)


def test_encode_zeroes_bits_outside_the_field_unless_given() -> None:
    layout = RegisterLayout(0x10, 2, mask=0x0FFF)
    assert layout.encode(0xBCD) == bytes([0x0B, 0xCD])
    assert layout.encode(0xBCD, around=[0xA0, 0x00]) == bytes([0xAB, 0xCD])


@pytest.mark.parametrize(
    ("layout", "value", "data"),
    [
        (RegisterLayout(0x10, 2, signed=True, scale=0.01), 1e9, [0x7F, 0xFF]),
        (RegisterLayout(0x10, 2, signed=True, scale=0.01), -1e9, [0x80, 0x00]),
        (RegisterLayout(0x10, 1, signed=False), -3.0, [0x00]),
        (RegisterLayout(0x10, 1, signed=False), 255.4, [0xFF]),
        (RegisterLayout(0x10, 2, signed=True, shift=4, scale=0.0625), 500.0, [0x7F, 0xF0]),
        (RegisterLayout(0x10, 2, scale=-0.5, offset=100.0), 100.0 - 0.5 * 7, [0x00, 0x07]),
        (RegisterLayout(0x10, 2, scale=-0.5, offset=100.0), 1e6, [0x00, 0x00]),
        (RegisterLayout(0x10, 1, scale=1e-300), 1e300, [0xFF]),
    ],
)
def test_encode_rounds_and_clamps_to_the_field(
    layout: RegisterLayout, value: float, data: list[int]
) -> None:
    assert layout.encode(value) == bytes(data)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_encode_refuses_values_that_are_not_finite(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        RegisterLayout(0x10).encode(value)


@st.composite
def layouts(draw: st.DrawFn) -> RegisterLayout:
    length = draw(st.integers(1, 8))
    bits = 8 * length
    shift = draw(st.integers(0, bits - 1))
    width = draw(st.integers(1, bits - shift))
    mask = draw(st.sampled_from([None, ((1 << width) - 1) << shift]))
    magnitude = draw(st.floats(1e-4, 1e4))
    return RegisterLayout(
        register=draw(st.integers(0, 256 - length)),
        length=length,
        byte_order=draw(st.sampled_from(["big", "little"])),
        signed=draw(st.booleans()),
        mask=mask,
        shift=shift,
        scale=draw(st.sampled_from([1.0, -1.0])) * magnitude,
        offset=draw(st.floats(-1e4, 1e4)),
    )


@given(layouts(), st.floats(0.0, 1.0), st.data())
def test_round_trip_through_the_model_within_one_lsb(
    layout: RegisterLayout, fraction: float, data: st.DataObject
) -> None:
    low, high = layout.field_range
    ends = sorted((low * layout.scale + layout.offset, high * layout.scale + layout.offset))
    value = ends[0] + fraction * (ends[1] - ends[0])
    flags = data.draw(st.lists(st.integers(0, 255), min_size=layout.length, max_size=layout.length))
    chip = SimulatedRegisters(layout, lambda: value)
    start = layout.register
    chip.registers[start : start + layout.length] = bytes(flags)  # bits outside the field
    bus = SimulatedBus()
    bus.attach(0x33, chip)
    decoded = RegisterReader(bus, 0x33, layout).read()["value"]
    # One LSB, or what float64 can hold of a 64-bit count, whichever is more.
    tolerance = abs(layout.scale) + 8 * math.ulp(max(abs(value), abs(layout.offset)))
    assert abs(decoded - value) <= tolerance
    word = int.from_bytes(bytes(chip.registers[start : start + layout.length]), layout.byte_order)
    outside = (1 << 8 * layout.length) - 1 & ~(((1 << layout.width) - 1) << layout.shift)
    assert word & outside == int.from_bytes(bytes(flags), layout.byte_order) & outside


@given(st.floats(min_value=-55.0, max_value=127.9375))
def test_a_tmp102_described_as_registers_reads_like_the_tmp102_driver(celsius: float) -> None:
    bus = SimulatedBus()
    bus.attach(0x48, SimulatedTMP102(lambda: celsius))
    params = RegistersParams(
        address=0x48, register=0, length=2, signed=True, shift=4, scale=0.0625, unit="degC"
    )
    hw = Hardware(pin_factory=None, i2c=lambda n: bus, now=lambda: 0.0)
    sensor = SENSOR_TYPE.build(params, hw)
    assert sensor.unit == "degC"
    assert sensor.read() == TMP102(bus, 0x48).read()["temperature"]  # type: ignore[union-attr]


def test_setup_writes_go_out_once_in_order_before_the_first_read() -> None:
    bus = ReplayBus({0xFA: [0x12, 0x34]})
    layout = RegisterLayout(0xFA, 2)
    reader = RegisterReader(bus, 0x76, layout, setup=parse_setup("0xF4=0x27, 0xF5=0xA0"))
    assert bus.calls == []  # no traffic at construction
    reader.read()
    reader.read()
    assert bus.calls == [
        ("write_byte", 0x76, 0xF4, 0x27),
        ("write_byte", 0x76, 0xF5, 0xA0),
        ("read_block", 0x76, 0xFA, 2),
        ("read_block", 0x76, 0xFA, 2),
    ]


def test_failed_setup_is_retried_on_the_next_read() -> None:
    bus = ReplayBus({0x00: [0x01]}, failing_writes=1)
    reader = RegisterReader(bus, 0x20, RegisterLayout(0x00, 1), setup=[(0x01, 0x80), (0x02, 0x03)])
    with pytest.raises(OSError):
        reader.read()
    assert reader.read() == {"value": 1.0}
    assert bus.calls == [
        ("write_byte", 0x20, 0x01, 0x80),  # NACKed
        ("write_byte", 0x20, 0x01, 0x80),
        ("write_byte", 0x20, 0x02, 0x03),
        ("read_block", 0x20, 0x00, 1),
    ]


def test_model_reads_zero_until_set_up_and_records_the_writes() -> None:
    layout = RegisterLayout(0xFA, 2, scale=0.5)
    setup = parse_setup("0xF4=0x27,0xF5=0xA0")
    chip = SimulatedRegisters(layout, lambda: 100.0, setup=setup)
    bus = SimulatedBus()
    bus.attach(0x76, chip)
    assert bus.read_i2c_block_data(0x76, 0xFA, 2) == [0, 0]  # asleep
    bus.write_byte_data(0x76, 0xF4, 0x26)  # not the configured value
    bus.write_byte_data(0x76, 0xF5, 0xA0)
    assert chip.configured is False
    assert bus.read_i2c_block_data(0x76, 0xFA, 2) == [0, 0]
    assert RegisterReader(bus, 0x76, layout, setup=setup).read() == {"value": 100.0}
    assert chip.configured is True
    assert chip.writes == [(0xF4, 0x26), (0xF5, 0xA0), (0xF4, 0x27), (0xF5, 0xA0)]
    assert bus.read_i2c_block_data(0x76, 0xF4, 2) == [0x27, 0xA0]


def test_model_samples_the_signal_on_reads_touching_the_value_only() -> None:
    samples: list[float] = []

    def signal() -> float:
        samples.append(1.0)
        return 7.0

    bus = SimulatedBus()
    bus.attach(0x50, SimulatedRegisters(RegisterLayout(0x10, 2), signal))
    bus.read_i2c_block_data(0x50, 0x00, 16)  # ends just before the value
    bus.read_byte_data(0x50, 0x12)  # just after
    assert samples == []
    assert bus.read_byte_data(0x50, 0x11) == 7  # the low byte alone
    assert bus.read_i2c_block_data(0x50, 0x0F, 4) == [0, 0, 7, 0]
    assert len(samples) == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0xF4=0x27,0xF5=0xA0", ((0xF4, 0x27), (0xF5, 0xA0))),
        (" 0xf4 = 0x27 , 245=160 ", ((0xF4, 0x27), (0xF5, 0xA0))),
        ("0x00=0b1010", ((0x00, 0x0A),)),
        ("0x01=0xFF,0x01=0x00", ((0x01, 0xFF), (0x01, 0x00))),
        ("", ()),
    ],
)
def test_setup_parses(text: str, expected: tuple[tuple[int, int], ...]) -> None:
    assert parse_setup(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0xF4=0x27,0xF5", "setup item 2 '0xF5': expected register=value"),
        ("0xF4=0x27,,0xF5=1", "setup item 2 '': expected register=value"),
        ("0xF4=0x27,", "setup item 2 '': expected register=value"),
        ("F4=27", "setup item 1 'F4=27': register 'F4' is not an integer"),
        ("0xF4=high", "setup item 1 '0xF4=high': value 'high' is not an integer"),
        ("0xF4=0x100", "setup item 1 '0xF4=0x100': value must be 0..255 (0x00..0xFF), got 256"),
        ("0x1F4=1", "setup item 1 '0x1F4=1': register must be 0..255 (0x00..0xFF), got 500"),
        ("1=-1", "setup item 1 '1=-1': value must be 0..255"),
        ("0xF4=0x27=1", "setup item 1 '0xF4=0x27=1': value '0x27=1' is not an integer"),
    ],
)
def test_setup_errors_name_the_bad_item(text: str, message: str) -> None:
    with pytest.raises(SensorConfigError, match=re.escape(message)):
        parse_setup(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        RegistersParams(address=0x40, register=0, setup=text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"register": 256}, "register must be 0..255"),
        ({"length": 0}, "length must be 1..8"),
        ({"length": 9}, "length must be 1..8"),
        ({"register": 0xFE, "length": 4}, "register 0xFE + length 4 runs past register 0xFF"),
        ({"byte_order": "middle"}, "byte_order"),
        ({"length": 1, "shift": 8}, "shift must be 0..7 for a 1-byte value"),
        ({"length": 1, "mask": 0x100}, "mask must be 1..0xff"),
        ({"mask": 0}, "mask must be 1..0xffff"),
        ({"mask": 0x0F0F}, "mask 0xf0f must be one run of 1 bits"),
        ({"mask": 0x0FF0}, "mask 0xff0 starts at bit 4 but shift is 0: set shift = 4"),
        ({"mask": 0x0FFF, "shift": 4}, "starts at bit 0 but shift is 4"),
        ({"scale": 0.0}, "scale must be a finite number other than 0"),
        ({"scale": math.nan}, "scale"),
        ({"offset": math.inf}, "offset must be a finite number"),
    ],
)
def test_bad_layouts_are_config_errors_naming_the_field(
    kwargs: dict[str, typing.Any], message: str
) -> None:
    kwargs = {"register": 0x10, **kwargs}
    with pytest.raises(SensorConfigError, match=re.escape(message)):
        RegisterLayout(**kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        RegistersParams(address=0x40, **kwargs)


@pytest.mark.parametrize("address", [0x00, 0x02, 0x78, 0x7F])
def test_reader_refuses_reserved_addresses(address: int) -> None:
    with pytest.raises(SensorConfigError, match=re.escape("0x03..0x77")):
        RegisterReader(ReplayBus({}), address, RegisterLayout(0))


@pytest.mark.parametrize("quantity", ["", "air flow", "1st", "a-b"])
def test_params_quantity_must_be_a_name(quantity: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        RegistersParams(address=0x40, register=0, quantity=quantity)


def test_params_defaults_and_ranges() -> None:
    fields = {f.name: f for f in dataclasses.fields(RegistersParams)}
    assert all(f.metadata["doc"] and "\n" not in f.metadata["doc"] for f in fields.values())
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    assert required == ["address", "register"]
    assert (fields["address"].metadata["min"], fields["address"].metadata["max"]) == (0x03, 0x77)
    assert (fields["length"].metadata["min"], fields["length"].metadata["max"]) == (1, 8)
    assert typing.get_args(fields["byte_order"].type) == ("big", "little")
    assert fields["mask"].type == int | None
    assert fields["setup"].type == str | None
    params = RegistersParams(address=0x40, register=0)
    assert params.layout() == RegisterLayout(0, 2, "big", False, None, 0, 1.0, 0.0)
    assert (params.bus, params.unit, params.quantity, params.setup_writes()) == (
        1,
        "",
        "value",
        (),
    )


def test_registry_simulate_gives_a_part_the_built_sensor_reads() -> None:
    assert (SENSOR_TYPE.name, SENSOR_TYPE.polled, SENSOR_TYPE.units) == ("i2c.registers", True, {})
    params = RegistersParams(
        bus=2,
        address=0x40,
        register=0x02,
        length=2,
        scale=1.25e-3,  # an INA219-style bus voltage: 13 bits at 4 mV, above 3 flag bits
        mask=0xFFF8,
        shift=3,
        unit="V",
        setup="0x00=0x39",
        quantity="voltage",
    )
    asked: list[tuple[str, float]] = []

    def signal(quantity: str, typical: float) -> typing.Callable[[], float]:
        asked.append((quantity, typical))
        return lambda: 5.0

    part = simulate(params, signal)
    assert (part.bus, part.address) == (2, 0x40)
    assert asked == [("voltage", 4096 * 1.25e-3)]  # unsigned: mid-scale is typical
    bus = SimulatedBus()
    bus.attach(part.address, part.chip)
    opened: list[int] = []

    def i2c(n: int) -> SimulatedBus:
        opened.append(n)
        return bus

    sensor = SENSOR_TYPE.build(params, Hardware(pin_factory=None, i2c=i2c, now=lambda: 0.0))
    assert opened == [2]
    assert sensor.unit == "V"
    assert sensor.read() == 5.0  # type: ignore[union-attr]
    sensor.close()
    assert bus.read_i2c_block_data(0x40, 0x00, 1) == [0x39]  # set up, and the bus stays open


def test_signed_typical_value_is_the_field_at_zero() -> None:
    params = RegistersParams(address=0x40, register=0, signed=True, scale=0.01, offset=20.0)
    asked: list[float] = []

    def signal(quantity: str, typical: float) -> typing.Callable[[], float]:
        asked.append(typical)
        return lambda: typical

    simulate(params, signal)
    assert asked == [20.0]


def test_missing_chip_raises_oserror_121() -> None:
    reader = RegisterReader(SimulatedBus(), 0x40, RegisterLayout(0))
    with pytest.raises(OSError) as info:
        reader.read()
    assert info.value.errno == 121
