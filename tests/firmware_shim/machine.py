"""A stand-in for MicroPython's ``machine`` module, so the co-processor's firmware
(firmware_bridge/firmware/) runs under CPython in the tests.

Only what the firmware uses, with MicroPython's names and signatures, plus a test side in
the manner of gpiozero's mock pins: every pin made is in ``PINS`` by number, an input can be
driven (``drive``, ``pulse``) and fires its interrupt handler on the edges it asked for, an
output remembers its ``states``; ``ANALOG`` holds the raw 16-bit level each ADC reads.
``reset()`` forgets everything (a fresh board).

It runs under MicroPython's unix port too (tests/test_firmware.py runs the firmware there):
no imports, annotations of builtin types only.
"""

PINS: "dict[int, Pin]" = {}
ANALOG: "dict[int, int]" = {}  # ADC id (26-28 for GPIOs, 4 for the temperature sensor) -> raw


def reset() -> None:
    PINS.clear()
    ANALOG.clear()


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(
        self, id: int, mode: int = -1, pull: int = -1, *, value: int | None = None
    ) -> None:
        self.id = id
        self.mode = mode
        self.pull = pull
        self.level = 1 if pull == Pin.PULL_UP else 0
        self.states = []  # every level written to an output, in order
        self.handler = None  # called with the pin on an edge it asked for
        self.trigger = 0
        if value is not None:
            self.value(value)
        PINS[id] = self

    def value(self, level: int | None = None) -> int | None:
        if level is None:
            return self.level
        self.level = 1 if level else 0
        self.states.append(self.level)
        return None

    def irq(self, handler=None, trigger: int = 12, hard: bool = False) -> None:
        self.handler = handler
        self.trigger = trigger

    # The test side.

    def drive(self, level: int) -> None:
        """Drive an input to ``level``, firing the handler on an edge it asked for."""
        before, self.level = self.level, 1 if level else 0
        rising = before == 0 and self.level == 1
        falling = before == 1 and self.level == 0
        wanted = (rising and self.trigger & Pin.IRQ_RISING) or (
            falling and self.trigger & Pin.IRQ_FALLING
        )
        if wanted and self.handler is not None:
            self.handler(self)

    def pulse(self, count: int = 1) -> None:
        """``count`` full pulses: up, then down."""
        for _ in range(count):
            self.drive(1)
            self.drive(0)


class ADC:
    CORE_TEMP = 4

    def __init__(self, id: "int | Pin") -> None:
        self.id = id.id if isinstance(id, Pin) else id

    def read_u16(self) -> int:
        return ANALOG.get(self.id, 0)
