"""Hot reload and shadow mode of the ``onnx`` detector, with real .onnx files run by onnxruntime.

The hand-made models score the raw window of 4 readings as ``gain * mean``, so a window of
constant readings ``v`` scores ``gain * v`` and what each model decides is known by hand:
``a`` (gain 1, threshold 0.5) alarms when the mean exceeds 0.5, ``b`` (gain 2, threshold 1.5)
when it exceeds 0.75.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from models.detection import Detection
from models.metadata import WEIGHTS_KEY, weights_digest
from models.onnx_detector import NoCandidate, OnnxDetector, OnnxParams, TamperedModel
from models.training import export_onnx, train

WINDOW = 4


def write_mean_model(
    path: Path,
    *,
    gain: float,
    threshold: float,
    name: str,
    version: str,
    n: int = WINDOW,
    poison: bool = False,
) -> Path:
    """x [1, n] -> score [1, 1] = x @ (gain / n); ``poison`` multiplies the score by NaN."""
    weights = {"w": np.full((n, 1), gain / n, np.float32), "nan": np.array([np.nan], np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mean" if poison else "score"])]
    if poison:
        nodes.append(helper.make_node("Mul", ["mean", "nan"], ["score"]))
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(array, key) for key, array in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    props = {"name": name, "version": version, "threshold": repr(threshold)}
    helper.set_model_props(model, {**props, WEIGHTS_KEY: weights_digest(weights)})
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture
def model_a(tmp_path: Path) -> Path:
    return write_mean_model(tmp_path / "a.onnx", gain=1.0, threshold=0.5, name="a", version="1")


@pytest.fixture
def model_b(tmp_path: Path) -> Path:
    return write_mean_model(tmp_path / "b.onnx", gain=2.0, threshold=1.5, name="b", version="2")


def detector(path: Path, **kwargs: object) -> OnnxDetector:
    return OnnxDetector(
        OnnxParams(model=str(path), window=WINDOW, backend="onnxruntime", **kwargs)  # type: ignore[arg-type]
    )


class Feeder:
    """Feeds windows of constant readings at t = 0, 1, 2, ... and keeps what comes back."""

    def __init__(self, target: OnnxDetector) -> None:
        self.target = target
        self.t = 0
        self.found: list[Detection] = []

    def windows(self, *means: float) -> list[Detection]:
        new: list[Detection] = []
        for mean in means:
            for _ in range(WINDOW):
                detection = self.target.observe(float(self.t), mean)
                self.t += 1
                if detection is not None:
                    new.append(detection)
        self.found += new
        return new


def kinds(found: list[Detection], kind: str) -> list[Detection]:
    return [d for d in found if d.kind == kind]


def flip_weight_byte(source: Path, target: Path, initializer: str) -> Path:
    """Copy ``source`` with one byte of ``initializer``'s raw_data flipped; metadata untouched."""
    model = onnx.load(source)
    (tensor,) = [t for t in model.graph.initializer if t.name == initializer]
    raw = bytearray(tensor.raw_data)
    raw[0] ^= 0x01
    tensor.raw_data = bytes(raw)
    onnx.save(model, target)
    return target


# --- reload -------------------------------------------------------------------------------------


def test_an_accepted_reload_switches_score_threshold_and_version_on_the_next_window(
    model_a: Path, model_b: Path
) -> None:
    d = detector(model_a)
    feed = Feeder(d)
    (fired,) = feed.windows(1.0)
    assert fired.fields["state"] == "active" and fired.fields["model"] == "a"

    result = d.reload(str(model_b))

    assert result.accepted, result.reason
    assert result.sha256 == hashlib.sha256(model_b.read_bytes()).hexdigest()
    assert (result.name, result.version) == ("b", "2")
    assert (d.model_name, d.model_version, d.threshold) == ("b", "2", 1.5)
    # The alarm carried over: b scores 2.0 > 1.5, still active, so no second "active".
    assert kinds(feed.windows(1.0), "anomaly") == []
    assert d.score == pytest.approx(2.0)
    assert d.state == "active"
    # 0.7: a would still alarm (0.7 > 0.5); b scores 1.4 < 1.5 and clears, in b's name.
    (clear,) = kinds(feed.windows(0.7), "anomaly")
    assert clear.fields["state"] == "clear"
    assert clear.fields["threshold"] == 1.5
    assert (clear.fields["model"], clear.fields["model_version"]) == ("b", "2")
    assert clear.value == pytest.approx(1.4)
    (notice,) = kinds(feed.found, "health")
    assert notice.severity == "info"
    assert notice.fields["state"] == "model_reloaded"
    assert notice.fields["sha256"] == result.sha256


def test_reload_without_a_path_rereads_the_configured_file(
    tmp_path: Path, model_a: Path, model_b: Path
) -> None:
    live = tmp_path / "live.onnx"
    live.write_bytes(model_a.read_bytes())
    d = detector(live)
    os.replace(model_b, live)  # how a new model lands: written beside, renamed over

    result = d.reload()

    assert result.accepted and d.model_version == "2"
    assert d.model.path == live


