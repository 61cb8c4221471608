"""``edge bundle``: one tar.gz with everything a device needs to install with no network.

The bundle unpacks to one directory: ``install.sh`` at its top, ``wheels/`` (edgeline's wheel
and a binary wheel for the target of every dependency), the systemd unit, a commented
example config, the config and models given, ``bundle.env`` (what ``install.sh`` reads) and
``manifest.json`` (version, target, python, every file with its sha256).

pip resolves dependency markers against the interpreter it runs in, not the target, so the
top-level requirements are taken from edgeline's wheel and evaluated here for the target;
pip downloads them with their own dependencies (whose markers rarely name the machine).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from edge.deploy import unit_text
from edge.errors import EdgelineError, UsageError

PYTHONS = ("3.11", "3.13")


@dataclass(frozen=True)
class Target:
    """A device platform: its ``platform_machine`` and the wheel platform tags it runs.

    ``system_fallback`` maps a PyPI package that may have no wheel for this platform to the
    Debian package the installer uses instead (through ``--system-site-packages``)."""

    name: str
    machine: str
    platforms: tuple[str, ...]
    system_fallback: dict[str, str] = field(default_factory=dict)


def _manylinux(machine: str) -> tuple[str, ...]:
    # Raspberry Pi OS Bookworm has glibc 2.36, Trixie 2.41: every manylinux up to 2.36 runs.
    versions = (17, 24, 26, 27, 28, 31, 34, 35, 36)
    return (f"manylinux2014_{machine}", *(f"manylinux_2_{v}_{machine}" for v in versions))


TARGETS = {
    "linux_aarch64": Target("linux_aarch64", "aarch64", _manylinux("aarch64")),
    "linux_x86_64": Target("linux_x86_64", "x86_64", _manylinux("x86_64")),
    # PyPI has no numpy wheel for 32-bit ARM (piwheels is not PyPI); onnxruntime has none
    # either, and edgeline's own marker leaves it out there: the numpy backend runs the models.
    "linux_armv7l": Target(
        "linux_armv7l",
        "armv7l",
        ("manylinux_2_17_armv7l", "manylinux_2_31_armv7l", "linux_armv7l"),
        {"numpy": "python3-numpy"},
    ),
}


class BundleError(EdgelineError, RuntimeError):
    """A bundle could not be built (the package index, pip, the file system)."""


class NoBinaryWheel(BundleError):
    """Packages with no binary wheel for the target: installing them would need a compiler."""

    def __init__(self, packages: Sequence[str], target: str, python: str) -> None:
        self.packages = tuple(packages)
        super().__init__(
            f"no binary wheel for {target} (Python {python}) of: {', '.join(self.packages)}"
            " (a device would have to build them from source)"
        )


@dataclass(frozen=True)
class Bundle:
    path: Path
    size: int
    version: str
    target: str
    python: str
    wheels: tuple[str, ...]
    system_packages: tuple[str, ...]
    left_out: tuple[str, ...] = ()  # requirements whose markers exclude this target


def native_target() -> str:
    """This machine's target name."""
    import platform

    name = f"linux_{platform.machine()}"
    if sys.platform != "linux" or name not in TARGETS:
        raise UsageError(f"no bundle target for this machine ({sys.platform} {platform.machine()})")
    return name


def source_root() -> Path:
    """The checkout edgeline runs from: bundles are built from source, not from a venv."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise UsageError(f"edge bundle needs a checkout of edgeline; {root} has no pyproject.toml")
    return root


def build_bundle(
    target: str,
    out: Path,
    python: str = "3.11",
    config: Path | None = None,
    models: Path | None = None,
    source: Path | None = None,
) -> Bundle:
    """Build the bundle for ``target`` at ``out`` (a .tar.gz) from the checkout ``source``
    (by default the one edgeline runs from); downloads from the index."""
    spec = _check_inputs(target, out, python, config, models)
    with tempfile.TemporaryDirectory(prefix="edge-bundle-") as tmp:
        work = Path(tmp)
        wheels = work / "wheels"
        wheel = _build_wheel(source or source_root(), work / "src", wheels)
        version = wheel.name.split("-")[1]
        top = work / f"edgeline-{version}-{target}-py{python}"
        top.mkdir()
        requirements = target_requirements(wheel, spec, python)
        left_out = _left_out(wheel, requirements)
        system = _download(requirements, spec, python, wheels)
        _check_tags(wheels, spec, python)
        shutil.move(wheels, top / "wheels")
        _write_payload(top, spec, python, version, system, left_out, config, models)
        tmp_out = out.with_name(out.name + ".part")
        with tarfile.open(tmp_out, "w:gz") as tar:
            tar.add(top, arcname=top.name)
        tmp_out.replace(out)
        names = tuple(sorted(p.name for p in (top / "wheels").iterdir()))
    return Bundle(
        out, out.stat().st_size, version, target, python, names, tuple(system), tuple(left_out)
    )


def _check_inputs(
    target: str, out: Path, python: str, config: Path | None, models: Path | None
) -> Target:
    problems = []
    # argparse hands over a list for ``--target=--``: check the type, not only the value.
    if not isinstance(target, str) or target not in TARGETS:
        problems.append(f"--target: expected one of {', '.join(TARGETS)}, found {target!r}")
    if not isinstance(python, str) or python not in PYTHONS:
        problems.append(f"--python: expected one of {', '.join(PYTHONS)}, found {python!r}")
    if not out.name.endswith(".tar.gz"):
        problems.append(f"--out: expected a FILE.tar.gz, found {str(out)!r}")
    elif not out.parent.is_dir():
        problems.append(f"--out: {out.parent} is not a directory")
    if config is not None:
        try:
            tomllib.loads(config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not TOML, a NUL
            problems.append(f"--config: {config}: expected a TOML file, found: {exc}")
    if models is not None and not models.is_dir():
        problems.append(f"--models: expected a directory, found {str(models)!r}")
    if problems:
        raise UsageError("; ".join(problems))
    return TARGETS[target]


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True)


_UNREACHABLE = ("NewConnectionError", "Network is unreachable", "Temporary failure in name")


def _build_wheel(root: Path, src: Path, wheels: Path) -> Path:
    """edgeline's wheel, built from a copy so the checkout gets no build/ or egg-info."""
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("edge", "sensors", "models", "firmware_bridge"):
        shutil.copytree(root / package, src / package, ignore=ignore)
    done = _pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(src))
    built = sorted(wheels.glob("edgeline-*.whl"))
    if done.returncode != 0 or not built:
        raise BundleError(f"building edgeline's wheel failed: {_last_line(done.stderr)}")
    return built[0]


