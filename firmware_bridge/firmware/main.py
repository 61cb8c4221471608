"""The reference firmware for the co-processor (MicroPython on a Raspberry Pi Pico, RP2040).

It speaks the framed protocol of firmware_bridge/PROTOCOL.md over the Pico's USB serial or a
UART: HELLO at boot and on HELLO_REQUEST, READING frames for each channel of config.py at
its rate, an optional SAMPLES block of a fast ADC channel, HEARTBEAT every second, COMMAND
{"set": {output: true|false}} answered by ACK or NACK, TIME acknowledged and recorded.

``Firmware`` holds no hardware of its own: it is given a ``read`` function (the bytes
waiting now, b"" when none), a ``write`` function, the ``machine`` module and a millisecond
tick function. ``step()`` does one pass of the loop, so tests drive it under CPython with a
``machine`` shim; ``run()`` wires it to the board and loops forever. Nothing here may print:
on the USB link, stdout *is* the link.
"""

import json
import struct

import config as default_config
import framing

VOLTS_PER_COUNT = 3.3 / 65535  # read_u16() full scale is 3.3 V on the Pico
MAX_REASON = 96  # bytes of an echoed name in a NACK reason


def _subtract(later, earlier):
    return later - earlier


def _next_due(due, period, now):
    """The next time a periodic job is due: one period on, or one period from now when
    the loop fell more than a period behind (missed runs are skipped, not bunched)."""
    due += period
    return due if due > now else now + period


class AdcChannel:
    """An ADC input on a GPIO: volts * scale + offset."""

    def __init__(self, machine, spec):
        self.adc = machine.ADC(spec["pin"])
        self.scale = spec.get("scale", 1.0)
        self.offset = spec.get("offset", 0.0)

    def read(self, now_ms):
        return self.adc.read_u16() * VOLTS_PER_COUNT * self.scale + self.offset


class PulseChannel:
    """Rising edges on a GPIO, counted by a pin interrupt, read as edges a second over the
    time since the last read."""

    def __init__(self, machine, spec):
        pull = machine.Pin.PULL_DOWN if spec.get("pull", "down") == "down" else machine.Pin.PULL_UP
        self.pin = machine.Pin(spec["pin"], machine.Pin.IN, pull)
        self.count = 0
        self._counted = 0
        self._since_ms = 0
        self.pin.irq(handler=self._edge, trigger=machine.Pin.IRQ_RISING)

    def _edge(self, pin):
        self.count += 1  # runs in the (soft) interrupt handler: no allocation beyond this

    def read(self, now_ms):
        count = self.count
        elapsed = now_ms - self._since_ms
        rate = (count - self._counted) * 1000.0 / elapsed if elapsed > 0 else 0.0
        self._counted = count
        self._since_ms = now_ms
        return rate


class TemperatureChannel:
    """The RP2040's internal temperature sensor (ADC 4), by the datasheet's formula."""

    def __init__(self, machine, spec):
        self.adc = machine.ADC(4)

    def read(self, now_ms):
        volts = self.adc.read_u16() * VOLTS_PER_COUNT
        return 27.0 - (volts - 0.706) / 0.001721


KINDS = {"adc": AdcChannel, "pulse": PulseChannel, "temperature": TemperatureChannel}


class Output:
    """A GPIO output a COMMAND may set: ``state`` True drives it active."""

    def __init__(self, machine, spec):
        self.name = spec["name"]
        self.active_high = spec.get("active_high", True)
        self.state = bool(spec.get("initial", False))
        self.pin = machine.Pin(spec["pin"], machine.Pin.OUT, value=self._level(self.state))

    def _level(self, state):
        return 1 if state == self.active_high else 0

    def set(self, state):
        self.state = state
        self.pin.value(self._level(state))


