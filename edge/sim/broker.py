"""An MQTT broker embedded in the process, for ``edge simulate`` when no ``--broker`` is given.

The broker is amqtt (the optional ``sim`` extra), run on its own asyncio event loop in a
background thread and listening on a free loopback port::

    with EmbeddedBroker() as broker:
        run_simulation(broker_url=broker.url)

It is a convenience for one laptop, not a production broker: anonymous access, no
persistence, no ``$SYS`` topics. It supports what the runtime relies on: QoS 1 and retained
messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from edge.errors import EdgelineError

__all__ = ["BrokerError", "EmbeddedBroker"]

log = logging.getLogger(__name__)

#: amqtt logs every connection at INFO and its state machines (the ``transitions`` package)
#: every state change; the simulator's output is the events, not the broker.
_NOISY_LOGGERS = ("amqtt", "transitions")

#: How long amqtt gets to shut down (normally about a millisecond) before it is cancelled.
_SHUTDOWN_GRACE = 0.5


#: True while amqtt handles a SUBSCRIBE packet; see _edgeline_broker_class().
_HANDLING_SUBSCRIBE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "edgeline_broker_handling_subscribe", default=False
)


class BrokerError(EdgelineError, RuntimeError):
    """The embedded broker cannot be started (amqtt missing, port unavailable, timeout)."""


class EmbeddedBroker:
    """An amqtt MQTT broker on ``host``, in a background thread with its own event loop.

    ``port=0`` (the default) lets the operating system pick a free port; the chosen one is
    ``.port`` once ``start()`` has returned. ``start()`` returns once the broker accepts
    connections or raises :class:`BrokerError` within ``start_timeout`` seconds. ``close()``
    is idempotent and gives up waiting for the thread after ``stop_timeout`` seconds.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self._host = host
        self._port = port
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closed = False

    # -- public API ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The listening port; the requested one (possibly 0) until ``start()`` returns."""
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once it accepts connections."""
        if self._closed:
            raise BrokerError("this EmbeddedBroker was closed; create a new one")
        if self._thread is not None:
            return self
        broker_cls = _import_amqtt_broker()
        _quiet_amqtt_loggers()

        self._thread = threading.Thread(
            target=self._run, args=(broker_cls,), name="edgeline-broker", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            self.close()
            raise BrokerError(
                f"embedded MQTT broker on {self._host}:{self._port} did not start within "
                f"{self._start_timeout:g} s"
            )
        if self._startup_error is not None:
            error = self._startup_error
            self.close()
            raise BrokerError(
                f"embedded MQTT broker could not listen on {self._host}:{self._port}: {error}"
            ) from error
        log.debug("embedded MQTT broker listening on %s", self.url)
        return self

    def close(self) -> None:
        """Stop the broker and its thread; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            # The loop may already have finished (startup failure); then there is nothing to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        thread.join(self._stop_timeout)
        if thread.is_alive():
            log.warning(
                "embedded MQTT broker did not stop within %g s; leaving its daemon thread",
                self._stop_timeout,
            )

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else ("closed" if self._closed else "new")
        return f"<EmbeddedBroker {self.url} {state}>"

    # -- the broker thread ---------------------------------------------------------------

    def _run(self, broker_cls: Any) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(broker_cls))
        except BaseException as exc:  # handed to start(); never printed from this thread
            if self._ready.is_set():
                log.warning("embedded MQTT broker stopped with an error: %r", exc)
            else:
                self._startup_error = exc
        finally:
            with _silence_amqtt_in_this_thread():
                _cancel_leftover_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._ready.set()  # start() must not wait out its timeout for a dead thread

    async def _serve(self, broker_cls: Any) -> None:
        self._stop = asyncio.Event()
        if self._closed:
            return
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self._host}:{self._port}"}},
            # An explicit plugin table replaces amqtt's defaults, which include the $SYS
            # publisher and packet/event loggers.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        broker = broker_cls(config)
        starting = asyncio.ensure_future(broker.start())
        stopping = asyncio.ensure_future(self._stop.wait())
        # A startup failure reaches start() as a BrokerError; amqtt's own traceback of it is noise.
        with _silence_amqtt_in_this_thread():
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():  # close() came first: start() gave up waiting
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return
        starting.result()  # a startup failure propagates to _run, which hands it to start()
        try:
            self._port = _bound_port(broker, fallback=self._port)
            self._ready.set()
            await stopping
        finally:
            with _silence_amqtt_in_this_thread():
                await _shutdown(broker)


def _import_amqtt_broker() -> Any:
    try:
        from amqtt.broker import Broker
    except ImportError as exc:
        raise BrokerError(
            "the embedded MQTT broker needs amqtt: pip install 'edgeline[sim]' "
            "(or pass --broker URL to use an existing broker)"
        ) from exc
    return _edgeline_broker_class(Broker)


