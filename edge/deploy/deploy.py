"""``edge deploy``: a bundle onto a device over SSH as a new release, live only once healthy.

The steps: copy the bundle, install it beside the running release (install.sh switches
``current`` and keeps the one before as ``previous``), restart, and read the device until it
is healthy. Healthy means the service is active and its status file is the new process's
(same pid), fresh, of the new version, with every sensor ok and the link online. If that does
not happen within the timeout, ``current`` goes back to ``previous`` and the service is
restarted on it: the device runs what it ran before.
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.deploy.ssh import Host, RemoteError, Ssh
from edge.errors import UsageError, one_line

EXIT_LIVE, EXIT_NOT_LIVE = 0, 1
POLL_S = 1.0


@dataclass(frozen=True)
class Health:
    """One reading of the device: the service, and its status file if it has one."""

    active: str
    pid: str
    status: dict[str, Any] | None
    last_log: str = ""

    @classmethod
    def parse(cls, facts: dict[str, str], rest: str) -> Health:
        try:
            status = json.loads(rest) if rest.strip() else None
        except ValueError:
            status = None
        active, pid = facts.get("active", "unknown"), facts.get("pid", "")
        return cls(active, pid, _mapping(status), one_line(facts.get("last_log", "")[:300]))

    def problems(self, version: str) -> list[str]:
        """Why this is not ``version`` running well; empty when it is."""
        if self.active != "active":
            said = f" (its log: {self.last_log})" if self.last_log else ""
            return [f"the service is {self.active or 'not running'}{said}"]
        status = self.status
        if status is None:
            return ["no status file yet"]
        if str(status.get("pid")) != self.pid:
            return ["the status file is not the running process's yet"]
        problems = []
        if not status.get("fresh"):
            problems.append(f"the status file is {status.get('age_s')} s old")
        if status.get("version") != version:
            problems.append(f"it runs edgeline {status.get('version')}, not {version}")
        sensors = _mapping(status.get("sensors")) or {}
        degraded = sorted(k for k, s in sensors.items() if (_mapping(s) or {}).get("state") != "ok")
        if degraded:
            problems.append(f"sensors not ok: {', '.join(degraded)}")
        link = _mapping(status.get("link")) or {}
        if link.get("state") != "online":
            error = f" ({link['last_error']})" if link.get("last_error") else ""
            problems.append(f"the link is {link.get('state')}{error}")
        return problems

    def summary(self) -> str:
        status = self.status or {}
        outbox = _mapping(status.get("outbox")) or {}
        sensors = _mapping(status.get("sensors")) or {}
        count, pending = len(sensors), outbox.get("pending", 0)
        return (f"{count} sensor{'' if count == 1 else 's'} ok, link online,"
                f" {pending} events waiting, {status.get('readings', 0)} readings")  # fmt: skip


def _mapping(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def bundle_version(bundle: Path) -> str:
    """The version in ``bundle``'s manifest.json; UsageError when it is not a bundle."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "manifest.json" and member.isreg():
                    data = tar.extractfile(member)
                    manifest = json.load(data) if data is not None else None
                    if isinstance(manifest, dict) and isinstance(manifest.get("version"), str):
                        return str(manifest["version"])
    except (OSError, tarfile.TarError, ValueError, RecursionError) as exc:
        raise UsageError(one_line(f"--bundle: {bundle}: not an edgeline bundle ({exc})")) from None
    raise UsageError(f"--bundle: {bundle}: not an edgeline bundle (no manifest.json at its top)")


