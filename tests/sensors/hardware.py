"""What the ``@pytest.mark.hardware`` tests stand on: a real I2C chip or a GPIO loop.

Each helper skips the test with the reason and the fix (which env var, which address,
which wiring) when the hardware is not there, so ``pytest -m hardware`` on a Pi runs
what is wired and says why it skipped the rest, and fails only on a wrong answer.

- ``EDGELINE_TEST_I2C_BUS``: the I2C bus number, ``/dev/i2c-N`` (default 1).
- ``EDGELINE_TEST_<CHIP>_ADDRESS``: a chip's address when not its datasheet default,
  e.g. ``EDGELINE_TEST_BME280_ADDRESS=0x77``.
- ``EDGELINE_TEST_GPIO_LOOP="OUT,IN"``: two BCM pins wired together (a jumper, or a
  1 kOhm resistor to be safe), for the GPIO contract.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

I2C_BUS_ENV = "EDGELINE_TEST_I2C_BUS"
GPIO_LOOP_ENV = "EDGELINE_TEST_GPIO_LOOP"


def address_env(chip: str) -> str:
    return f"EDGELINE_TEST_{chip.upper()}_ADDRESS"


def _int_from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        return int(text, 0)
    except ValueError:
        pytest.fail(f"{name}={text!r} is not a number (decimal or 0x-prefixed hex)")


@contextmanager
def i2c_chip(chip: str, default_address: int) -> Iterator[tuple[Any, int]]:
    """Yield ``(smbus2.SMBus, address)`` for the real ``chip``, or skip saying what is missing.

    The chip is probed the way ``i2cdetect`` does (a quick write, or a one-byte read in
    the ranges where a quick write can upset EEPROMs), so an absent chip skips instead
    of failing with a NACK inside the driver.
    """
    import smbus2  # a dependency of edgeline: only the hardware can be missing

    number = _int_from_env(I2C_BUS_ENV, 1)
    address = _int_from_env(address_env(chip), default_address)
    try:
        bus = smbus2.SMBus(number)
    except OSError as exc:
        pytest.skip(
            f"{chip}: no I2C bus /dev/i2c-{number} ({exc}); enable I2C (raspi-config) "
            f"or set {I2C_BUS_ENV} to the bus the chip is on"
        )
    with bus:
        try:
            if 0x30 <= address <= 0x37 or 0x50 <= address <= 0x5F:
                bus.read_byte(address)
            else:
                bus.write_quick(address)
        except OSError as exc:
            pytest.skip(
                f"{chip}: nothing answers at {address:#04x} on /dev/i2c-{number} ({exc}); "
                f"wire one there, or set {address_env(chip)} to its address"
            )
        yield bus, address


def gpio_loop() -> tuple[int, int, Any]:
    """``(out_pin, in_pin, pin_factory)`` for two real pins wired together, or skip.

    The factory is gpiozero's default (``GPIOZERO_PIN_FACTORY``, else auto-detected:
    lgpio on a Pi 5), the one the runtime uses on a device.
    """
    text = os.environ.get(GPIO_LOOP_ENV, "").strip()
    if not text:
        pytest.skip(
            f'set {GPIO_LOOP_ENV}="OUT,IN" to two BCM pins wired together '
            f'(e.g. "20,21") to run the GPIO contract on real pins'
        )
    try:
        out_pin, in_pin = (int(part, 10) for part in text.split(","))
    except ValueError:
        pytest.fail(f"{GPIO_LOOP_ENV}={text!r}: expected two BCM pin numbers, 'OUT,IN'")
    if out_pin == in_pin or not (0 <= out_pin <= 27 and 0 <= in_pin <= 27):
        pytest.fail(f"{GPIO_LOOP_ENV}={text!r}: expected two different BCM pins 0..27")
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # each factory that fails to load warns
            Device.ensure_pin_factory()
    except Exception as exc:  # gpiozero raises BadPinFactory, ImportError, OSError...
        pytest.skip(f"gpiozero's default pin factory cannot load here (not a Pi?): {exc}")
    factory = Device.pin_factory
    if isinstance(factory, MockFactory):
        pytest.skip("gpiozero's default pin factory is its MockFactory (GPIOZERO_PIN_FACTORY)")
    return out_pin, in_pin, factory