def test_tampered_weights_are_refused_and_the_old_model_keeps_detecting(
    tmp_path: Path, model_a: Path, model_b: Path
) -> None:
    tampered = flip_weight_byte(model_b, tmp_path / "tampered.onnx", "w")
    d = detector(model_a)
    feed = Feeder(d)
    feed.windows(0.0)

    result = d.reload(str(tampered))

    assert not result.accepted
    assert "weights_sha256 mismatch" in result.reason
    assert result.sha256 == hashlib.sha256(tampered.read_bytes()).hexdigest()
    assert (result.name, result.version) == ("b", "2")
    assert (d.model_name, d.threshold) == ("a", 0.5)
    (fired,) = kinds(feed.windows(0.6), "anomaly")  # a alarms at 0.6; b would not (1.2 < 1.5)
    assert fired.fields["model"] == "a"
    (notice,) = kinds(feed.found, "health")
    assert notice.severity == "warning"
    assert notice.fields["state"] == "model_refused"
    assert "weights_sha256 mismatch" in str(notice.fields["reason"])
    with pytest.raises(TamperedModel, match="weights_sha256 mismatch"):
        detector(tampered)


def test_a_trained_model_with_a_flipped_weight_is_refused(tmp_path: Path, model_a: Path) -> None:
    rng = np.random.default_rng(5)
    normal = rng.normal([0.0, 1.0, 2.0, 3.0], 0.1, size=(400, WINDOW))
    trained = train(normal, components=2, fpr=0.01)
    meta = {"name": "pca", "version": "3", "threshold": repr(trained.calibration.threshold)}
    good = tmp_path / "pca.onnx"
    export_onnx(trained.model, good, meta)
    bad = flip_weight_byte(good, tmp_path / "pca-bad.onnx", "residual")
    d = detector(model_a)

    refused = d.reload(str(bad))
    accepted = d.reload(str(good))

    assert not refused.accepted and "weights_sha256 mismatch" in refused.reason
    assert accepted.accepted, accepted.reason
    assert (d.model_name, d.model_version) == ("pca", "3")


def test_an_incompatible_input_shape_is_refused_naming_both_shapes(
    tmp_path: Path, model_a: Path
) -> None:
    three = write_mean_model(
        tmp_path / "three.onnx", gain=1.0, threshold=0.5, name="t", version="9", n=3
    )
    d = detector(model_a)

    result = d.reload(str(three))

    assert not result.accepted
    assert "[1, 3]" in result.reason and "[1, 4]" in result.reason
    assert d.model_name == "a"


@pytest.mark.parametrize("windows_before", [0, 1])
def test_a_model_scoring_nan_on_the_trial_run_is_refused(
    tmp_path: Path, model_a: Path, windows_before: int
) -> None:
    nan = write_mean_model(
        tmp_path / "nan.onnx", gain=1.0, threshold=0.5, name="n", version="1", poison=True
    )
    d = detector(model_a)
    Feeder(d).windows(*[0.2] * windows_before)

    result = d.reload(str(nan))

    assert not result.accepted
    where = "the most recent window" if windows_before else "an all-zero input"
    assert f"scores nan on {where}" in result.reason
    assert d.model_name == "a"


@pytest.mark.parametrize("content", [None, b"not an onnx model", b""])
def test_a_missing_or_corrupt_file_is_refused(
    tmp_path: Path, model_a: Path, content: bytes | None
) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    d = detector(model_a)

    result = d.reload(str(path))

    assert not result.accepted and result.reason.startswith("refused: ")
    assert result.sha256 == (None if content is None else hashlib.sha256(content).hexdigest())
    assert d.model_name == "a"


def test_a_model_without_threshold_is_refused_unless_the_config_sets_one(
    tmp_path: Path, model_a: Path
) -> None:
    bare = tmp_path / "bare.onnx"
    proto = onnx.load(write_mean_model(bare, gain=3.0, threshold=0, name="x", version="1"))
    del proto.metadata_props[:]
    onnx.save(proto, bare)

    refused = detector(model_a).reload(str(bare))
    overridden = detector(model_a, threshold=0.9)
    accepted = overridden.reload(str(bare))

    assert not refused.accepted and "no 'threshold'" in refused.reason
    assert accepted.accepted and overridden.threshold == 0.9
    assert overridden.model_name == "bare"  # no metadata name: the file's stem


def test_a_refused_reload_changes_nothing_in_what_is_detected(
    tmp_path: Path, model_a: Path
) -> None:
    series = (0.0, 1.0, 1.0, 0.2, 0.8, 0.8, 0.0)
    plain, reloaded = detector(model_a, hysteresis=0.1), detector(model_a, hysteresis=0.1)
    expected = kinds(Feeder(plain).windows(*series), "anomaly")
    feed = Feeder(reloaded)
    feed.windows(*series[:2])
    assert not reloaded.reload(str(tmp_path / "missing.onnx")).accepted
    feed.windows(*series[2:])

    assert kinds(feed.found, "anomaly") == expected


