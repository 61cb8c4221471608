"""The ``[homeassistant]`` section: announcing the device to Home Assistant (MQTT discovery).

Off by default. ``switches`` says whether, and how, Home Assistant may switch the outputs:
``read-only`` (the default) shows them and nothing more; ``bridge`` lets Home Assistant's
plain ``ON``/``OFF`` reach the device as signed ``output`` commands through
``edge homeassistant bridge``, so it needs ``[commands]``; ``unsigned`` has the device take
the plain commands itself, which anyone who may publish on the broker could send, so it is
refused unless every broker is on this host or is reached over TLS with a login (where the
broker's ACL can keep the topic to Home Assistant's user).
"""

import ipaddress
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from edge.config.validation import mqtt_text, topic_prefix

Switches = Literal["read-only", "bridge", "unsigned"]


@dataclass(frozen=True)
class HomeAssistantConfig:
    enabled: bool = field(
        default=False,
        metadata={
            "doc": "announce sensor readings, inputs, detectors and outputs to Home Assistant "
            "(MQTT discovery)"
        },
    )
    discovery_prefix: str = field(
        default="homeassistant",
        metadata={
            "check": topic_prefix,
            "expects": "topic levels joined by '/'",
            "doc": "Home Assistant's discovery prefix",
        },
    )
    name: str | None = field(
        default=None,
        metadata={
            "check": mqtt_text,
            "expects": "text",
            "doc": "the device's name in Home Assistant; default: the device id",
        },
    )
    switches: Switches = field(
        default="read-only",
        metadata={
            "doc": "outputs from Home Assistant: read-only (shown, not switched), bridge "
            "(signed by `edge homeassistant bridge`; needs [commands]) or unsigned (plain "
            "ON/OFF; a broker on this host, or mqtts:// with a login)"
        },
    )


def local_host(host: str) -> bool:
    """Whether ``host`` is this machine: ``localhost`` or a loopback address."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsigned_broker_problem(url: str, username: str | None) -> str | None:
    """Why a broker may not carry unsigned switch commands (None: it may): it must be on
    this host, or reached over TLS with a login, so that the broker's ACL can decide who
    publishes them."""
    parts = urlsplit(url)
    if local_host(parts.hostname or ""):
        return None
    if parts.scheme == "mqtts" and username is not None:
        return None
    return (
        "expected 'read-only' or 'bridge' (signed commands) with a broker that is neither on "
        f"this host nor reached over mqtts:// with a username, found 'unsigned' with {url!r}:"
        " anyone who can publish there could switch the outputs"
    )


def bridge_problem(commands_enabled: bool, outputs: Collection[str]) -> str | None:
    """Why ``switches = "bridge"`` cannot work (None: it can): the bridge sends signed
    ``output`` commands, which a device without ``[commands]`` never reads."""
    if commands_enabled or not outputs:
        return None
    return (
        "expected [commands] enabled for 'bridge' (it sends signed `output` commands), found "
        "commands disabled; enable them, or set switches = 'read-only'"
    )
