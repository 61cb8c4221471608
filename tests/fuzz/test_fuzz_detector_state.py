"""Hostile state files: whatever sits in a detector's snapshot file (bytes, JSON, a real
snapshot with values swapped for others), restoring it never raises: the detector resumes
or starts afresh, and keeps working."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.runtime.detector_state import DetectorStates
from models import AdaptiveDetector

LEAF = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4)
JSON = LEAF | st.lists(LEAF, max_size=4) | st.dictionaries(st.text(max_size=4), LEAF, max_size=3)
SNAPSHOT = AdaptiveDetector().snapshot()


@st.composite
def tampered(draw: st.DrawFn) -> bytes:
    """A real snapshot with some of its values replaced, as JSON text."""
    snapshot: dict[str, Any] = dict(SNAPSHOT)
    for key in draw(st.lists(st.sampled_from(sorted(snapshot)), min_size=1, max_size=3)):
        snapshot[key] = draw(JSON)
    return json.dumps(snapshot).encode()


CONTENTS = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    tampered(),
)


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-state-") as directory:
        yield Path(directory)


@pytest.mark.fuzz
@given(contents=CONTENTS)
def test_any_snapshot_file_restores_or_is_ignored(state_dir: Path, contents: bytes) -> None:
    states = DetectorStates(state_dir)
    path = states.store.path("adaptive")
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(contents)
    detector = AdaptiveDetector()
    states.add("adaptive", detector)  # never raises
    for t in range(3):
        detector.observe(float(t), 20.0 + t)
