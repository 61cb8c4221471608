"""A real Mosquitto on a free loopback port: the benchmark's broker, and the tests' and the
chaos tools' too (one launcher; ``edge bench`` ships, so it lives in the package).

``Mosquitto(workdir)`` runs the system's mosquitto with a config written into ``workdir``.
Mosquitto's default ``max_queued_messages 1000`` silently drops QoS 1 messages queued for a
slow subscriber; the config lifts it (0: no limit). In-flight stays at its default (20): it
only paces delivery. ``BrokerUnavailable`` says mosquitto is not installed, or would not start.

Not thread-safe: one thread starts and stops a broker (the process itself runs on its own).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from edge.errors import EdgelineError

LOOPBACK = "127.0.0.1"
FALLBACK = Path("/usr/sbin/mosquitto")  # Debian installs it outside a user's PATH
INSTALL_HINT = "Debian, Raspberry Pi OS: sudo apt-get install mosquitto"


class BrokerUnavailable(EdgelineError, RuntimeError):
    """Mosquitto is not installed, would not start, or its port stayed taken after a stop."""


def find_mosquitto() -> str | None:
    """The mosquitto executable on PATH or in /usr/sbin (Debian), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return str(FALLBACK) if os.access(FALLBACK, os.X_OK) else None


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on right now (the OS picks it for a socket bound to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """Whether a TCP connection to (host, port) succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Mosquitto:
    """A mosquitto process on 127.0.0.1 with its config, logs and persistence in ``workdir``.

    ``with Mosquitto(workdir) as broker:`` runs it until the block ends. The port is chosen
    once and kept across ``stop()``/``start()`` (and ``kill()``), so clients configured with
    ``url`` reconnect to the restarted broker. With ``persistence``, sessions and queued
    messages survive a ``stop()`` (SIGTERM: mosquitto saves them), not a ``kill()``.
    ``extra`` adds config lines (a second, TLS listener, say); ``log=False`` writes no log
    file (console output still goes to ``mosquitto.out``).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        executable: str | None = None,
        port: int | None = None,
        persistence: bool = False,
        log: bool = True,
        extra: Sequence[str] = (),
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        exe = executable or find_mosquitto()
        if exe is None:
            raise BrokerUnavailable(f"mosquitto is not installed ({INSTALL_HINT})")
        self.executable = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port(self.host)
        self.persistence = persistence
        self.log = log
        self.extra = list(extra)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.output_path = self.workdir / "mosquitto.out"
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "max_queued_messages 0",  # no limit: the default drops QoS 1 messages silently
            # Nagle's algorithm held a message to a subscriber back until that subscriber's
            # delayed ACK (40 ms) whenever the one before was unacked: 1 % of events at 1,000/s.
            "set_tcp_nodelay true",
        ]
        if self.log:
            lines += [
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "log_timestamp_format %H:%M:%S",
                "connection_messages true",
            ]
        else:
            lines.append("log_dest none")
        if os.geteuid() == 0:
            # As root, mosquitto would switch to the 'mosquitto' user, which cannot write here.
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")
        lines.extend(self.extra)
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def start(self) -> Mosquitto:
        """Launch mosquitto and return once its port accepts connections."""
        if self.running:
            return self
        with self.output_path.open("ab") as out:
            self._process = subprocess.Popen(
                [self.executable, "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout
        while not port_accepts(self.host, self.port):
            code = self._process.poll()
            if code is not None:
                self._process = None
                raise BrokerUnavailable(
                    f"mosquitto exited with code {code} before listening on {self.url}\n"
                    + self.diagnostics()
                )
            if time.monotonic() > deadline:
                self._signal(signal.SIGTERM)
                raise BrokerUnavailable(
                    f"mosquitto did not listen on {self.url} within {self.start_timeout:g} s\n"
                    + self.diagnostics()
                )
            time.sleep(0.01)  # polling interval of a deadline-bounded wait, not a fixed delay
        return self

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers) and return once the port refuses; idempotent.
        With persistence, mosquitto saves its sessions and queued messages first."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut would: nothing is saved. Idempotent."""
        self._end(signal.SIGKILL)

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def close(self) -> None:
        """The same as ``stop()``."""
        self.stop()

    def _end(self, how: signal.Signals) -> None:
        if self._process is None:
            return
        self._signal(how)
        deadline = time.monotonic() + self.stop_timeout
        while port_accepts(self.host, self.port):
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"{self.url} still accepts connections after mosquitto stopped"
                )
            time.sleep(0.01)  # polling interval of a deadline-bounded wait

    def _signal(self, how: signal.Signals) -> None:
        """Send ``how`` and wait for the process to end (SIGKILL if it lingers)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(self.stop_timeout)

    def diagnostics(self) -> str:
        """The tail of mosquitto's log and console output, for failure messages."""
        parts = []
        for path in (self.output_path, self.log_path):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace")[-2000:]
                parts.append(f"--- {path.name} ---\n{text}")
        return "\n".join(parts) or "(mosquitto wrote no output)"

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Mosquitto {self.url} {'running' if self.running else 'stopped'}>"


__all__ = ["BrokerUnavailable", "Mosquitto", "find_mosquitto", "free_port", "port_accepts"]
