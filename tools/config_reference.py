"""Print the README's configuration reference tables from the config dataclasses.

Run from a checkout: ``.venv/bin/python tools/config_reference.py``. The tables come from
the same dataclasses the loader validates against, so the README cannot drift silently
(tests/test_docs.py checks every key is documented).
"""

from __future__ import annotations

from edge.config import DetectorCommon, DeviceConfig, SensorCommon, StorageConfig, UplinkConfig
from edge.validation import field_docs
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES


def table(title: str, cls: type) -> str:
    lines = [f"**{title}**", "", "| key | expects | default | meaning |", "|---|---|---|---|"]
    for name, expected, default, doc in field_docs(cls):
        lines.append(f"| `{name}` | {expected} | `{default}` | {doc} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    print(table("[device]", DeviceConfig))
    print(table("[storage]", StorageConfig))
    print(table("[uplink]", UplinkConfig))
    print(table("[[sensors]] (every type)", SensorCommon))
    for name, kind in sorted(SENSOR_TYPES.items()):
        print(table(f'type = "{name}": {kind.summary}', kind.params))
    print(table("[[detectors]] (every type)", DetectorCommon))
    for name, kind in sorted(DETECTOR_TYPES.items()):
        print(table(f'type = "{name}": {kind.summary}', kind.params))


if __name__ == "__main__":
    main()
