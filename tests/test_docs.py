"""The README documents every command and every config key the code accepts."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from edge.cli import build_parser
from edge.config.device import (
    CommandsConfig,
    DetectorCommon,
    DeviceConfig,
    SensorCommon,
    StorageConfig,
    UplinkConfig,
)
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


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


SECTIONS = [DeviceConfig, StorageConfig, UplinkConfig, CommandsConfig, SensorCommon, DetectorCommon]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda c: c.__name__)
def test_every_config_key_is_in_the_readme(section: type) -> None:
    for field in dataclasses.fields(section):
        assert f"`{field.name}`" in README, f"{section.__name__}.{field.name} undocumented"


def test_every_sensor_and_detector_type_and_parameter_is_in_the_readme() -> None:
    for registry in (SENSOR_TYPES, DETECTOR_TYPES):
        for name, kind in registry.items():
            assert f"`{name}`" in README, f"type {name} undocumented"
            for field in dataclasses.fields(kind.params):
                assert f"`{field.name}`" in README, f"{name}.{field.name} undocumented"


def test_the_generated_reference_tables_in_the_readme_are_fresh() -> None:
    from tools.config_reference import render

    assert render(README) == README, "run: .venv/bin/python tools/config_reference.py --write"