class Deployment:
    """One run of ``edge deploy`` against one device, printing what it does to ``say``."""

    def __init__(
        self,
        ssh: Ssh,
        timeout: float,
        say: Callable[[str], None] = print,
        poll: float = POLL_S,
    ) -> None:
        self.ssh = ssh
        self.timeout = timeout
        self.say = say
        self.poll = poll
        self.where = ssh.host.destination

    def facts(self) -> dict[str, str]:
        facts, _ = self.ssh.action("facts", root=False)
        self.ssh.sudo = facts.get("uid") != "0"
        return facts

    def deploy(self, bundle: Path | None) -> int:
        facts = self.facts()
        before, before_previous = facts.get("current", ""), facts.get("previous", "")
        with tempfile.TemporaryDirectory(prefix="edge-deploy-") as tmp:
            if bundle is None:
                bundle = self._build(facts, Path(tmp))
            version = bundle_version(bundle)
            running = f"running {before}" if before else "nothing installed yet"
            self.say(f"{self.where}: installing edgeline {version} ({running})")
            installed = self._install(bundle)
        if installed.get("current") != version:
            raise RemoteError(
                f"{self.where}: install.sh left current at {installed.get('current')}"
            )
        self.ssh.action("restart")
        if not self.wait_healthy(version):
            self.ssh.action("prune")
            return EXIT_LIVE
        if not before or before == version:
            self.say(f"{self.where}: edgeline {version} is not healthy and there is no other"
                     " release to go back to")  # fmt: skip
            return EXIT_NOT_LIVE
        # Back to exactly what ran before: current and previous as they were.
        self.say(f"{self.where}: rolling back to {before}")
        self._go_to(before, before_previous)
        self.ssh.action("prune")
        return EXIT_NOT_LIVE

    def rollback(self) -> int:
        """By hand: ``current`` back to ``previous`` (and ``previous`` to what ran until now),
        restarted and waited for; exit 0 once healthy."""
        facts = self.facts()
        current, previous = facts.get("current", ""), facts.get("previous", "")
        if not previous:
            raise RemoteError(f"{self.where}: no release before {current or 'this'} to go back to")
        self.say(f"{self.where}: rolling back from {current} to {previous}")
        return EXIT_LIVE if self._go_to(previous, current) else EXIT_NOT_LIVE

    def _go_to(self, current: str, previous: str) -> bool:
        switched, _ = self.ssh.action("switch", current, previous)
        if switched.get("current") != current:
            raise RemoteError(f"{self.where}: current is {switched.get('current')}, not {current}")
        self.ssh.action("restart")
        return not self.wait_healthy(current)

    def wait_healthy(self, version: str) -> list[str]:
        """Read the device until ``version`` runs well (return []), or the timeout (return
        what was still wrong), saying which."""
        self.say(f"{self.where}: waiting up to {self.timeout:g} s for {version} to be healthy")
        start = time.monotonic()
        while True:
            health = Health.parse(*self.ssh.action("health"))
            problems = health.problems(version)
            waited = time.monotonic() - start
            if not problems:
                self.say(f"{self.where}: edgeline {version} is live, healthy after"
                         f" {waited:.1f} s: {health.summary()}")  # fmt: skip
                return []
            if waited >= self.timeout:
                self.say(f"{self.where}: edgeline {version} not healthy after {waited:.0f} s:"
                         f" {'; '.join(problems)}")  # fmt: skip
                return problems
            # Real time on purpose: a device is being waited for, at the pace of a person.
            time.sleep(min(self.poll, max(0.0, self.timeout - waited)))

    def _install(self, bundle: Path) -> dict[str, str]:
        upload, _ = self.ssh.action("mkdir", root=False)
        where = upload.get("dir", "")
        if not where:
            raise RemoteError(f"{self.where}: no upload directory")
        try:
            self.ssh.copy(bundle, f"{where}/edgeline.tar.gz")
            top, _ = self.ssh.action("unpack", f"{where}/edgeline.tar.gz", root=False)
            installed, _ = self.ssh.action("install", top.get("top", ""))
        finally:
            self.ssh.action("forget", where, root=False)
        return installed

    def _build(self, facts: dict[str, str], into: Path) -> Path:
        from edge.deploy.bundle import PYTHONS, TARGETS, build_bundle

        target, python = f"linux_{facts.get('machine')}", facts.get("python", "")
        if target not in TARGETS or python not in PYTHONS:
            raise UsageError(f"{self.where} is {facts.get('machine')} with Python"
                             f" {python or 'missing'}: no bundle for it")  # fmt: skip
        self.say(f"{self.where}: building a bundle for {target}, Python {python}")
        return build_bundle(target, into / "edgeline.tar.gz", python).path


def deploy(host: Host, bundle: Path | None, timeout: float, rollback: bool = False) -> int:
    """``edge deploy``: exit 0 when the release (or the one rolled back to) is live."""
    if not timeout > 0:
        raise UsageError(f"--timeout: expected seconds > 0, found {timeout}")
    if bundle is not None and rollback:
        raise UsageError("--rollback goes back to the release before: give no --bundle")
    if bundle is not None and not bundle.is_file():
        raise UsageError(f"--bundle: no such file: {bundle}")
    with Ssh(host) as ssh:
        run = Deployment(ssh, timeout, say=lambda line: print(line, file=sys.stdout, flush=True))
        return run.rollback() if rollback else run.deploy(bundle)
