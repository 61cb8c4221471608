"""``edge install``: unpack a bundle (or build one for this machine) and run its install.sh."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edge.errors import UsageError


def unpack(bundle: Path, into: Path) -> Path:
    """Unpack ``bundle`` into ``into``; return its top directory (the one with install.sh)."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = _checked_members(tar, bundle)
            # filter="data" where this Python has it (3.11.4 on); _plain holds either way.
            options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(into, members=members, **options)  # type: ignore[arg-type]
    # KeyError: a hard link to a member that is not there; ValueError: a NUL in a name.
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"{bundle}: not an edgeline bundle ({exc})") from exc
    return into / members[0].name.split("/", 1)[0]


@dataclass(frozen=True)
class BundleInfo:
    """What a bundle says about itself, read without unpacking it."""

    path: Path
    top: str  # the directory it unpacks to
    manifest: dict[str, object]  # its manifest.json
    config: str | None  # config/edge.toml, when the bundle carries one
    example: str | None  # edge.toml.example

    @property
    def version(self) -> str:
        return str(self.manifest.get("version", ""))

    @property
    def target(self) -> str:
        return str(self.manifest.get("target", ""))

    @property
    def python(self) -> str:
        return str(self.manifest.get("python", ""))


def inspect_bundle(bundle: Path) -> BundleInfo:
    """Check ``bundle`` as ``unpack`` does and read its manifest and configs, extracting
    nothing."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = _checked_members(tar, bundle)
            top = members[0].name.split("/", 1)[0]
            texts = {}
            for name in ("manifest.json", "config/edge.toml", "edge.toml.example"):
                member = next((m for m in members if m.name == f"{top}/{name}"), None)
                handle = tar.extractfile(member) if member is not None else None
                texts[name] = handle.read().decode("utf-8") if handle is not None else None
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        if isinstance(exc, UsageError):
            raise
        raise UsageError(f"{bundle}: not an edgeline bundle ({exc})") from exc
    try:
        manifest = json.loads(texts["manifest.json"] or "")
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("name") != "edgeline":
        raise UsageError(f"{bundle}: not an edgeline bundle (no edgeline manifest.json)")
    return BundleInfo(bundle, top, manifest, texts["config/edge.toml"], texts["edge.toml.example"])


def _checked_members(tar: tarfile.TarFile, bundle: Path) -> list[tarfile.TarInfo]:
    """The members of a bundle: plain files and directories under one top holding
    install.sh; UsageError otherwise."""
    members = tar.getmembers()
    wrong = next((m.name for m in members if not _plain(m)), None)
    if wrong is not None:
        raise UsageError(f"{bundle}: not an edgeline bundle (it holds {wrong!r})")
    tops = {m.name.split("/", 1)[0] for m in members}
    top = next(iter(tops), "")
    if len(tops) != 1 or not any(m.name == f"{top}/install.sh" and m.isreg() for m in members):
        raise UsageError(f"{bundle}: not an edgeline bundle (no install.sh at its top)")
    return members


def _plain(member: tarfile.TarInfo) -> bool:
    """A bundle holds files and directories under one relative top: no link is followed
    (tarfile recurses without end on some link loops), no device made, nothing outside."""
    parts = member.name.split("/")
    inside = bool(member.name) and not member.name.startswith("/") and ".." not in parts
    return inside and (member.isreg() or member.isdir())


def install(
    bundle: Path | None,
    root: Path | None = None,
    config: Path | None = None,
    models: Path | None = None,
) -> int:
    """Run the bundle's install.sh; its exit code (0, 1, or 2 on bad input) is ours."""
    with tempfile.TemporaryDirectory(prefix="edge-install-") as tmp:
        if bundle is None:
            from edge.deploy.bundle import build_bundle, native_target

            python = f"{sys.version_info.major}.{sys.version_info.minor}"
            bundle = build_bundle(
                native_target(), Path(tmp) / "edgeline.tar.gz", python, config, models
            ).path
        elif config is not None or models is not None:
            raise UsageError("--config and --models go into a bundle: use them without --bundle")
        top = unpack(bundle, Path(tmp) / "unpacked")
        command = ["sh", str(top / "install.sh")]
        if root is not None:
            command += ["--root", str(root)]
        return subprocess.run(command).returncode
