"""Bundles for the tests: a real one built from this checkout (which needs the package
index), and the helpers that install it offline."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EDGE = [sys.executable, "-m", "edge.cli"]


def need_index() -> None:
    """These tests download from PyPI: without it they say so instead of failing."""
    for host in ("pypi.org", "files.pythonhosted.org"):
        try:
            socket.create_connection((host, 443), timeout=5).close()
        except OSError as exc:
            pytest.skip(f"PyPI is unreachable ({host}: {exc}): a bundle cannot be built")


def bundle(tmp_path: Path, target: str, *extra: str) -> Path:
    """``edge bundle --target target`` into ``tmp_path``, checked; its path."""
    out = tmp_path / f"{target}.tar.gz"
    done = subprocess.run(
        [*EDGE, "bundle", "--target", target, "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{out}: edgeline " in done.stdout and " MB." in done.stdout, done.stdout
    print(done.stdout)  # the size, for the record (pytest -s)
    return out


def no_network(command: list[str]) -> list[str]:
    """``command`` in a new network namespace (only a down loopback), when we may make one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n", *command]
    return command  # install.sh runs pip with --no-index either way