def _edgeline_broker_class(broker_cls: Any) -> Any:
    """amqtt's Broker with two fixes for running it embedded.

    * Retained messages go out only in answer to a SUBSCRIBE, as MQTT requires. amqtt 0.12
      also sends every client that connects the retained messages matching *any* client's
      subscriptions, at QoS 0: a late subscriber gets each retained message twice, and a
      client gets retained messages on topics it never subscribed to.
    * Client connections are tracked (``client_writers``) so that a shutdown that hangs can
      drop them (see _shutdown).
    """

    class EdgelineBroker(broker_cls):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.client_writers: set[asyncio.StreamWriter] = set()

        async def stream_connected(
            self,
            reader: asyncio.StreamReader,
            writer: asyncio.StreamWriter,
            *args: Any,
            **kwargs: Any,
        ) -> Any:
            self.client_writers.add(writer)
            try:
                return await super().stream_connected(reader, writer, *args, **kwargs)
            finally:
                self.client_writers.discard(writer)

        async def _handle_subscription(self, *args: Any, **kwargs: Any) -> Any:
            token = _HANDLING_SUBSCRIBE.set(True)
            try:
                return await super()._handle_subscription(*args, **kwargs)
            finally:
                _HANDLING_SUBSCRIBE.reset(token)

        async def _publish_retained_messages_for_subscription(
            self, *args: Any, **kwargs: Any
        ) -> Any:
            if not _HANDLING_SUBSCRIBE.get():
                return None
            return await super()._publish_retained_messages_for_subscription(*args, **kwargs)

    return EdgelineBroker


def _quiet_amqtt_loggers() -> None:
    """Set amqtt's loggers to WARNING unless the user already gave them a level."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def _listener(broker: Any) -> asyncio.Server | None:
    """amqtt's asyncio server for the ``default`` listener, if it can be found."""
    try:
        server = broker._servers["default"].instance
    except (AttributeError, KeyError, TypeError):
        return None
    return server if isinstance(server, asyncio.Server) else None


def _bound_port(broker: Any, fallback: int) -> int:
    """The port the OS gave the ``default`` listener (needed when asked for port 0)."""
    server = _listener(broker)
    if server is None or not server.sockets:
        if fallback == 0:
            raise BrokerError("cannot find which port amqtt bound; pass an explicit port")
        return fallback
    return int(server.sockets[0].getsockname()[1])


async def _shutdown(broker: Any) -> None:
    """Run amqtt's shutdown; if it hangs, drop the client connections, then cut it off.

    On Python 3.11, amqtt's shutdown often waits forever for a client's reader task after a
    QoS 1 delivery: the task sits in ``asyncio.wait_for``, which can lose a cancellation
    (fixed in 3.12). Closing the client sockets ends such a reader; whatever still runs
    after that is cancelled here and by _cancel_leftover_tasks(). The listening socket is
    closed in every case, so the port is free when close() returns.
    """
    listener = _listener(broker)
    shutting_down = asyncio.ensure_future(broker.shutdown())
    try:
        done, _ = await asyncio.wait({shutting_down}, timeout=_SHUTDOWN_GRACE)
        if not done:
            log.debug("amqtt shutdown hangs; closing client connections")
            if listener is not None:
                listener.close()
            for writer in list(getattr(broker, "client_writers", ())):
                writer.transport.abort()
            done, _ = await asyncio.wait({shutting_down}, timeout=_SHUTDOWN_GRACE)
        if not done:
            log.debug("amqtt shutdown still hangs; cancelling it")
            shutting_down.cancel()
            await asyncio.wait({shutting_down}, timeout=_SHUTDOWN_GRACE)
        elif not shutting_down.cancelled() and shutting_down.exception() is not None:
            log.debug("amqtt shutdown raised %r", shutting_down.exception())
    finally:
        if listener is not None:
            listener.close()


class _FromThread(logging.Filter):
    def __init__(self, thread_id: int) -> None:
        super().__init__()
        self.thread_id = thread_id

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread_id


@contextlib.contextmanager
def _silence_amqtt_in_this_thread() -> Iterator[None]:
    """Drop what amqtt logs from this broker thread while it starts or is torn down.

    A failed start logs a traceback that start() re-raises as a BrokerError anyway; shutting
    amqtt down with clients connected logs PUBACK races as warnings, and cancelling
    its tasks logs tracebacks ("Broadcast loop stopped by exception"): noise, not news.
    Other threads (another broker, say) log as usual.
    """
    quiet = _FromThread(threading.get_ident())
    loggers = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.split(".")[0] in _NOISY_LOGGERS
    ]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what amqtt left running (client handlers) so closing the loop stays silent.

    A task that swallows one cancellation (see _shutdown) gets another, a few times over.
    """
    for _ in range(5):
        tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.wait(tasks, timeout=_SHUTDOWN_GRACE))
    leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if leftover:
        log.debug("%d amqtt task(s) ignored cancellation: %r", len(leftover), leftover)
