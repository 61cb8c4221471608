"""Every chip driver refuses an address its pins cannot select, naming it in hex as the
datasheet and ``i2cdetect`` do (0x7E, not 126)."""

from collections.abc import Callable
from typing import Any

import pytest

from sensors import ADS1115, BH1750, BME280, INA219, MPU6050, TMP102, SHT3x, SimulatedBus
from sensors.errors import SensorConfigError
from sensors.ports import hex_text
from sensors.registers import RegisterLayout, RegisterReader

DRIVERS: dict[str, Callable[[Any, int], object]] = {
    "ADS1115": ADS1115,
    "BH1750": BH1750,
    "BME280": BME280,
    "INA219": INA219,
    "MPU6050": MPU6050,
    "SHT3x": SHT3x,
    "TMP102": TMP102,
    "I2C": lambda bus, address: RegisterReader(bus, address, RegisterLayout(register=0)),
}


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_a_driver_names_a_wrong_address_in_hex(name: str) -> None:
    with pytest.raises(SensorConfigError) as info:
        DRIVERS[name](SimulatedBus(), 0x7E)
    message = str(info.value)
    assert message.startswith(f"{name} address must be "), message
    assert message.endswith(", got 0x7E"), message


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0x00"), (0x5C, "0x5C"), (0x1F4, "0x1F4"), (-1, "-0x01"), ("0x76", "'0x76'")],
)
def test_hex_text(value: object, text: str) -> None:
    assert hex_text(value) == text
