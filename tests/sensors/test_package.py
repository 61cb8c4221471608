"""The public surface of ``sensors``: every name the library promises imports from the
package, and importing it stays light (no gpiozero, numpy, smbus2 or simulator)."""

import subprocess
import sys
from pathlib import Path

import pytest

import sensors

ROOT = Path(__file__).resolve().parents[2]

#: Chip drivers and the register-level model beside each.
DRIVERS = {
    "BME280": "SimulatedBME280",
    "SHT3x": "SimulatedSHT3x",
    "ADS1115": "SimulatedADS1115",
    "MPU6050": "SimulatedMPU6050",
    "INA219": "SimulatedINA219",
    "BH1750": "SimulatedBH1750",
    "TMP102": "SimulatedTMP102",
    "RegisterReader": "SimulatedRegisters",
}
PROMISED = [
    *DRIVERS,
    *DRIVERS.values(),
    "RegisterLayout",
    "PulseCounter",
    "PulseTrain",
    "GpioOutput",
    "GpioInput",
    "GpioEdge",
    "SimulatedBus",
    "SimulatedChip",
    "Fault",
    "FaultKind",
    "FILTER_TYPES",
    "Chain",
    "SENSOR_TYPES",
    "Hardware",
    "I2CBus",
    "SensorError",
    "SensorConfigError",
    "CRCError",
    "SensorTimeout",
]
HEAVY = ("gpiozero", "numpy", "smbus2")


def run(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter, so that nothing this test run imported counts."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize("name", PROMISED)
def test_promised_name_imports_from_the_package(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from sensors import {name}", namespace)
    assert namespace[name] is not None
    assert name in sensors.__all__


def test_every_exported_name_resolves() -> None:
    for name in sensors.__all__:
        assert getattr(sensors, name) is not None, name


@pytest.mark.parametrize(("driver", "model"), DRIVERS.items())
def test_each_simulated_chip_is_a_chip_model(driver: str, model: str) -> None:
    assert issubclass(getattr(sensors, model), sensors.SimulatedChip)


def test_errors_inherit_the_builtin_they_resemble() -> None:
    assert issubclass(sensors.SensorConfigError, ValueError)
    assert issubclass(sensors.CRCError, OSError)
    assert issubclass(sensors.SensorTimeout, TimeoutError)
    for error in (sensors.SensorConfigError, sensors.CRCError, sensors.SensorTimeout):
        assert issubclass(error, sensors.SensorError)


def test_package_import_loads_no_gpiozero_numpy_or_smbus2() -> None:
    result = run(
        "import sys, sensors; "
        f"heavy = set({HEAVY!r}) & set(sys.modules); "
        "assert not heavy, f'import sensors loaded {sorted(heavy)}'"
    )
    assert result.returncode == 0, result.stderr


def test_gpio_classes_load_gpiozero_only_when_named() -> None:
    result = run(
        "import sys, sensors; "
        "sensors.PulseCounter, sensors.GpioOutput; "
        "assert 'gpiozero' not in sys.modules, 'gpiozero loaded before a GPIO input was named'; "
        "sensors.GpioInput; "
        "assert 'gpiozero' in sys.modules"
    )
    assert result.returncode == 0, result.stderr


def test_lazy_exports_resolve() -> None:
    from sensors.gpio import GpioEdge, GpioInput

    assert (sensors.GpioInput, sensors.GpioEdge) == (GpioInput, GpioEdge)
    lazy = {"GpioInput", "GpioEdge", *sensors._SIMULATED}
    assert set(sensors.__all__) <= set(dir(sensors)) | lazy
    with pytest.raises(AttributeError):
        _ = sensors.NoSuchDriver  # type: ignore[attr-defined]


def test_package_import_loads_no_simulator() -> None:
    result = run(
        "import sys, sensors; "
        "sim = sorted(m for m in sys.modules if m.startswith('sensors.sim')); "
        "assert not sim, f'import sensors loaded {sim}'; "
        "sensors.SimulatedBus; "
        "assert 'sensors.sim.bus' in sys.modules"
    )
    assert result.returncode == 0, result.stderr


def test_every_i2c_type_has_a_simulated_chip_and_no_gpio_type_does() -> None:
    from sensors.sim import SIMULATED_TYPES

    i2c = {name for name in sensors.SENSOR_TYPES if name.startswith("i2c.")}
    assert set(SIMULATED_TYPES) == i2c
