"""Real MQTT brokers and clients for tests: a Mosquitto process and a collecting subscriber.

``Mosquitto`` runs the system's mosquitto on a free loopback port with a config written for
tests; ``Subscriber`` is a paho-mqtt client that records every message it receives;
``publish`` sends one message and returns once the broker has acknowledged it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

MOSQUITTO_FALLBACK = Path("/usr/sbin/mosquitto")
LOOPBACK = "127.0.0.1"


def find_mosquitto() -> str | None:
    """The mosquitto executable on PATH or in /usr/sbin (Debian), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    if os.access(MOSQUITTO_FALLBACK, os.X_OK):
        return str(MOSQUITTO_FALLBACK)
    return None


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


def split_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` -> (host, port); the port defaults to 1883."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"expected mqtt://host:port, got {url!r}")
    return parts.hostname, parts.port or 1883


class Mosquitto:
    """A mosquitto process on 127.0.0.1, configured for tests, with its files in ``workdir``.

    The port is chosen once and kept across ``stop()``/``start()``, so clients configured
    with ``url`` reconnect to the restarted broker.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        executable: str | None = None,
        port: int | None = None,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        persistence: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.persistence = persistence
        self.extra = list(extra)  # more config lines, e.g. a second (TLS) listener
        exe = executable or find_mosquitto()
        if exe is None:
            raise FileNotFoundError("mosquitto not installed: sudo apt-get install mosquitto")
        self.executable = exe
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = LOOPBACK
        self.port = port if port is not None else free_port(self.host)
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

    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            # With persistence, sessions and queued messages survive stop()/start().
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            # The default (1000) silently drops QoS 1 messages queued for a slow subscriber;
            # 0 means no limit. In-flight stays at its default (20): it only paces delivery.
            "max_queued_messages 0",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
        ]
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
                raise RuntimeError(
                    f"mosquitto exited with code {code} before listening on {self.url}\n"
                    + self.diagnostics()
                )
            if time.monotonic() > deadline:
                self._terminate()
                raise RuntimeError(
                    f"mosquitto did not listen on {self.url} within {self.start_timeout:g} s\n"
                    + self.diagnostics()
                )
            time.sleep(0.01)  # polling interval of a deadline-bounded wait, not a fixed delay
        return self

    def stop(self) -> None:
        """Terminate mosquitto (SIGTERM, then SIGKILL) and return once its port refuses."""
        if self._process is None:
            return
        self._terminate()
        deadline = time.monotonic() + self.stop_timeout
        while port_accepts(self.host, self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url} still accepts connections after mosquitto stopped")
            time.sleep(0.01)

    def restart(self) -> Mosquitto:
        self.stop()
        return self.start()

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
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


@dataclass(frozen=True)
class Received:
    """One message as a subscriber got it."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


Predicate = Callable[[list[Received]], bool]


class Subscriber:
    """A paho-mqtt client that subscribes to ``topic`` and records every message it receives.

    Entering the context returns once the broker has acknowledged the subscription. The
    client reconnects (and subscribes again) by itself if the broker restarts. Every message
    is recorded, whatever its topic, so unsolicited deliveries show up too.
    """

    def __init__(
        self,
        url: str,
        topic: str,
        *,
        qos: int = 1,
        timeout: float = 10.0,
        client_id: str = "",
        clean_session: bool = True,
    ) -> None:
        self.url = url
        self.topic = topic
        self.qos = qos
        self.timeout = timeout
        self._host, self._port = split_url(url)
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._subacks = 0
        self._failure: str | None = None
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._started = False

    # paho callbacks run on paho's network thread.
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            with self._cond:
                self._failure = f"CONNACK {reason_code}"
                self._cond.notify_all()
            return
        client.subscribe(self.topic, qos=self.qos)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        with self._cond:
            failed = [rc for rc in reason_codes if rc.is_failure]
            if failed:
                self._failure = f"SUBACK {failed[0]} for {self.topic!r}"
            else:
                self._subacks += 1
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        received = Received(msg.topic, bytes(msg.payload), bool(msg.retain), int(msg.qos))
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    def start(self) -> Subscriber:
        if self._started:
            return self
        self._client.connect(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self._started = True
        try:
            self.wait_subscribed(1)
        except BaseException:
            self.close()
            raise
        return self

    def wait_subscribed(self, count: int = 1, timeout: float | None = None) -> None:
        """Wait until the broker has acknowledged ``count`` subscriptions (one per connect)."""
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            ok = self._cond.wait_for(
                lambda: self._subacks >= count or self._failure is not None, limit
            )
            if self._failure is not None:
                raise AssertionError(f"subscriber on {self.url}: {self._failure}")
            if not ok:
                raise AssertionError(
                    f"subscriber on {self.url}: {self._subacks} SUBACK(s) for {self.topic!r} "
                    f"within {limit:g} s, wanted {count}"
                )

    @property
    def messages(self) -> list[Received]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, predicate: Predicate, timeout: float | None = None) -> list[Received]:
        """Wait until ``predicate(messages)`` holds and return the messages so far.

        Raises AssertionError listing what did arrive when ``timeout`` passes first.
        """
        limit = self.timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(list(self._messages)), limit):
                got = "\n  ".join(repr(m) for m in self._messages) or "(nothing)"
                raise AssertionError(
                    f"condition not met within {limit:g} s on {self.url} {self.topic!r}; "
                    f"received {len(self._messages)}:\n  {got}"
                )
            return list(self._messages)

    def wait_for_count(self, count: int, timeout: float | None = None) -> list[Received]:
        return self.wait_for(lambda messages: len(messages) >= count, timeout)

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def publish(
    url: str,
    topic: str,
    payload: bytes | str,
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
) -> None:
    """Publish one message and return once the broker acknowledged it (for QoS >= 1)."""
    publish_many(url, [(topic, payload)], qos=qos, retain=retain, timeout=timeout)


def publish_many(
    url: str,
    messages: list[tuple[str, bytes | str]],
    *,
    qos: int = 1,
    retain: bool = False,
    timeout: float = 10.0,
) -> None:
    """Publish (topic, payload) pairs in order; return once the broker acknowledged all."""
    host, port = split_url(url)
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = lambda client, userdata, flags, reason_code, properties: (
        None if reason_code.is_failure else connected.set()
    )
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise AssertionError(f"no CONNACK from {url} within {timeout:g} s")
        infos = [
            client.publish(topic, payload, qos=qos, retain=retain) for topic, payload in messages
        ]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        unacked = sum(not info.is_published() for info in infos)
        if unacked:
            raise AssertionError(f"{url} did not acknowledge {unacked} of {len(infos)} messages")
    finally:
        client.disconnect()
        client.loop_stop()