# --- shadow mode --------------------------------------------------------------------------------

# Window means and who alarms: a above 0.5, b above 0.75.
SERIES = (0.0, 0.6, 1.0, 0.6, 0.0, 1.0)  # a: F T T T F T   b: F F T F F T   agree: 4 of 6


def test_shadow_counts_alarms_and_agreement_and_never_emits(model_a: Path, model_b: Path) -> None:
    d = detector(model_a)
    started = d.shadow(str(model_b))
    feed = Feeder(d)
    feed.windows(*SERIES)

    assert started.accepted and (started.name, started.version) == ("b", "2")
    stats = d.shadow_stats()
    assert stats is not None
    assert (stats.candidate, stats.candidate_version) == ("b", "2")
    assert (stats.windows, stats.active_alarms, stats.candidate_alarms) == (6, 4, 2)
    assert stats.agreements == 4 and stats.agreement == pytest.approx(4 / 6)
    anomalies = kinds(feed.found, "anomaly")
    assert [a.fields["state"] for a in anomalies] == ["active", "clear", "active"]
    assert {a.fields["model"] for a in anomalies} == {"a"}
    assert [h.fields["state"] for h in kinds(feed.found, "health")] == ["shadow_started"]


def test_shadow_over_blocks_counts_the_same(model_a: Path, model_b: Path) -> None:
    d = detector(model_a)
    d.shadow(str(model_b))
    samples = np.repeat(np.array(SERIES), WINDOW)

    found = d.observe_block(np.arange(len(samples), dtype=float), samples)

    stats = d.shadow_stats()
    assert stats is not None and (stats.windows, stats.agreements) == (6, 4)
    assert [f.kind for f in found] == ["health", "anomaly", "anomaly", "anomaly"]


def test_promote_on_command_makes_the_candidate_active(model_a: Path, model_b: Path) -> None:
    d = detector(model_a)
    d.shadow(str(model_b))
    feed = Feeder(d)
    feed.windows(*SERIES[:3])

    stats = d.promote()

    assert (stats.windows, stats.agreements) == (3, 2)
    assert d.shadow_stats() is None
    assert (d.model_name, d.threshold) == ("b", 1.5)
    feed.windows(0.6)  # b: 1.2 < 1.5 clears the alarm a raised
    assert feed.found[-1].fields["state"] == "clear" and feed.found[-1].fields["model"] == "b"
    promoted = [h for h in kinds(feed.found, "health") if h.fields["state"] == "model_promoted"]
    assert promoted[0].fields["windows"] == 3
    assert promoted[0].fields["agreement"] == pytest.approx(2 / 3)


def test_drop_on_command_keeps_the_active_model(model_a: Path, model_b: Path) -> None:
    d = detector(model_a)
    d.shadow(str(model_b))
    feed = Feeder(d)
    feed.windows(*SERIES)

    stats = d.drop()
    feed.windows(0.0)

    assert stats.windows == 6
    assert d.shadow_stats() is None and d.model_name == "a"
    assert [h.fields["state"] for h in kinds(feed.found, "health")][-1] == "model_dropped"
    with pytest.raises(NoCandidate):
        d.drop()
    with pytest.raises(NoCandidate):
        d.promote()


def test_a_bad_candidate_is_refused_and_nothing_shadows(tmp_path: Path, model_a: Path) -> None:
    d = detector(model_a)
    result = d.shadow(str(tmp_path / "missing.onnx"))
    assert not result.accepted and d.shadow_stats() is None
    notice = d.observe(0.0, 0.0)
    assert notice is not None and notice.kind == "health" and notice.severity == "warning"
    assert notice.fields["state"] == "shadow_refused"


@pytest.mark.parametrize(
    ("means", "outcome", "model"),
    [
        ((0.0, 1.0, 0.6, 0.0), "model_promoted", "b"),  # agree 3 of 4 >= 0.75
        ((0.6, 1.0, 0.6, 0.0), "model_dropped", "a"),  # agree 2 of 4 < 0.75
    ],
)
def test_the_rule_promotes_or_drops_after_its_windows(
    model_a: Path, model_b: Path, means: tuple[float, ...], outcome: str, model: str
) -> None:
    d = detector(model_a, shadow_promote_after=4, shadow_min_agreement=0.75)
    d.shadow(str(model_b))
    feed = Feeder(d)
    feed.windows(*means[:3])
    assert d.shadow_stats() is not None and d.model_name == "a"

    feed.windows(means[3], 0.0)

    assert d.shadow_stats() is None and d.model_name == model
    health = kinds(feed.found, "health")
    assert [h.fields["state"] for h in health] == ["shadow_started", outcome]
    assert health[1].severity == "info" and health[1].fields["windows"] == 4
    assert "by rule" in str(health[1].fields["reason"])
