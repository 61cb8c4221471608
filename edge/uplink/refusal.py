"""A broker's reason for refusing a connection, in words, for every client we make.

paho-mqtt 2.x hands ``on_connect`` a ``ReasonCode`` for both protocols: an MQTT 5 CONNACK
reason code as sent, and an MQTT 3.1.1 return code converted to its MQTT 5 counterpart
(1 -> 0x84, 2 -> 0x85, 3 -> 0x88, 4 -> 0x86, 5 -> 0x87). The uplink, the sink, ``edge outbox
replay``, ``edge command`` and the simulator's subscriber all say a refusal with
:func:`refusal`, so "bad user name or password" reads the same everywhere.
"""

from __future__ import annotations

# MQTT 3.1.1, section 3.2.2.3: the CONNACK return codes, in the words of their MQTT 5
# counterparts (paho's conversion), so that one reason reads one way whatever the protocol.
MQTT311_WORDS = {
    1: "unsupported protocol version",
    2: "client identifier not valid",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}

# MQTT 5.0, section 3.2.2.2: the CONNACK reason codes that refuse a connection.
CONNACK_WORDS = {
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x90: "topic name invalid",
    0x95: "packet too large",
    0x97: "quota exceeded",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}


def refusal(reason: object) -> str:
    """The words for a refused connection: ``reason`` is what paho gave ``on_connect`` (a
    ``ReasonCode``) or an MQTT 3.1.1 return code as an ``int``; a code neither table knows
    is named by its number."""
    if isinstance(reason, int) and not isinstance(reason, bool):
        return MQTT311_WORDS.get(reason) or f"CONNACK return code {reason}"
    value = getattr(reason, "value", None)
    if isinstance(value, int):
        return CONNACK_WORDS.get(value) or f"CONNACK reason code {value:#04x}"
    return str(reason)


def refused(broker: str, reason: object) -> str:
    """One line: ``{broker} refused the connection: {words}``."""
    return f"{broker} refused the connection: {refusal(reason)}"
