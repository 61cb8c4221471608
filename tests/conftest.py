"""Shared fixtures: real MQTT brokers (Mosquitto, the embedded amqtt one) and subscribers."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, settings

from edge.bench.mosquitto import Mosquitto
from tests.brokers import Subscriber, need_mosquitto
from tests.bundles import REPO, bundle, need_index
from tests.postgres import PostgresCluster, need_postgres

if TYPE_CHECKING:
    from tests.test_sink_store import SinkProcess

# CI machines are shared and noisy: data generation may be slow, so no health check on
# generation speed and no per-example deadline; the properties themselves stay as strict.
settings.register_profile("edgeline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The long fuzz campaign (tools/fuzz.py): the same fuzz-marked tests, many more cases each.
settings.register_profile(
    "fuzz",
    parent=settings.get_profile("edgeline"),
    max_examples=int(os.environ.get("EDGELINE_FUZZ_EXAMPLES", "100000")),
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get("EDGELINE_HYPOTHESIS_PROFILE", "edgeline"))


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A running Mosquitto on a free loopback port, stopped after the test."""
    with Mosquitto(tmp_path / "mosquitto", executable=need_mosquitto()) as broker:
        yield broker


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


@pytest.fixture(scope="session")
def native_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle for this machine and its Python, with a config and a model, built once for
    the session (the bundle and flash tests share it): it downloads from the index."""
    need_index()
    tmp_path = tmp_path_factory.mktemp("native")
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy2(REPO / "models" / "vibration.onnx", models)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return bundle(tmp_path, f"linux_{os.uname().machine}", "--python", python,
                  "--config", str(REPO / "examples" / "every-sensor.toml"),
                  "--models", str(models))  # fmt: skip


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session (skipped when not installed)."""
    with PostgresCluster(*need_postgres()) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of a new, empty database in the session's cluster."""
    return postgres_cluster.database()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A sink's database, once SQLite and once a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'events.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sinks() -> Iterator[list[SinkProcess]]:
    """``edge sink`` processes a test starts; killed at its end if still running."""
    started: list[SinkProcess] = []
    yield started
    for sink in started:
        sink.close()
