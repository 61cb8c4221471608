"""The outbox: every event on disk until the broker has it, within caps, surviving crashes.

:mod:`~edge.outbox.store` is the store itself (``Outbox``: append, claim, ack, evict in
explicit transactions); :mod:`~edge.outbox.schema` its numbered migrations and SQLite
settings; :mod:`~edge.outbox.limits` the caps and the byte accounting; :mod:`~edge.outbox.stats`
the counters and the oldest pending age that ``edge outbox stats`` reports;
:mod:`~edge.outbox.eviction` what goes first when full and how each loss is reported;
:mod:`~edge.outbox.salvage` what happens to a corrupt file; :mod:`~edge.outbox.inspect` the
read-only views ``edge outbox stats`` and ``tail`` print.

May import :mod:`edge.config` and the shared modules; nothing above (not the uplink, which
reads from here, nor the runtime).
"""

from edge.outbox.limits import OutboxLimits
from edge.outbox.stats import OutboxStats
from edge.outbox.store import FILENAME, Outbox, OutboxFull

__all__ = ["FILENAME", "Outbox", "OutboxFull", "OutboxLimits", "OutboxStats"]
