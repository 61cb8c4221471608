"""edgeline's runtime and the tools around it, one subpackage per concern.

The device path, each layer importing only those below it:

- :mod:`edge.runtime` — the sampling loop, sensors to detectors to local actions, the
  recorder and the delivery loop that ties the outbox to the uplink;
- :mod:`edge.uplink` — MQTT: the link and sender threads, pacing, downlink commands,
  replay; the only device code that imports paho-mqtt;
- :mod:`edge.outbox` — the SQLite store: schema, caps and eviction, salvage, inspection;
- :mod:`edge.config` — the TOML config, validated once into typed objects;
- :mod:`edge.clock`, :mod:`edge.events`, :mod:`edge.errors` — the shared vocabulary.

Around it, never imported by the device path: :mod:`edge.sim` (the simulator),
:mod:`edge.cloud` (consumers on the broker's far side), :mod:`edge.modeltools` (offline
model training and evaluation, ``edge detect``), :mod:`edge.bench` (the benchmark) and
:mod:`edge.cli` (the ``edge`` command, a thin layer over all of them). ``tools/check``
holds these rules with import-linter contracts.
"""

__version__ = "0.1.0"