def target_requirements(wheel: Path, target: Target, python: str) -> list[str]:
    """edgeline's requirements that apply on the target (markers evaluated for it)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        raise BundleError(
            "edge bundle needs the packaging library: pip install 'edgeline[deploy]'"
        ) from None

    environment = {
        "platform_machine": target.machine,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": python,
        "python_full_version": f"{python}.0",
        "extra": "",
    }
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode("utf-8").splitlines()
    found = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.partition(":")[2].strip())
            marker = requirement.marker
            if marker is None or marker.evaluate(environment):
                requirement.marker = None
                found.append(str(requirement))
    return found


def _left_out(wheel: Path, kept: list[str]) -> list[str]:
    """Names of edgeline's own (not extra) requirements that the target's markers drop."""
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode("utf-8").splitlines()
    names = {_name(r) for r in kept}
    return [
        _name(value)
        for line in lines
        if line.startswith("Requires-Dist:")
        and "extra ==" not in (value := line.partition(":")[2].strip())
        and _name(value) not in names
    ]


def _download(requirements: list[str], target: Target, python: str, wheels: Path) -> list[str]:
    """Download binary wheels; return the Debian packages standing in for missing ones."""
    system = []
    own = [r for r in requirements if _name(r) not in target.system_fallback]
    for requirement in requirements:
        debian = target.system_fallback.get(_name(requirement))
        if debian is not None:
            try:
                _pip_download([requirement], target, python, wheels)
            except NoBinaryWheel:
                system.append(debian)
    _pip_download(own, target, python, wheels)
    return system


def _pip_download(requirements: list[str], target: Target, python: str, wheels: Path) -> None:
    platforms = [arg for tag in target.platforms for arg in ("--platform", tag)]
    abi = "cp" + python.replace(".", "")
    done = _pip(
        "download", "--quiet", "--only-binary=:all:", "--dest", str(wheels),
        "--implementation", "cp", "--python-version", python, "--abi", abi, "--abi", "abi3",
        "--abi", "none", *platforms, *requirements,
    )  # fmt: skip
    if done.returncode == 0:
        return
    if any(word in done.stderr for word in _UNREACHABLE):
        raise BundleError(f"cannot reach the package index: {_last_line(done.stderr)}")
    missing = re.findall(r"No matching distribution found for (\S+)", done.stderr)
    if missing:
        raise NoBinaryWheel([_name(m) for m in missing], target.name, python)
    raise BundleError(f"pip download failed: {_last_line(done.stderr)}")


def _check_tags(wheels: Path, target: Target, python: str) -> None:
    """Every wheel runs on the target: a belt to pip's braces, and what the tests check."""
    wrong = [w.name for w in wheels.glob("*.whl") if not wheel_fits(w.name, target, python)]
    if wrong:
        raise BundleError(f"wheels that do not run on {target.name}: {', '.join(wrong)}")


def wheel_fits(filename: str, target: Target, python: str) -> bool:
    """Whether a wheel (by its file name's tags) runs on ``target`` with CPython ``python``."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        return False
    interpreters, abis, platforms = (set(p.split(".")) for p in parts[-3:])
    cp = "cp" + python.replace(".", "")
    platform_ok = "any" in platforms or bool(platforms & set(target.platforms))
    python_ok = bool({cp, "py3", "py2.py3"} & interpreters) or "abi3" in abis
    return platform_ok and python_ok


def _write_payload(
    top: Path,
    target: Target,
    python: str,
    version: str,
    system: list[str],
    left_out: list[str],
    config: Path | None,
    models: Path | None,
) -> None:
    here = files(__package__)
    install = top / "install.sh"
    install.write_text(here.joinpath("install.sh").read_text(encoding="utf-8"), encoding="utf-8")
    install.chmod(0o755)
    (top / "edgeline.service").write_text(unit_text(), encoding="utf-8")
    example = here.joinpath("edge.toml.example").read_text(encoding="utf-8")
    (top / "edge.toml.example").write_text(example, encoding="utf-8")
    if config is not None:
        (top / "config").mkdir()
        shutil.copy2(config, top / "config" / "edge.toml")
    if models is not None:
        shutil.copytree(models, top / "models")
    settings = {
        "VERSION": version,
        "TARGET": target.name,
        "PYTHON_VERSION": python,
        "SYSTEM_SITE_PACKAGES": "1" if system else "0",
        "SYSTEM_PACKAGES": " ".join(system),
    }
    env = "".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items())
    (top / "bundle.env").write_text(env, encoding="utf-8")
    listing = {
        str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(top.rglob("*"))
        if p.is_file()
    }
    manifest = {
        "name": "edgeline",
        "version": version,
        "target": target.name,
        "python": python,
        "system_site_packages": bool(system),
        "system_packages": system,
        "left_out": left_out,
        "files": listing,
    }
    (top / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return (match.group(0) if match else requirement).lower().replace("_", "-")


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no output)"
