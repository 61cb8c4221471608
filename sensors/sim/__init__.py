"""The simulated hardware the real drivers run on: chip models, an I2C bus, signals.

Beside the drivers, never inside them (as gpiozero keeps ``pins/mock.py`` beside
``pins/lgpio.py``): a device imports :mod:`sensors` and never loads this package. The
simulator (``edge simulate``) and the tests attach these models to a
:class:`SimulatedBus` and read them with the unchanged drivers; GPIO types run on
gpiozero's own ``MockFactory`` pins, with :class:`PulseTrain` for counters.

May import :mod:`sensors` (the drivers' register maps and codecs); nothing outside the
simulator and the tests imports this.
"""

from sensors.sim import ads1115, bh1750, bme280, ina219, mpu6050, registers, sht3x, tmp102
from sensors.sim.ads1115 import SimulatedADS1115
from sensors.sim.bh1750 import SimulatedBH1750
from sensors.sim.bme280 import SimulatedBME280, encode_measurement
from sensors.sim.bus import Fault, FaultKind, SimulatedBus, SimulatedChip
from sensors.sim.ina219 import SimulatedINA219
from sensors.sim.mpu6050 import SimulatedMPU6050
from sensors.sim.parts import SignalFor, Simulate, SimulatedPart, TimedSignals
from sensors.sim.pulses import PulseTrain
from sensors.sim.registers import RegisterFields, SimulatedRegisters
from sensors.sim.sht3x import SimulatedSHT3x
from sensors.sim.signals import Noisy, Piecewise, Signal, TimeSignal
from sensors.sim.tmp102 import SimulatedTMP102

#: How the simulator builds each I2C sensor type's chip model, by type name.
SIMULATED_TYPES: dict[str, Simulate] = {
    "i2c.ads1115": ads1115.simulate,
    "i2c.bh1750": bh1750.simulate,
    "i2c.bme280": bme280.simulate,
    "i2c.ina219": ina219.simulate,
    "i2c.mpu6050": mpu6050.simulate,
    "i2c.registers": registers.simulate,
    "i2c.sht3x": sht3x.simulate,
    "i2c.tmp102": tmp102.simulate,
}

__all__ = [
    "SIMULATED_TYPES",
    "Fault",
    "FaultKind",
    "Noisy",
    "Piecewise",
    "PulseTrain",
    "RegisterFields",
    "Signal",
    "SignalFor",
    "Simulate",
    "SimulatedADS1115",
    "SimulatedBH1750",
    "SimulatedBME280",
    "SimulatedBus",
    "SimulatedChip",
    "SimulatedINA219",
    "SimulatedMPU6050",
    "SimulatedPart",
    "SimulatedRegisters",
    "SimulatedSHT3x",
    "SimulatedTMP102",
    "TimeSignal",
    "TimedSignals",
    "encode_measurement",
]
