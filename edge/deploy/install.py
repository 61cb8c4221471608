"""``edge install``: unpack a bundle (or build one for this machine) and run its install.sh."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from edge.errors import UsageError


def unpack(bundle: Path, into: Path) -> Path:
    """Unpack ``bundle`` into ``into``; return its top directory (the one with install.sh)."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = tar.getmembers()
            wrong = next((m.name for m in members if not _plain(m)), None)
            if wrong is None:
                # filter="data" where this Python has it (3.11.4 on); _plain holds either way.
                options = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(into, members=members, **options)  # type: ignore[arg-type]
    # KeyError: a hard link to a member that is not there; ValueError: a NUL in a name.
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise UsageError(f"{bundle}: not an edgeline bundle ({exc})") from exc
    if wrong is not None:
        raise UsageError(f"{bundle}: not an edgeline bundle (it holds {wrong!r})")
    tops = {m.name.split("/", 1)[0] for m in members}
    if len(tops) != 1 or not (into / next(iter(tops)) / "install.sh").is_file():
        raise UsageError(f"{bundle}: not an edgeline bundle (no install.sh at its top)")
    return into / next(iter(tops))


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