class Firmware:
    """The firmware's loop, one ``step()`` at a time. Single-threaded: only the pulse
    interrupt handlers run beside it, and they only count."""

    def __init__(self, read, write, machine, ticks_ms, ticks_diff=None, ticks_us=None, config=None):
        self.config = config if config is not None else default_config
        self._read = read
        self._write = write
        self._ticks_ms = ticks_ms
        self._ticks_diff = ticks_diff if ticks_diff is not None else _subtract
        self._ticks_us = ticks_us
        self.decoder = framing.Decoder(max_size=512)
        self.seq = 0  # of the next frame sent, wrapping at 65536
        self.uptime_ms = 0  # a Python int: it does not wrap the way ticks_ms does
        self._last_tick = ticks_ms()
        self.unknown = 0  # frames of a type the firmware does not take
        self.errors = 0  # exceptions a step raised (serve() reports them as LOG frames)
        self.host_time = None  # (host_ms, uptime_ms) of the last TIME frame
        self.channels = []
        ids = set()
        for spec in self.config.CHANNELS:
            where = "config.CHANNELS " + str(spec.get("name")) + ": "
            if spec.get("kind") not in KINDS:
                raise ValueError(where + "kind is one of adc, pulse, temperature")
            if not 0 <= spec["id"] <= 255 or spec["id"] in ids:
                raise ValueError(where + "id is a number 0-255 no other channel has")
            ids.add(spec["id"])
            self.channels.append((spec, KINDS[spec["kind"]](machine, spec), [spec["period_ms"]]))
        self.outputs = {}
        for spec in self.config.OUTPUTS:
            self.outputs[spec["name"]] = Output(machine, spec)
        self._heartbeat_due = self.config.HEARTBEAT_MS
        self._samples = None
        samples = getattr(self.config, "SAMPLES", None)
        if samples is not None:
            self._samples = self._sampler(samples)

    def _sampler(self, samples):
        if self._ticks_us is None:
            raise ValueError("SAMPLES needs a microsecond tick function (ticks_us)")
        for spec, channel, _ in self.channels:
            if spec["id"] == samples["channel"] and spec["kind"] == "adc":
                return samples, channel, [samples["every_ms"]]
        raise ValueError("SAMPLES channel " + str(samples["channel"]) + " is not an adc channel")

    # --- sending

    def send(self, ftype, payload=b""):
        self._write(framing.build(ftype, self.seq, payload))
        self.seq = (self.seq + 1) & 0xFFFF

    def hello(self):
        channels = [
            {"id": spec["id"], "name": spec["name"], "unit": spec["unit"]}
            for spec, _, _ in self.channels
        ]
        outputs = [{"name": name, "type": "bool"} for name in self.outputs]
        info = {
            "proto": framing.VERSION,
            "fw": self.config.FIRMWARE_VERSION,
            "board": self.config.BOARD,
            "channels": channels,
            "outputs": outputs,
        }
        self.send(framing.HELLO, json.dumps(info).encode("utf-8"))

    def log(self, text):
        self.send(framing.LOG, text.encode("utf-8"))

    def boot(self):
        """A lone delimiter (ends whatever the other side held of a frame), then HELLO."""
        self._write(framing.DELIMITER)
        self.hello()

    # --- the loop

    def step(self):
        """One pass: advance the clock, take the frames received, send what is due."""
        now = self._ticks_ms()
        elapsed = self._ticks_diff(now, self._last_tick)
        self._last_tick = now
        if elapsed > 0:
            self.uptime_ms += elapsed
        data = self._read()
        if data:
            for ftype, seq, payload in self.decoder.feed(data):
                self.handle(ftype, seq, payload)
        self._send_due()

    def serve(self, idle):
        """Boot, then ``step()`` and ``idle()`` in turn until ``idle()`` returns False. A
        step that raises is counted in ``errors`` and reported in a LOG frame: the loop
        goes on answering."""
        self.boot()
        while True:
            try:
                self.step()
            except Exception as exc:  # whatever a step hit, the link must stay up
                self.errors += 1
                try:  # noqa: SIM105 (MicroPython has no contextlib)
                    self.log("error: " + repr(exc))
                except Exception:
                    pass  # the link itself failed: nothing to tell it
            if idle() is False:
                return

    def _send_due(self):
        now = self.uptime_ms
        for spec, channel, due in self.channels:
            if now >= due[0]:
                value = channel.read(now)
                self.send(framing.READING, framing.reading_payload(spec["id"], now, value))
                due[0] = _next_due(due[0], spec["period_ms"], now)
        if now >= self._heartbeat_due:
            self.send(framing.HEARTBEAT, framing.heartbeat_payload(now))
            self._heartbeat_due = _next_due(self._heartbeat_due, self.config.HEARTBEAT_MS, now)
        if self._samples is not None and now >= self._samples[2][0]:
            self._send_samples()

    def _send_samples(self):
        """A block of n readings period_us apart, paced on the microsecond ticks (the loop
        waits for the block: n * period_us)."""
        samples, channel, due = self._samples
        period, count = samples["period_us"], samples["n"]
        t0 = self.uptime_ms
        values = []
        start = self._ticks_us()
        for i in range(count):
            while self._ticks_diff(self._ticks_us(), start) < i * period:
                pass
            values.append(channel.read(t0))
        payload = framing.samples_payload(samples["channel"], t0, period, values)
        self.send(framing.SAMPLES, payload)
        due[0] = _next_due(due[0], samples["every_ms"], self.uptime_ms)

    # --- frames from the host

    def handle(self, ftype, seq, payload):
        if ftype == framing.HELLO_REQUEST:
            self.hello()
        elif ftype == framing.COMMAND:
            reason = self.command(payload)
            self.send(framing.ACK if reason is None else framing.NACK, _answer(seq, reason))
        elif ftype == framing.TIME:
            if len(payload) != 8:
                reason = "TIME takes 8 bytes, got " + str(len(payload))
                self.send(framing.NACK, _answer(seq, reason))
                return
            (host_ms,) = struct.unpack("<Q", payload)
            self.host_time = (host_ms, self.uptime_ms)
            self.send(framing.ACK, _answer(seq, None))
        else:
            self.unknown += 1  # a type this side does not take (or an MCU -> host one)

    def command(self, payload):
        """Carry out a COMMAND: None when done, else the reason it was refused (and then
        nothing was changed)."""
        try:
            request = json.loads(payload.decode("utf-8"))
        except (ValueError, UnicodeError, RuntimeError, MemoryError):
            return "bad JSON"  # RuntimeError, MemoryError: nested too deep for this board
        if not isinstance(request, dict) or list(request) != ["set"]:
            return 'unknown command: expected {"set": {output: true|false}}'
        changes = request["set"]
        if not isinstance(changes, dict) or not changes:
            return '"set" takes an object of output: true|false'
        for name, value in changes.items():
            if name not in self.outputs:
                return "unknown output " + json.dumps(name)[:MAX_REASON]
            if not isinstance(value, bool):
                return "bad value for " + name + ": expected true or false"
        for name, value in changes.items():
            self.outputs[name].set(value)
        return None


