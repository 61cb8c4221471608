"""Write the README's generated reference tables from the registries and config classes.

Run from a checkout: ``.venv/bin/python tools/config_reference.py --write`` rewrites the
blocks between ``<!-- generated:NAME -->`` and ``<!-- end:NAME -->`` in README.md;
without ``--write`` it prints them. tests/test_docs.py fails when the README is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from edge.config.validation import field_docs
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES
from sensors.filters import FILTER_TYPES

README = Path(__file__).resolve().parent.parent / "README.md"


def _default(text: str) -> str:
    return "unset" if text == "None" else f"`{text}`"


def table(cls: type, skip: tuple[str, ...] = ()) -> str:
    lines = ["| key | expects | default | meaning |", "|---|---|---|---|"]
    for name, expected, default, doc in field_docs(cls):
        if name not in skip:
            lines.append(f"| `{name}` | {expected} | {_default(default)} | {doc} |")
    return "\n".join(lines)


def sensor_types() -> str:
    parts = []
    for name, kind in sorted(SENSOR_TYPES.items()):
        how = "polled every `interval`" if kind.polled else "interrupt-driven (no `interval`)"
        units = ", ".join(f"`{q}` ({u or '-'})" for q, u in kind.units.items())
        value = f"quantities {units}" if units else "a single value"
        parts.append(f"#### `{name}`\n\n{kind.summary}; {how}; {value}.\n\n{table(kind.params)}")
    return "\n\n".join(parts)


def filter_types() -> str:
    parts = []
    for name, kind in sorted(FILTER_TYPES.items()):
        parts.append(f"`{name}`: {kind.summary}\n\n{table(kind.params)}")
    return "\n\n".join(parts)


def detector_types() -> str:
    parts = []
    for name, kind in sorted(DETECTOR_TYPES.items()):
        parts.append(f"`{name}`: {kind.summary}\n\n{table(kind.params)}")
    return "\n\n".join(parts)


BLOCKS = {"sensor-types": sensor_types, "filter-types": filter_types, "detectors": detector_types}


def render(text: str) -> str:
    for name, make in BLOCKS.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->).*?(<!-- end:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- generated:{name} --> block")
        text = pattern.sub(lambda m, make=make: f"{m[1]}\n{make()}\n{m[2]}", text)
    return text


def main() -> None:
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if "--write" in sys.argv:
        README.write_text(fresh, encoding="utf-8")
    else:
        sys.stdout.write(fresh)


if __name__ == "__main__":
    main()
