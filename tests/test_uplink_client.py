"""The one paho client factory: a lost socket is the uplink's to report, not an ERROR."""

from __future__ import annotations

import logging
import re
import threading

import pytest

from edge.bench.mosquitto import free_port
from edge.config.device import UplinkConfig
from edge.errors import UplinkError
from edge.uplink.client import PAHO_LOG, paho_client


def test_a_lost_socket_is_info_while_other_paho_errors_stay_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=PAHO_LOG.name):
        PAHO_LOG.error("failed to receive on socket: %s", "[Errno 104] Connection reset")
        PAHO_LOG.error("Caught exception in on_publish: %s", "boom")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("ERROR", "Caught exception in on_publish: boom")
    ]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=PAHO_LOG.name):
        PAHO_LOG.error("timeout on socket: %s", "timed out")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "timeout on socket: timed out")
    ]


def test_tls_files_that_cannot_be_loaded_are_an_uplink_error() -> None:
    settings = UplinkConfig(broker="mqtts://127.0.0.1:8883", ca_file="/nonexistent/ca.pem")
    with pytest.raises(
        UplinkError, match=re.escape("cannot load TLS files for mqtts://127.0.0.1:8883")
    ):
        paho_client(settings, "t-01", inflight=20)


def test_a_client_retrying_an_unreachable_broker_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """paho's own retry loop runs ``_loop`` without a socket between attempts; the line it
    logs for that is not an error (the broker being away is what the uplink reports)."""
    port = free_port()  # nothing listens on it
    client = paho_client(UplinkConfig(broker=f"mqtt://127.0.0.1:{port}"), "t-02", inflight=20)
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    retried = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Client is not connected"):
                retried.set()

    seen = Seen()
    PAHO_LOG.addHandler(seen)
    try:
        with caplog.at_level(logging.INFO, logger=PAHO_LOG.name):
            client.connect_async("127.0.0.1", port)
            client.loop_start()
            assert retried.wait(timeout=30), "paho never ran its loop without a socket"
            client.loop_stop()
    finally:
        PAHO_LOG.removeHandler(seen)
    levels = {r.levelname for r in caplog.records if r.name == PAHO_LOG.name}
    assert "INFO" in levels and "ERROR" not in levels
