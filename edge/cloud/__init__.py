"""The cloud side: consumers of what devices publish, on the broker's far side.

:mod:`~edge.cloud.sink` subscribes to a broker, deduplicates on (device, stream, seq) and
sees loss as a gap in ``seq``; ``edge sink`` prints what it receives and ``edge simulate``
uses it to show what arrived upstream. With ``edge sink --db``, :mod:`~edge.cloud.writer`
commits what arrives in batches into :mod:`~edge.cloud.store` (SQLite, or
:mod:`~edge.cloud.postgres`) and only then acknowledges it; :mod:`~edge.cloud.gaps` finds
what the database is missing.

May import :mod:`edge.uplink` (the paho client factory), :mod:`edge.config` and the shared
modules; never the runtime or the simulator.
"""
