"""The link to a microcontroller co-processor over serial (PROTOCOL.md): the framed protocol
(:mod:`~firmware_bridge.protocol`, :mod:`~firmware_bridge.messages`), the stream decoder
that survives line noise (:mod:`~firmware_bridge.stream`), the MCU clock mapped onto the
host's (:mod:`~firmware_bridge.clock`), the host link over pyserial
(:mod:`~firmware_bridge.link`), a simulated MCU on a pty (:mod:`~firmware_bridge.sim`) and
the reference firmware (``firmware/``). It never imports ``edge``."""
