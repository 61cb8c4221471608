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
            # A bundle holds files and directories only: no link is followed (tarfile
            # recurses without end on some link loops), no device made.
            odd = [m.name for m in members if not (m.isreg() or m.isdir())]
            if odd:
                raise UsageError(f"{bundle}: not an edgeline bundle (links or devices: {odd[0]!r})")
            tops = {name.split("/", 1)[0] for name in tar.getnames()}
            tar.extractall(into, members=members, filter="data")
    # KeyError: a hard link to a member that is not there; ValueError: a NUL in a name.
    except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
        raise UsageError(f"{bundle}: not an edgeline bundle ({exc})") from exc
    if len(tops) != 1 or not (into / next(iter(tops)) / "install.sh").is_file():
        raise UsageError(f"{bundle}: not an edgeline bundle (no install.sh at its top)")
    return into / next(iter(tops))


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
