"""A real OpenSSH server on a free loopback port, for ``edge deploy``'s tests: a throwaway
host key and client key, the client's key authorised, the host's key known (strict checking
on), and nothing else on the machine touched."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from edge.bench.mosquitto import LOOPBACK, free_port, port_accepts
from tests.waiting import wait_until

SSHD = "/usr/sbin/sshd"


def find_sshd() -> str | None:
    return SSHD if os.access(SSHD, os.X_OK) else shutil.which("sshd")


def _keygen(path: Path) -> str:
    """A new ed25519 key at ``path``; its public line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge-test",
                    "-f", str(path)], check=True)  # fmt: skip
    return path.with_name(path.name + ".pub").read_text().strip()


class Sshd:
    """``sshd -D`` on ``127.0.0.1:port`` letting this user in with ``identity`` only; the
    session gets ``env`` (the device's environment: SetEnv)."""

    def __init__(self, workdir: Path, executable: str, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.executable = executable
        self.env = env
        self.port = free_port()
        self.user = getpass.getuser()
        self.identity = workdir / "id_ed25519"
        self.known_hosts = workdir / "known_hosts"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def destination(self) -> str:
        return f"{self.user}@{LOOPBACK}"

    def ssh_args(self) -> list[str]:
        """What ``edge deploy`` needs to reach it, strict host key checking included."""
        return ["--host", self.destination, "--port", str(self.port),
                "--identity", str(self.identity),
                "--ssh-option", f"UserKnownHostsFile={self.known_hosts}",
                "--ssh-option", "StrictHostKeyChecking=yes"]  # fmt: skip

    def __enter__(self) -> Sshd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o700)
        host_key = self.workdir / "ssh_host_ed25519_key"
        host_public = _keygen(host_key)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(_keygen(self.identity) + "\n")
        key_type, key = host_public.split()[:2]
        self.known_hosts.write_text(f"[{LOOPBACK}]:{self.port} {key_type} {key}\n")
        set_env = " ".join(f"{name}={value}" for name, value in self.env.items())
        config = self.workdir / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress {LOOPBACK}\nHostKey {host_key}\n"
            f"PidFile {self.workdir / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            f"AllowUsers {self.user}\nSubsystem sftp internal-sftp\n"  # scp speaks SFTP
            + (f"SetEnv {set_env}\n" if set_env else "")
        )
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege separation
        self._process = subprocess.Popen(
            [self.executable, "-D", "-e", "-f", str(config)],
            stdout=subprocess.DEVNULL, stderr=open(self.workdir / "sshd.log", "wb"),
        )  # fmt: skip

        def listening() -> bool:
            assert self._process is not None and self._process.poll() is None, self.log()
            return port_accepts(LOOPBACK, self.port)

        wait_until(listening, timeout=15)
        return self

    def log(self) -> str:
        path = self.workdir / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
