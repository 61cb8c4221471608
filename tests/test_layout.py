"""The layout holds: the device path loads no simulator, every package says what lives in
it and what it may import, and the import rules (.importlinter) are checked."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import edge

ROOT = Path(__file__).resolve().parent.parent
NEVER_ON_THE_DEVICE = ("edge.sim", "edge.cli", "edge.bench", "edge.modeltools", "edge.cloud",
                       "sensors.sim", "matplotlib", "amqtt")  # fmt: skip


def loaded_by(statement: str) -> list[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(done.stdout)
    return modules


@pytest.mark.parametrize(
    "statement",
    ["import edge.runtime", "from edge.runtime.runtime import Runtime", "import sensors"],
)
def test_the_device_path_loads_no_simulator_plotting_or_embedded_broker(statement: str) -> None:
    modules = loaded_by(statement)
    found = [m for m in modules if m.split(".")[0] in NEVER_ON_THE_DEVICE or m.startswith(
        tuple(f"{name}." for name in NEVER_ON_THE_DEVICE)) or m in NEVER_ON_THE_DEVICE]  # fmt: skip
    assert found == []
    assert "edge.runtime.runtime" in modules or statement == "import sensors"


def test_the_runtime_loads_the_command_worker_and_replay_only_when_used() -> None:
    """Import what the config uses: most devices have no [commands] and never replay."""
    modules = loaded_by("from edge.runtime import Runtime")
    assert not {"edge.uplink.commands", "edge.runtime.command_handlers", "edge.uplink.replay",
                "concurrent.futures"} & set(modules)  # fmt: skip
    assert "edge.uplink.commands" in loaded_by("import edge.runtime.command_handlers")


def test_the_check_sees_a_simulator_import_when_there_is_one() -> None:
    """The check above can fail: the simulator's session does load the simulator."""
    modules = loaded_by("import edge.sim.session")
    assert "edge.sim.simulator" in modules and "sensors.sim.bus" in modules


def subpackages() -> list[str]:
    names = []
    for root in ("edge", "sensors", "models", "firmware_bridge"):
        package = importlib.import_module(root)
        names.append(root)
        for info in pkgutil.walk_packages(package.__path__, f"{root}."):
            if info.ispkg:
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", subpackages())
def test_every_package_says_what_lives_there(name: str) -> None:
    package = importlib.import_module(name)
    doc = package.__doc__ or ""
    assert len(doc.split()) >= 12, f"{name} has no docstring worth the name"


def test_every_edge_subpackage_says_what_it_may_import() -> None:
    missing = []
    for info in pkgutil.iter_modules(edge.__path__):
        if not info.ispkg:
            continue
        doc = importlib.import_module(f"edge.{info.name}").__doc__ or ""
        if "import" not in doc:
            missing.append(info.name)
    assert missing == []


def test_the_import_rules_are_kept() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
