"""The firmware's configuration: board, link, channels, outputs and rates. Edit this file
(and copy it to the board again) to add a channel or change a pin; main.py reads nothing
else. Channel ids are what READING frames carry: keep them unique and below 256."""

FIRMWARE_VERSION = "1.0.0"
BOARD = "rp2040-pico"

# The link to the Pi: "usb" (the Pico's USB serial, /dev/ttyACM0 on the Pi) or "uart"
# (GP0 = TX to the Pi's GPIO15/RXD, GP1 = RX from the Pi's GPIO14/TXD, 3.3 V levels).
LINK = "usb"
UART_ID = 0
UART_BAUD = 115200
UART_TX = 0
UART_RX = 1

# Held low at reset (a jumper to GND), this pin keeps the firmware from starting, so the USB
# serial stays the REPL and mpremote can copy new files. None: no such pin.
MAINTENANCE_PIN = 22

HEARTBEAT_MS = 1000

# One entry a channel. kind "adc": machine.ADC on a GPIO (26, 27 or 28), value =
# volts * scale + offset (volts = raw * 3.3 / 65535). kind "pulse": rising edges on a GPIO,
# reported as a rate in edges a second over each period. kind "temperature": the RP2040's
# internal sensor (ADC 4), in degC. period_ms: how often a READING is sent.
CHANNELS = [
    {"id": 0, "name": "adc0", "kind": "adc", "pin": 26, "unit": "V", "period_ms": 1000},
    {"id": 1, "name": "adc1", "kind": "adc", "pin": 27, "unit": "V", "period_ms": 1000},
    {"id": 2, "name": "adc2", "kind": "adc", "pin": 28, "unit": "V", "period_ms": 1000},
    {"id": 3, "name": "pulses", "kind": "pulse", "pin": 15, "unit": "Hz", "period_ms": 1000},
    {"id": 4, "name": "temperature", "kind": "temperature", "unit": "degC", "period_ms": 5000},
]

# Outputs a COMMAND {"set": {"relay": true}} may drive: a GPIO each, high for true unless
# active_high is False.
OUTPUTS = [
    {"name": "relay", "pin": 16, "active_high": True, "initial": False},
]

# Fast sampling (SAMPLES frames): a block of n readings of one "adc" channel, period_us
# apart, every every_ms. None: no SAMPLES frames. The loop is busy for n * period_us while
# a block is taken (32 ms for the example), so keep blocks short. For example:
#   SAMPLES = {"channel": 0, "period_us": 1000, "n": 32, "every_ms": 1000}
SAMPLES = None
