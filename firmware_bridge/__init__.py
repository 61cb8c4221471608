"""The link to a microcontroller co-processor over serial: framed protocol, host driver,
simulated MCU and reference firmware. Nothing is implemented yet; the package exists so the
layout and the dependency rule (it never imports ``edge``) hold from the start."""
