"""The one place a paho-mqtt client is made: protocol, session, window, credentials, TLS.

The uplink makes one per connection, ``edge outbox replay`` one for its run, the sink one
for its subscription; each sets its own callbacks. paho types stay inside ``edge.uplink``
and ``edge.cloud``: nothing else imports paho.
"""

from __future__ import annotations

import logging
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.config.device import UplinkConfig
from edge.errors import UplinkError

PAHO_LOG = logging.getLogger("edge.uplink.paho")


class _LostSocket(logging.Filter):
    """paho logs a socket it lost, or a loop run while it has none, as an ERROR; the uplink
    reports the loss itself (a WARNING with the reason and when it retries), so paho's line
    is only INFO."""

    LOST = ("failed to receive on socket", "timeout on socket", "Client is not connected")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and str(record.msg).startswith(self.LOST):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return PAHO_LOG.isEnabledFor(logging.INFO)
        return True


PAHO_LOG.addFilter(_LostSocket())


def read_password(settings: UplinkConfig) -> str | None:
    """The broker password from its file or environment variable, as an ``UplinkError``."""
    try:
        return settings.password()
    except OSError as exc:
        raise UplinkError(f"cannot read the broker password: {exc}") from exc


def paho_client(
    settings: UplinkConfig,
    client_id: str,
    *,
    inflight: int,
    password: str | None = None,
    persistent: bool = False,
    kind: type[mqtt.Client] = mqtt.Client,
) -> mqtt.Client:
    """A client for ``settings.broker``: MQTT 3.1.1 with a clean session (``persistent``:
    clean session off, so the broker keeps the session of ``client_id`` across connections)
    or MQTT 5 (paho's default session; a persistent one is asked for in CONNECT, with clean
    start off and a session expiry, by the caller), at most ``inflight`` QoS 1/2 messages
    unacknowledged and nothing queued behind them (the caller's window is the limit), the
    user name and ``password``, and TLS for ``mqtts://`` (files that cannot be loaded raise
    ``UplinkError``). ``kind``: paho's client class or a subclass of it."""
    v5 = settings.protocol == "5"
    if persistent and not client_id:
        raise ValueError("a persistent session needs a client id")
    client = kind(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=None if v5 else not persistent,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
    )
    client.max_inflight_messages_set(inflight)
    client.max_queued_messages_set(0)
    client.enable_logger(PAHO_LOG)
    if settings.username is not None:
        client.username_pw_set(settings.username, password)
    if settings.tls:
        try:
            client.tls_set(
                ca_certs=settings.ca_file, certfile=settings.cert_file, keyfile=settings.key_file
            )
        except (OSError, ssl.SSLError) as exc:
            raise UplinkError(f"cannot load TLS files for {settings.broker}: {exc}") from exc
    return client
