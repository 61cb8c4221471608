"""MQTT: the device's link to its broker, up and down.

:mod:`~edge.uplink.link` sends the outbox (``Uplink``: a link thread running paho's loop and
a sender thread claiming events within the in-flight window); :mod:`~edge.uplink.client`
is the one paho client factory; :mod:`~edge.uplink.pacing` the rate limit and reconnect
backoff; :mod:`~edge.uplink.failover` which broker of a list the next connection goes to;
:mod:`~edge.uplink.commands` checks and queues signed downlink commands;
:mod:`~edge.uplink.network` waits for the sockets (a selector: no 1,024-descriptor limit);
:mod:`~edge.uplink.replay` publishes a stored range again (``edge outbox replay``).

paho-mqtt is bridged here and nowhere else on the device. May import :mod:`edge.outbox`,
:mod:`edge.config` and the shared modules; never the runtime above it.
"""

from edge.uplink.link import Uplink, UplinkStats

# Not replay: the runtime imports this package and never replays (the CLI imports it).
__all__ = ["Uplink", "UplinkStats"]
