"""The docs document every command and every config key the code accepts, and their
generated tables are fresh.

The README lists every command; docs/configuration.md every config key; docs/sensors.md
every sensor and filter type; docs/detectors.md every detector type, each with its
parameters. ``tools/config_reference.py --write`` regenerates the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from edge.cli import build_parser
from edge.config.device import CommandsConfig, DeviceConfig, StorageConfig, UplinkConfig
from edge.config.feedback import FeedbackConfig
from edge.config.homeassistant import HomeAssistantConfig
from edge.config.metrics import MetricsConfig
from edge.config.sensing import ActionConfig, DetectorCommon, SensorCommon
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES
from sensors.filters import FILTER_TYPES
from tools import config_reference

ROOT = Path(__file__).resolve().parent.parent


def read(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


README = read("README.md")
CONFIGURATION = read("docs/configuration.md")
SENSORS = read("docs/sensors.md")
DETECTORS = read("docs/detectors.md")


def commands() -> list[tuple[str, argparse.ArgumentParser, str | None]]:
    """(name, parser, help) for every command and sub-command."""
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    found.append((f"{prefix} {name}".strip(), sub, helps.get(name)))
                    walk(sub, f"{prefix} {name}")

    walk(build_parser(), "")
    return found


def test_every_command_has_help_and_is_in_the_readme() -> None:
    names = [name for name, _, _ in commands()]
    assert {"run", "simulate", "check-config", "outbox stats", "outbox tail", "sink"} <= set(names)
    for name, parser, help_text in commands():
        assert help_text, f"edge {name} has no help text"
        assert f"edge {name}" in README, f"edge {name} is not documented in the README"
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"edge {name} {action.option_strings[0]} has no help"


SECTIONS = [
    DeviceConfig,
    StorageConfig,
    UplinkConfig,
    CommandsConfig,
    HomeAssistantConfig,
    MetricsConfig,
    FeedbackConfig,
    SensorCommon,
    DetectorCommon,
    ActionConfig,
]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda c: c.__name__)
def test_every_config_key_is_in_the_configuration_reference(section: type) -> None:
    for field in dataclasses.fields(section):
        assert f"`{field.name}`" in CONFIGURATION, f"{section.__name__}.{field.name} undocumented"


@pytest.mark.parametrize(
    ("registry", "doc", "where"),
    [
        (SENSOR_TYPES, SENSORS, "docs/sensors.md"),
        (FILTER_TYPES, SENSORS, "docs/sensors.md"),
        (DETECTOR_TYPES, DETECTORS, "docs/detectors.md"),
    ],
    ids=["sensors", "filters", "detectors"],
)
def test_every_type_and_parameter_is_documented(
    registry: Mapping[str, Any], doc: str, where: str
) -> None:
    for name, kind in registry.items():
        assert f"`{name}`" in doc, f"type {name} is not in {where}"
        for field in dataclasses.fields(kind.params):
            assert f"`{field.name}`" in doc, f"{name}.{field.name} is not in {where}"


def test_the_generated_tables_in_docs_are_fresh() -> None:
    stale = config_reference.stale(ROOT)
    names = ", ".join(str(path.relative_to(ROOT)) for path in stale)
    assert not stale, f"stale: {names}; run .venv/bin/python tools/config_reference.py --write"


def test_every_generated_block_has_one_home_in_docs() -> None:
    homes = {
        "device": "docs/configuration.md",
        "storage": "docs/configuration.md",
        "uplink": "docs/configuration.md",
        "commands": "docs/configuration.md",
        "homeassistant": "docs/configuration.md",
        "metrics": "docs/configuration.md",
        "feedback": "docs/configuration.md",
        "sensor-common": "docs/configuration.md",
        "detector-common": "docs/configuration.md",
        "actions": "docs/configuration.md",
        "sensor-types": "docs/sensors.md",
        "filter-types": "docs/sensors.md",
        "detectors": "docs/detectors.md",
    }
    assert set(homes) == set(config_reference.BLOCKS)
    for name, home in homes.items():
        assert f"<!-- generated:{name} -->" in read(home), f"{name} is not in {home}"


def test_a_stale_block_is_seen(tmp_path: Path) -> None:
    """The freshness check can fail: an edited table, a missing block, an unknown one."""
    (tmp_path / "docs").mkdir()
    for path in config_reference.documents(ROOT):
        target = tmp_path / path.relative_to(ROOT)
        target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert config_reference.stale(tmp_path) == {}

    sensors = tmp_path / "docs" / "sensors.md"
    fresh = sensors.read_text(encoding="utf-8")
    edited = fresh.replace("| `pin` |", "| `pin_number` |", 1)
    assert edited != fresh
    sensors.write_text(edited, encoding="utf-8")
    assert set(config_reference.stale(tmp_path)) == {sensors}
    assert config_reference.stale(tmp_path)[sensors] == fresh

    opening, closing = "<!-- generated:filter-types -->", "<!-- end:filter-types -->"
    sensors.write_text(fresh.replace(closing, ""), encoding="utf-8")
    with pytest.raises(ValueError, match="has no <!-- end:filter-types -->"):
        config_reference.stale(tmp_path)

    block = fresh[fresh.index(opening) : fresh.index(closing) + len(closing)]
    sensors.write_text(fresh.replace(block, ""), encoding="utf-8")
    with pytest.raises(ValueError, match=r"no document holds the generated block.*filter-types"):
        config_reference.stale(tmp_path)

    sensors.write_text(fresh + "\n<!-- generated:nonsense -->\n<!-- end:nonsense -->\n", "utf-8")
    with pytest.raises(ValueError, match="unknown generated block 'nonsense'"):
        config_reference.stale(tmp_path)
