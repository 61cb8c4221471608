"""The one paho client factory: a lost socket is the uplink's to report, not an ERROR."""

from __future__ import annotations

import logging
import re

import pytest

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
