"""Package-level rules: what ``models`` exports, imports and never imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import models

PACKAGE = Path(models.__file__).parent
FORBIDDEN = {"edge", "sensors", "firmware_bridge"}
HEAVY = {"numpy", "onnxruntime", "onnx"}


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_models_never_imports_the_packages_above_it() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert sources
    for source in sources:
        assert not imported_roots(source) & FORBIDDEN, source


def test_importing_models_loads_nothing_heavy() -> None:
    code = (
        "import sys, models; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY | FORBIDDEN)!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    )
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    expected = {
        "Detection",
        "Detector",
        "DetectorType",
        "DETECTOR_TYPES",
        "ThresholdParams",
        "ThresholdDetector",
        "Severity",
        "ModelError",
    }
    assert expected <= set(models.__all__)
    for name in models.__all__:
        assert hasattr(models, name)
    assert issubclass(models.ModelError, Exception)
    assert issubclass(models.ParamsError, models.ModelError)
    assert issubclass(models.ParamsError, ValueError)
