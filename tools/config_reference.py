"""Write the generated reference tables in docs/ from the registries and config classes.

Run from a checkout: ``.venv/bin/python tools/config_reference.py --write`` rewrites every
block between ``<!-- generated:NAME -->`` and ``<!-- end:NAME -->`` in README.md and
docs/*.md; ``--check`` lists the files whose blocks are stale and exits 1; with neither it
prints the tables. tests/test_docs.py fails when a block is stale, missing or unknown.

Each table row comes from a dataclass field through
:func:`edge.config.validation.field_docs`, the validator's own view of the field: its name,
what it expects, its default (booleans, arrays and unset values spelled as in TOML) and its
meaning.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge.config.device import CommandsConfig, DeviceConfig, StorageConfig, UplinkConfig
from edge.config.feedback import FeedbackConfig
from edge.config.homeassistant import HomeAssistantConfig
from edge.config.metrics import MetricsConfig
from edge.config.sensing import ActionConfig, DetectorCommon, SensorCommon
from edge.config.validation import field_docs
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES
from sensors.filters import FILTER_TYPES

ROOT = Path(__file__).resolve().parent.parent

BLOCK = re.compile(r"<!-- generated:([a-z0-9-]+) -->(.*?)<!-- end:\1 -->", re.S)
OPENING = re.compile(r"<!-- generated:([a-z0-9-]+) -->")


def toml_value(value: Any) -> str:
    """A default as a TOML file would spell it ('text', true, 1.5, [])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return repr(value)


def _default(f: dataclasses.Field[Any], text: str) -> str:
    """The default column: field_docs' text (hex where the field says so), with Python's
    spellings of booleans, tuples and None turned into TOML's or "unset"."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif callable(f.default_factory):
        value = f.default_factory()
    else:
        return text  # "required"
    if value is None:
        return "unset"
    if isinstance(value, bool | tuple | list):
        return f"`{toml_value(value)}`"
    return f"`{text}`"


def cell(text: str) -> str:
    """Text safe in a Markdown table cell: ``|`` escaped everywhere, ``<`` outside code
    spans (GitHub would take ``<sensor>`` for an HTML tag and drop it)."""
    parts = text.replace("|", "\\|").split("`")
    return "`".join(p if i % 2 else p.replace("<", "&lt;") for i, p in enumerate(parts))


def table(cls: type) -> str:
    lines = ["| key | expects | default | meaning |", "|---|---|---|---|"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, expected, default_text, doc in field_docs(cls):
        default = _default(fields[name], default_text)
        lines.append(f"| `{name}` | {cell(expected)} | {cell(default)} | {cell(doc)} |")
    return "\n".join(lines)


def _table_items(params: type) -> list[tuple[str, type]]:
    """(field, params dataclass) of each field that is an array of tables."""
    found = []
    for f in dataclasses.fields(params):
        args = typing.get_args(f.type)
        if args and dataclasses.is_dataclass(args[0]) and isinstance(args[0], type):
            found.append((f.name, args[0]))
    return found


def sensor_types() -> str:
    parts = []
    for name, kind in sorted(SENSOR_TYPES.items()):
        how = "polled every `interval`" if kind.polled else "interrupt-driven (no `interval`)"
        units = ", ".join(f"`{q}` ({u or '-'})" for q, u in kind.units.items())
        value = f"quantities {units}" if units else "a single value"
        if kind.open_quantities is not None:  # quantities the hardware names: serial.mcu
            how = "pushed by the hardware, each reading stamped on its clock (no `interval`)"
            value = "quantities: its `channels`, or every channel the MCU declares"
        parts.append(f"### `{name}`\n\n{kind.summary}; {how}; {value}.\n\n{table(kind.params)}")
        for item in _table_items(kind.params):
            parts.append(f"Each table of `{name}` `{item[0]}`:\n\n{table(item[1])}")
    return "\n\n".join(parts)


def filter_types() -> str:
    parts = []
    for name, kind in sorted(FILTER_TYPES.items()):
        parts.append(f"### `{name}`\n\n{kind.summary}.\n\n{table(kind.params)}")
    return "\n\n".join(parts)


def detector_types() -> str:
    parts = []
    for name, kind in sorted(DETECTOR_TYPES.items()):
        parts.append(f"### `{name}`\n\n{kind.summary}.\n\n{table(kind.params)}")
    return "\n\n".join(parts)


def section(cls: type) -> Callable[[], str]:
    return lambda: table(cls)


BLOCKS: dict[str, Callable[[], str]] = {
    "device": section(DeviceConfig),
    "storage": section(StorageConfig),
    "uplink": section(UplinkConfig),
    "commands": section(CommandsConfig),
    "homeassistant": section(HomeAssistantConfig),
    "metrics": section(MetricsConfig),
    "feedback": section(FeedbackConfig),
    "sensor-common": section(SensorCommon),
    "detector-common": section(DetectorCommon),
    "actions": section(ActionConfig),
    "sensor-types": sensor_types,
    "filter-types": filter_types,
    "detectors": detector_types,
}


def documents(root: Path = ROOT) -> list[Path]:
    """The files that may hold generated blocks: README.md and docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def render(text: str, source: str = "<text>") -> str:
    """``text`` with each generated block it holds made fresh.

    Raises ValueError for a block of an unknown name or one with no matching end marker.
    """
    closed = {m[1] for m in BLOCK.finditer(text)}
    for name in OPENING.findall(text):
        if name not in BLOCKS:
            raise ValueError(
                f"{source}: unknown generated block '{name}' (known: {sorted(BLOCKS)})"
            )
        if name not in closed:
            raise ValueError(f"{source}: <!-- generated:{name} --> has no <!-- end:{name} -->")

    def fresh(match: re.Match[str]) -> str:
        name = match[1]
        return f"<!-- generated:{name} -->\n{BLOCKS[name]()}\n<!-- end:{name} -->"

    return BLOCK.sub(fresh, text)


def stale(root: Path = ROOT) -> dict[Path, str]:
    """Fresh text for each document whose blocks are out of date.

    Raises ValueError when a block is unknown, unclosed, missing from every document, or
    in more than one (each table has one home).
    """
    found: dict[str, list[Path]] = {name: [] for name in BLOCKS}
    changed = {}
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        new = render(text, str(path.relative_to(root)))  # raises on unknown or unclosed
        for match in BLOCK.finditer(text):
            found[match[1]].append(path)
        if new != text:
            changed[path] = new
    missing = [name for name, paths in found.items() if not paths]
    if missing:
        raise ValueError(f"no document holds the generated block(s): {', '.join(missing)}")
    twice = [name for name, paths in found.items() if len(paths) > 1]
    if twice:
        raise ValueError(f"generated block(s) in more than one place: {', '.join(twice)}")
    return changed


def main(argv: list[str]) -> int:
    if "--write" in argv or "--check" in argv:
        try:
            changed = stale()
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        for path, text in changed.items():
            if "--write" in argv:
                path.write_text(text, encoding="utf-8")
                print(f"rewrote {path.relative_to(ROOT)}")
            else:
                print(f"stale: {path.relative_to(ROOT)}")
        return 1 if changed and "--check" in argv else 0
    for name, make in BLOCKS.items():
        sys.stdout.write(f"<!-- generated:{name} -->\n{make()}\n<!-- end:{name} -->\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
