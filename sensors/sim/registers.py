"""Simulated i2c.registers: a register field of a chip described in config, fed by a signal."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sensors.registers import RegisterLayout, RegistersParams, SetupWrite
from sensors.sim.bus import SimulatedChip
from sensors.sim.parts import SignalFor, SimulatedPart


class SimulatedRegisters(SimulatedChip):
    """Register model of a chip described by a layout, for :class:`~sensors.sim.bus.SimulatedBus`.

    Each read that touches the value's registers encodes ``signal()`` there afresh
    (clamped to the field; bits outside the field keep whatever the register map
    holds, so a test can plant flag bits). Until every ``setup`` write has been
    made with its value, the value's registers keep their power-on contents (zero),
    like a chip still asleep. ``writes`` records every byte written, in order.
    """

    def __init__(
        self,
        layout: RegisterLayout,
        signal: Callable[[], float],
        *,
        setup: Sequence[SetupWrite] = (),
    ) -> None:
        super().__init__()
        self.layout = layout
        self.setup = tuple(setup)
        self.writes: list[SetupWrite] = []
        self._signal = signal
        self._last_written: dict[int, int] = {}

    @property
    def configured(self) -> bool:
        """Whether every setup write has been made, with its value last."""
        return all(self._last_written.get(reg) == value for reg, value in self.setup)

    def after_write(self, register: int, data: bytes) -> None:
        for i, byte in enumerate(data):
            reg = (register + i) & 0xFF
            self.writes.append((reg, byte))
            self._last_written[reg] = byte

    def before_read(self, register: int, length: int) -> None:
        start, end = self.layout.register, self.layout.register + self.layout.length
        reads_value = register < end and start < register + length
        if reads_value and self.configured:
            self.registers[start:end] = self.layout.encode(
                self._signal(), self.registers[start:end]
            )


class RegisterFields(SimulatedChip):
    """Several config-described fields of one chip (heart rate and SpO2 of one
    pulse oximeter, say) answering at one address from one register map."""

    def __init__(self, *fields: SimulatedRegisters) -> None:
        super().__init__()
        self.fields: list[SimulatedRegisters] = []
        for chip in fields:
            self.add(chip)

    def add(self, chip: SimulatedRegisters) -> None:
        chip.registers = self.registers  # one map: each field encodes its own bytes
        self.fields.append(chip)

    def after_write(self, register: int, data: bytes) -> None:
        for chip in self.fields:
            chip.after_write(register, data)

    def before_read(self, register: int, length: int) -> None:
        for chip in self.fields:
            chip.before_read(register, length)


def simulate(params: RegistersParams, signal: SignalFor) -> SimulatedPart:
    layout = params.layout()
    # Typical: the field at 0 when signed, mid-scale when not (an ADC at half range).
    low, high = layout.field_range
    typical = ((low + high + 1) // 2) * layout.scale + layout.offset
    chip = SimulatedRegisters(layout, signal(params.quantity, typical), setup=params.setup_writes())
    return SimulatedPart(params.bus, params.address, chip)
