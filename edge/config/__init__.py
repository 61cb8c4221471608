"""The one TOML config file, validated once into typed, immutable objects.

:mod:`~edge.config.device` holds the file's sections (``[device]``, ``[storage]``,
``[uplink]``, ``[commands]``; ``[metrics]`` from :mod:`~edge.config.metrics`) and
:func:`~edge.config.device.load`;
:mod:`~edge.config.sensing` the sensing pipeline's tables (sensors and their filters,
detectors, actions), checked against the ``sensors`` and ``models`` registries;
:mod:`~edge.config.validation` the small coercing validators behind both, with the path,
expected and found values and a "did you mean" in every error.

May import the shared modules, ``sensors`` and ``models`` (their registries); nothing
else in ``edge``.
"""

from edge.config.device import (
    CommandsConfig,
    Config,
    DeviceConfig,
    StorageConfig,
    UplinkConfig,
    load,
    parse,
)
from edge.config.metrics import MetricsConfig

__all__ = [
    "CommandsConfig",
    "Config",
    "DeviceConfig",
    "MetricsConfig",
    "StorageConfig",
    "UplinkConfig",
    "load",
    "parse",
]
