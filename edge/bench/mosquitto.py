"""A Mosquitto of the benchmark's own, on a free loopback port, configured for load.

The benchmark must not depend on the test suite, so this is a small launcher of its own:
the system's mosquitto with a config written into a scratch directory. Mosquitto's default
``max_queued_messages 1000`` silently drops QoS 1 messages queued for a slow subscriber; it
is lifted here, as in the tests.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from edge.errors import EdgelineError

LOOPBACK = "127.0.0.1"
FALLBACK = Path("/usr/sbin/mosquitto")  # Debian installs it outside a user's PATH


class BrokerUnavailable(EdgelineError, RuntimeError):
    """Mosquitto is not installed or would not start."""


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return str(FALLBACK) if os.access(FALLBACK, os.X_OK) else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.2):
            return True
    except OSError:
        return False


class BenchBroker:
    """``with BenchBroker(workdir) as broker:`` runs mosquitto until the block ends."""

    def __init__(self, workdir: Path, *, start_timeout: float = 10.0) -> None:
        exe = find_mosquitto()
        if exe is None:
            raise BrokerUnavailable(
                "mosquitto is not installed (Debian: apt-get install mosquitto)"
            )
        self.executable = exe
        self.workdir = workdir
        self.port = free_port()
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> BenchBroker:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {LOOPBACK}",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 0",  # no limit: the default drops QoS 1 messages silently
            "log_dest none",
        ]
        if os.geteuid() == 0:  # else it switches to a 'mosquitto' user that cannot write here
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        output = self.workdir / "mosquitto.out"
        with output.open("ab") as out:
            self._process = subprocess.Popen(
                [self.executable, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout
        while not _accepts(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                text = output.read_text(encoding="utf-8", errors="replace")[-1000:]
                raise BrokerUnavailable(f"mosquitto did not start on {self.url}: {text}")
            time.sleep(0.01)  # polling a bounded wait
        return self

    def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)

    def __enter__(self) -> BenchBroker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