def _answer(seq, reason):
    return framing.answer_payload(seq, reason)


def run():
    """On the board: wire the firmware to the link of config.py and loop forever."""
    import time

    import machine

    cfg = default_config
    maintenance = getattr(cfg, "MAINTENANCE_PIN", None)
    if maintenance is not None:
        pin = machine.Pin(maintenance, machine.Pin.IN, machine.Pin.PULL_UP)
        if pin.value() == 0:
            return  # held low at boot: leave the USB serial to the REPL (mpremote)
    if cfg.LINK == "uart":
        uart = machine.UART(
            cfg.UART_ID,
            baudrate=cfg.UART_BAUD,
            tx=machine.Pin(cfg.UART_TX),
            rx=machine.Pin(cfg.UART_RX),
        )

        def read():
            waiting = uart.any()
            return uart.read(waiting) if waiting else b""

        write = uart.write
    else:
        import select
        import sys

        import micropython

        # 0x03 inside a frame is data, not Ctrl-C: the REPL stays out of the way.
        micropython.kbd_intr(-1)
        poll = select.poll()
        poll.register(sys.stdin, select.POLLIN)
        stdin = sys.stdin.buffer

        def read():
            data = bytearray()
            while len(data) < 256 and poll.poll(0):
                data.extend(stdin.read(1))
            return data

        write = sys.stdout.buffer.write

    firmware = Firmware(read, write, machine, time.ticks_ms, time.ticks_diff, time.ticks_us)

    def idle():
        time.sleep_ms(1)
        return True

    firmware.serve(idle)


if __name__ == "__main__":
    run()
