"""Fixtures for the sensor tests: gpiozero's own mock pin factory."""

from collections.abc import Iterator

import pytest
from gpiozero.pins.mock import MockFactory


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    """gpiozero's MockFactory, closed (pins released) after the test."""
    f = MockFactory()
    yield f
    f.close()
