"""A throwaway RabbitMQ node with its MQTT plugin, for tests: Debian's ``rabbitmq-server``
(``tools/setup dev`` installs it; 3.10 on Debian 12, MQTT 3.1.1 only), everything in a
temporary directory, free ports on 127.0.0.1.

The node shares nothing with a system-wide RabbitMQ: its own node name, Erlang cookie (in a
``HOME`` of its own), ``rabbitmq.conf``, enabled-plugins file (``rabbitmq_mqtt``, enabled
offline), Mnesia and log directories, and its own epmd on a port of its own
(``ERL_EPMD_PORT``), which this module starts first and stops last, so the node never
starts a shared one. The users come from a definitions file loaded at boot (no
``rabbitmqctl``, which starts an Erlang VM of its own per call), each with every permission
on the default vhost; anonymous MQTT logins are refused.

As root, epmd and the node run as the ``rabbitmq`` user the package creates (through
``runuser``, as ``tests/postgres.py`` runs PostgreSQL); the directory is theirs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import pytest

from edge.bench.mosquitto import LOOPBACK, free_port, port_accepts

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # the script the /usr/sbin wrapper runs
INSTALL_HINT = (
    "Debian, Raspberry Pi OS: sudo apt-get install rabbitmq-server (tools/setup dev does)"
)
READY = "Server startup complete"  # the node's log line once every plugin has started


def find_rabbitmq() -> tuple[str, str] | None:
    """(rabbitmq-server, epmd), or None when either is missing."""
    epmd = shutil.which("epmd") or shutil.which("epmd", path="/usr/lib/erlang/bin")
    if not os.access(SERVER, os.X_OK) or epmd is None:
        return None
    return str(SERVER), epmd


def need_rabbitmq() -> tuple[str, str]:
    """(rabbitmq-server, epmd); without them, skip the test (fail it when CI is set)."""
    found = find_rabbitmq()
    if found is None:
        message = f"RabbitMQ is not installed ({INSTALL_HINT})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required when CI is set")
        pytest.skip(message)
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("rabbitmq")
        except KeyError:
            pytest.fail("running as root, but the rabbitmq package's rabbitmq user is missing")
    return found


def password_hash(password: str) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + SHA-256(salt + password))
    with a 4-byte salt, as a definitions file holds it."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class RabbitMQNode:
    """A RabbitMQ node with the MQTT plugin on ``mqtt_port`` (``url``), AMQP on
    ``amqp_port``, in a temporary directory that ``stop()`` removes. ``users`` maps each user
    name to its password; ``extra`` adds ``rabbitmq.conf`` lines. ``started_in``: the
    seconds from launch to the node's "startup complete" (the MQTT plugin waits 3-6 s of it
    for cluster peers that never come).

    Not thread-safe: one thread starts and stops it (the processes run on their own)."""

    def __init__(
        self, server: str, epmd: str, users: dict[str, str], extra: Sequence[str] = ()
    ) -> None:
        self.server, self.epmd, self.users = server, epmd, dict(users)
        self.extra = list(extra)
        self.mqtt_port, self.amqp_port, self.dist_port, self.epmd_port = _ports(4)
        self.name = f"edgeline-{uuid.uuid4().hex[:10]}@localhost"
        self.root = Path(tempfile.mkdtemp(prefix="edgeline-rabbitmq-"))
        self.log = self.root / "log" / f"{self.name}.log"
        self.output = self.root / "server.out"  # the start script's own output
        self.started_in: float | None = None
        self._as: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam("rabbitmq")
            self._as = ["runuser", "-u", "rabbitmq", "--"]
            self._owner = (entry.pw_uid, entry.pw_gid)
        self._epmd: subprocess.Popen[bytes] | None = None
        self._node: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{LOOPBACK}:{self.mqtt_port}"

    def _write_files(self) -> None:
        home = self.root / "home"
        for folder in (home, self.root / "mnesia", self.root / "log"):
            folder.mkdir()
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (self.root / "enabled_plugins").write_text("[rabbitmq_mqtt].\n")
        (self.root / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        definitions = {
            "vhosts": [{"name": "/"}],
            "users": [
                {"name": name, "password_hash": password_hash(password),
                 "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}
                for name, password in self.users.items()
            ],
            "permissions": [
                {"user": name, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
                for name in self.users
            ],
        }  # fmt: skip
        (self.root / "definitions.json").write_text(json.dumps(definitions))
        config = [
            f"listeners.tcp.default = {LOOPBACK}:{self.amqp_port}",
            f"mqtt.listeners.tcp.default = {LOOPBACK}:{self.mqtt_port}",
            "mqtt.allow_anonymous = false",
            f"load_definitions = {self.root / 'definitions.json'}",
            "log.file.level = info",
            "log.console = false",
            *self.extra,
        ]
        (self.root / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        if self._owner is not None:
            for top, dirs, files in os.walk(self.root):
                for name in [".", *dirs, *files]:
                    os.chown(os.path.join(top, name), *self._owner)

    def _environment(self) -> list[str]:
        root = self.root
        settings = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": root / "home",  # the Erlang cookie
            "ERL_EPMD_PORT": self.epmd_port,
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": self.dist_port,
            "RABBITMQ_CONF_ENV_FILE": root / "rabbitmq-env.conf",
            "RABBITMQ_CONFIG_FILE": root / "rabbitmq.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": root / "enabled_plugins",
            "RABBITMQ_MNESIA_BASE": root / "mnesia",
            "RABBITMQ_LOG_BASE": root / "log",
            "RABBITMQ_PID_FILE": root / "rabbitmq.pid",
            # distribution on loopback only, like every listener here
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        return ["env", "-i", *(f"{key}={value}" for key, value in settings.items())]

    def _spawn(self, argv: list[str], output: Path | None = None) -> subprocess.Popen[bytes]:
        """A process of its own group (so that what it starts stops with it)."""
        sink = output.open("ab") if output else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                [*self._as, *argv], cwd=self.root, stdin=subprocess.DEVNULL,
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        finally:
            if output:
                sink.close()  # type: ignore[union-attr]

    def start(self, timeout: float = 90.0) -> RabbitMQNode:
        self._write_files()
        env = self._environment()
        began = time.monotonic()
        deadline = began + timeout
        self._epmd = self._spawn([*env, self.epmd, "-port", str(self.epmd_port),
                                  "-address", LOOPBACK])  # fmt: skip
        self._wait(lambda: port_accepts(LOOPBACK, self.epmd_port), deadline, "epmd")
        self._node = self._spawn([*env, self.server], self.output)
        self._wait(self._ready, deadline, "the node")
        self.started_in = time.monotonic() - began
        return self

    def _ready(self) -> bool:
        if not self.log.exists() or READY not in self.log.read_text(errors="replace"):
            return False
        return port_accepts(LOOPBACK, self.mqtt_port)

    def _wait(self, ready: Callable[[], bool], deadline: float, what: str) -> None:
        while not ready():
            for process in (self._epmd, self._node):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{what} exited ({process.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start in time:\n{self.tail()}")
            time.sleep(0.1)  # the polling interval of a deadline-bounded wait

    def tail(self) -> str:
        """The end of the start script's output and of the node's log."""
        text = []
        for path in (self.output, self.log):
            if path.exists():
                text.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(text)

    def stop(self) -> None:
        """Stop the node (SIGTERM: a clean shutdown), then epmd; remove the directory.
        Idempotent. A process group still there after 30 s is killed."""
        for process in (self._node, self._epmd):
            if process is None or process.poll() is not None:
                continue
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(10)
            _signal_group(process, signal.SIGKILL)  # anything of its group left behind
        self._node = self._epmd = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> RabbitMQNode:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the process group this module started ``process`` in (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
