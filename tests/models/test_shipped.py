"""The shipped models in models/: intact, small, the same in both backends, and as good on a
fresh run of their scenario as their model cards say."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import models
from edge.modeltools.evaluate import evaluate
from models.metadata import read_metadata, verify
from models.shipped import DIRECTORY, SHIPPED, model_path
from tests.test_scenarios import simulate
from tools.build_models import SHIPPED as BUILT

SCENARIO_OF = {model.name: model.scenario for model in BUILT}


def test_the_build_tool_makes_exactly_the_shipped_models() -> None:
    assert sorted(SCENARIO_OF) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_is_intact_small_and_named(name: str) -> None:
    path = model_path(name)
    assert path == DIRECTORY / f"{name}.onnx" and path.stat().st_size < 1_000_000
    assert verify(path).ok
    meta = read_metadata(path)
    assert meta.name == name and meta.threshold > 0
    card = (DIRECTORY / f"{name}.md").read_text()
    assert meta.weights_sha256 in card  # the card describes this very file


@pytest.mark.parametrize("name", SHIPPED)
def test_both_backends_agree_on_a_shipped_model(name: str) -> None:
    path = model_path(name)
    meta = read_metadata(path)
    a, b = models.load(path, "onnxruntime"), models.load(path, "numpy")
    k = int(re.search(r"\[1, (\d+)\]", meta.input).group(1))  # type: ignore[union-attr]
    rng = np.random.default_rng(7)
    for scale in (0.01, 1.0, 100.0):
        x = (rng.standard_normal((1, k)) * scale).astype(np.float32)
        got, want = b.run({"features": x})["score"], a.run({"features": x})["score"]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_catches_its_scenario_on_an_unseen_seed(name: str, tmp_path: Path) -> None:
    recording = simulate(SCENARIO_OF[name], tmp_path / "run", 9001)
    report = evaluate(model_path(name), recording)
    assert report.score.f1 >= 0.9, report.summary()
    assert report.score.false_positives == 0, report.summary()
