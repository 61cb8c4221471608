"""Shared fixtures: real MQTT brokers (Mosquitto, the embedded amqtt one) and subscribers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.brokers import Mosquitto, Subscriber, find_mosquitto

# CI machines are shared and noisy: data generation may be slow, so no health check on
# generation speed and no per-example deadline; the properties themselves stay as strict.
settings.register_profile("edgeline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("edgeline")


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running Mosquitto on a free loopback port, stopped after the test."""
    executable = find_mosquitto()
    if executable is None:
        message = "mosquitto not installed: sudo apt-get install mosquitto"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (required when CI is set)")
        pytest.skip(message)
    broker = Mosquitto(tmp_path / "mosquitto", executable=executable)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mqtt_subscriber() -> Iterator[Callable[..., Subscriber]]:
    """Factory: ``mqtt_subscriber(url, topic, **options)`` returns a started Subscriber,
    closed after the test."""
    started: list[Subscriber] = []

    def make(url: str, topic: str, **options: Any) -> Subscriber:
        subscriber = Subscriber(url, topic, **options)
        subscriber.start()
        started.append(subscriber)
        return subscriber

    try:
        yield make
    finally:
        for subscriber in reversed(started):
            subscriber.close()
