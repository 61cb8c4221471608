"""MQTT 5 message expiry from the outbox's TTLs.

An event whose priority has a TTL (``[storage] ttl_telemetry`` and friends) goes out with
``MessageExpiryInterval`` set to what is left of it, so a broker drops it for a subscriber
that connects too late instead of handing over hour-old telemetry as fresh. Replays carry
what is left as well; an event past its TTL (replayed to fill a gap) gets one second: the
subscribers online take it, none that come later. MQTT 3.1.1 has no expiry.
"""

from __future__ import annotations

import math

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config.device import UplinkConfig
from edge.events import Event


def expiry_seconds(event: Event, settings: UplinkConfig) -> int | None:
    """The message expiry interval for ``event``, in whole seconds (None: none to send)."""
    if event.expires_in is None or settings.protocol != "5":
        return None
    return max(1, min(2**32 - 1, math.ceil(event.expires_in)))


def expiry(event: Event, settings: UplinkConfig) -> Properties | None:
    """The PUBLISH properties for ``event`` (None: none to send)."""
    seconds = expiry_seconds(event, settings)
    if seconds is None:
        return None
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = seconds
    return props
