"""The device end of ``edge deploy``: the system ``ssh`` and ``scp``, one connection shared by
every call (OpenSSH's ControlMaster), and ``remote.sh`` sent on each call's stdin.

The system client, not a Python library: it already has the user's keys, agent,
``~/.ssh/config`` and known hosts, and it never asks for a password here (BatchMode).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from edge.errors import EdgelineError, UsageError, one_line

# user@host, host, user@[v6 address]; never a leading '-', which ssh would take for an option.
_HOST = re.compile(
    r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,31}@)?(?:[A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])"
)
# ssh -o Key=Value: a keyword and a value; no option that runs a program on this machine.
_OPTION = re.compile(r"([A-Za-z]+)=(\S.*)")
_RUNS_LOCALLY = {"proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand"}

REMOTE_SH = files(__package__).joinpath("remote.sh").read_text(encoding="utf-8")


class RemoteError(EdgelineError, RuntimeError):
    """The device could not be reached, or an action on it failed."""


@dataclass(frozen=True)
class Host:
    """Where to deploy: ``destination`` (``user@host``), how to reach it, and, with ``root``, a
    directory on the device to install under instead of ``/`` (install.sh ``--root``)."""

    destination: str
    port: int | None = None
    identity: Path | None = None
    options: tuple[str, ...] = ()
    root: str | None = None


def check_host(host: Host) -> Host:
    """``host`` if every part is well formed; else UsageError naming each problem."""
    problems = []
    if not isinstance(host.destination, str) or not _HOST.fullmatch(host.destination):
        problems.append(f"--host: expected user@host, found {host.destination!r}")
    if host.port is not None and not 0 < host.port < 65536:
        problems.append(f"--port: expected 1 to 65535, found {host.port}")
    if host.identity is not None and not host.identity.is_file():
        problems.append(f"--identity: no such file: {host.identity}")
    for option in host.options:
        match = _OPTION.fullmatch(option)
        if not match or "\n" in option:
            problems.append(f"--ssh-option: expected Key=Value, found {option!r}")
        elif match.group(1).lower() in _RUNS_LOCALLY:
            problems.append(f"--ssh-option: {match.group(1)} runs a command here: not taken")
    if host.root is not None and (not host.root.startswith("/") or "\n" in host.root):
        problems.append(f"--root: expected an absolute path on the device, found {host.root!r}")
    if problems:
        raise UsageError(one_line("; ".join(problems)))
    return host


def parse_lines(text: str) -> tuple[dict[str, str], str]:
    """``key=value`` lines, up to a ``status:`` line; and what follows that line."""
    facts: dict[str, str] = {}
    lines = text.split("\n")
    for at, line in enumerate(lines):
        if line == "status:":
            return facts, "\n".join(lines[at + 1 :])
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            facts[key] = value
    return facts, ""


class Ssh:
    """Runs actions of ``remote.sh`` on ``host`` and copies files there. Use as a context
    manager: the shared connection is closed on exit."""

    def __init__(self, host: Host, *, sudo: bool = False) -> None:
        self.host = check_host(host)
        self.sudo = sudo
        # A short directory: the control socket's path must fit in 108 bytes.
        self._control = Path(tempfile.mkdtemp(prefix="edge-ssh-"))
        for program in ("ssh", "scp"):
            if shutil.which(program) is None:
                raise UsageError(f"edge deploy needs OpenSSH's {program} (Debian: openssh-client)")

    def __enter__(self) -> Ssh:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._control.exists():
            exit_master = [*self._ssh_argv(), "-O", "exit", "--", self.host.destination]
            subprocess.run(exit_master, capture_output=True, timeout=10)
            shutil.rmtree(self._control, ignore_errors=True)

    def _common(self) -> list[str]:
        argv = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}/%C",
                "-o", "ControlPersist=120"]  # fmt: skip
        if self.host.identity is not None:
            argv += ["-i", str(self.host.identity)]
        for option in self.host.options:
            argv += ["-o", option]
        return argv

    def _ssh_argv(self) -> list[str]:
        port = ["-p", str(self.host.port)] if self.host.port else []
        return ["ssh", *port, *self._common()]

    def action(self, name: str, *args: str, root: bool = True) -> tuple[dict[str, str], str]:
        """Run ``remote.sh name args`` (as root through ``sudo -n`` when this login is not
        root and ``root`` is asked); its ``key=value`` lines and what followed ``status:``."""
        words = ["sh", "-s", "--"]
        if self.host.root is not None:
            words += ["--root", self.host.root]
        words += [name, *args]
        if root and self.sudo:
            words = ["sudo", "-n", *words]
        remote = " ".join(shlex.quote(word) for word in words)
        done = self._run([*self._ssh_argv(), "--", self.host.destination, remote], REMOTE_SH)
        return parse_lines(done.stdout)

    def copy(self, local: Path, remote_path: str) -> None:
        port = ["-P", str(self.host.port)] if self.host.port else []
        target = f"{self.host.destination}:{remote_path}"
        self._run(["scp", "-q", *port, *self._common(), "--", str(local), target], None)

    def _run(self, argv: Sequence[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as exc:
            raise RemoteError(
                f"{self.host.destination}: no answer in {exc.timeout:.0f} s"
            ) from None
        if done.returncode != 0:
            raise RemoteError(self._why(done))
        return done

    def _why(self, done: subprocess.CompletedProcess[Any]) -> str:
        lines = [line for line in (done.stderr or "").splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit {done.returncode}"
        if done.returncode == 255:  # ssh's own failure: the connection, not the action
            return one_line(f"cannot reach {self.host.destination}: {last}")
        if "sudo" in last and "password" in last:
            last += " (edge deploy needs passwordless sudo on the device, or a root login)"
        return one_line(f"{self.host.destination}: {last}")
