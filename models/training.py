"""Fit a PCA-reconstruction anomaly model on normal feature vectors, calibrate it, export ONNX.

The model, fitted with numpy only:

1. standardise each feature with the training mean and standard deviation (a feature constant
   in training gets scale 1, so any change in it later still counts);
2. keep the first ``components`` principal directions of the standardised vectors (from an
   SVD), or as many as explain a fraction of their variance;
3. score a vector by the energy of what those directions cannot explain:
   ``score = sum((z - z W W^T)^2)`` with ``z`` the standardised vector and ``W`` (k, c) the
   kept directions. Normal vectors lie near the subspace; an anomaly leaves it.

The exported graph computes the same in float32 with operators both backends run:
``Sub(mean) -> Div(scale) -> MatMul(residual) -> ReduceSumSquare(axis 1)``, where
``residual = I - W W^T`` (k, k) is precomputed: one MatMul instead of two, and ``k`` is small.
Input ``features`` [1, k] float32, output ``score`` [1, 1] float32.

Threshold calibration: the last ``holdout`` fraction of the windows (in time order, after a
gap of the windows that overlap the training ones) is not fitted but scored; the threshold is
the smallest of those scores that at most ``floor(fpr * n)`` held-out scores exceed, i.e. the
empirical ``1 - fpr`` quantile, so the held-out false-positive fraction is at most ``fpr``.
With fewer than ``1 / fpr`` held-out windows no quantile can be placed, and the tail beyond
the held-out scores is extrapolated (see :func:`calibrate`). ``fpr`` is per window; with windows
every ``hop`` readings at ``rate`` Hz, ``fpr`` means at most ``fpr * 86400 * rate / hop``
alarm-raising windows per day (:func:`fpr_for_daily_false_alarms` converts the other way).

Only :func:`export_onnx` needs the ``onnx`` package (the ``train`` extra).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import ParamsError
from models.metadata import WEIGHTS_KEY, weights_digest

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float64]

SECONDS_PER_DAY = 86400.0
INPUT_NAME = "features"
OUTPUT_NAME = "score"
OPSET = 18  # ReduceSumSquare takes its axes as an input from opset 18
IR_VERSION = 8  # read by onnxruntime >= 1.16, the oldest the project allows
_FLAT = 1e-12  # a standard deviation below this is a constant feature: scale 1


@dataclass(frozen=True)
class PcaModel:
    """A fitted reconstruction model; arrays are float32, as the exported graph holds them."""

    mean: NDArray[np.float32]  # (k,)
    scale: NDArray[np.float32]  # (k,)
    components: NDArray[np.float32]  # (k, c): the kept directions, as columns
    explained: float  # fraction of the standardised training variance they explain

    @property
    def inputs(self) -> int:
        return int(self.mean.shape[0])

    @property
    def residual(self) -> NDArray[np.float32]:
        """``I - W W^T``: maps a standardised vector to what the components miss."""
        w = self.components.astype(np.float64)
        return (np.eye(self.inputs) - w @ w.T).astype(np.float32)

    def weights(self) -> dict[str, NDArray[np.float32]]:
        """The exported initializers by name (what ``weights_sha256`` covers)."""
        return {
            "mean": self.mean.reshape(1, -1),
            "scale": self.scale.reshape(1, -1),
            "residual": self.residual,
        }

    def score(self, x: Any) -> NDArray[np.float32]:
        """Scores of feature vectors ``x`` (n, k), computed as the graph does, in float32."""
        w = self.weights()
        z = (np.asarray(x, dtype=np.float32) - w["mean"]) / w["scale"]
        r = z @ w["residual"]
        return np.asarray((r * r).sum(axis=1, dtype=np.float32), dtype=np.float32)


def fit_pca(x: Any, components: int | float) -> PcaModel:
    """Fit on normal vectors ``x`` (n, k); ``components``: a count (int) or a variance fraction.

    The fit must leave a residual (fewer components than features), or every score is 0.
    """
    data = np.asarray(x, dtype=np.float64)
    if data.ndim != 2 or len(data) < 2:
        raise ParamsError(f"need at least 2 feature vectors of shape (n, k), got {data.shape}")
    if not np.all(np.isfinite(data)):
        raise ParamsError("feature vectors contain NaN or infinity")
    k = data.shape[1]
    if k < 2:
        raise ParamsError("need at least 2 features: one feature leaves PCA nothing to reconstruct")
    mean = data.mean(axis=0)
    std = data.std(axis=0)
    scale = np.where(std > _FLAT * np.maximum(1.0, np.abs(mean)), std, 1.0)
    z = (data - mean) / scale
    _, singular, vt = np.linalg.svd(z, full_matrices=False)
    variance = singular**2
    total = float(variance.sum())
    kept = _kept(components, variance, total, k)
    explained = float(variance[:kept].sum() / total) if total > 0 else 1.0
    return PcaModel(
        mean=mean.astype(np.float32),
        scale=scale.astype(np.float32),
        components=vt[:kept].T.astype(np.float32),
        explained=explained,
    )


def _kept(components: int | float, variance: FloatArray, total: float, k: int) -> int:
    if isinstance(components, bool):
        raise ParamsError(f"components must be a count or a fraction, got {components!r}")
    if isinstance(components, int):
        if not 0 <= components < k:
            raise ParamsError(
                f"components must be between 0 and {k - 1} for {k} features (keeping all "
                f"{k} would reconstruct everything and score every window 0), got {components}"
            )
        return components
    if not 0 < components < 1:
        raise ParamsError(f"a variance fraction must be in (0, 1), got {components!r}")
    if total == 0:
        return 0
    cumulative = np.cumsum(variance) / total
    return min(int(np.searchsorted(cumulative, components) + 1), k - 1)


TAIL_FRACTION = 0.1  # the top tenth of held-out scores models the tail beyond them
_MIN_TAIL = 10  # fewer exceedances than this make a tail fit meaningless


@dataclass(frozen=True)
class ThresholdCalibration:
    """A threshold and how it was chosen (stored as the model's ``calibration`` metadata)."""

    threshold: float
    fpr: float  # the per-window false-positive rate asked for
    held_out: int  # held-out normal windows scored
    false_positives: int  # of those, how many score above the threshold
    method: str  # "quantile" or "exponential tail"

    @property
    def resolved(self) -> bool:
        """Whether enough windows were held out to place a ``1 - fpr`` quantile (n * fpr >= 1)."""
        return self.held_out * self.fpr >= 1

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "fpr": self.fpr,
            "held_out": self.held_out,
            "held_out_false_positives": self.false_positives,
        }


def calibrate(scores: Any, fpr: float) -> ThresholdCalibration:
    """A threshold that at most ``floor(fpr * n)`` of ``n`` held-out ``scores`` exceed.

    When ``n * fpr >= 1`` it is the empirical ``1 - fpr`` quantile. Otherwise the held-out
    scores cannot place it (the largest of 1,000 scores says nothing about a 1e-5 rate), so
    the tail is extrapolated, peaks-over-threshold style: scores above their 90 % quantile
    ``u`` are modelled as exponential, ``P(S > t) = p_u exp(-(t - u) / beta)`` with ``beta``
    their mean excess, giving ``t = u + beta ln(p_u / fpr)``; never below the largest score.
    """
    if not 0 < fpr < 1:
        raise ParamsError(f"fpr must be in (0, 1), got {fpr!r}")
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    n = len(s)
    if n == 0:
        raise ParamsError("no held-out windows to calibrate the threshold on")
    allowed = math.floor(fpr * n)
    threshold, method = float(s[n - 1 - allowed]), "quantile"
    tail = s[s > s[int((1 - TAIL_FRACTION) * n)]]
    if allowed == 0 and len(tail) >= _MIN_TAIL:
        u = float(s[int((1 - TAIL_FRACTION) * n)])
        beta = float(np.mean(tail - u))
        extrapolated = u + beta * math.log(len(tail) / n / fpr)
        threshold, method = max(threshold, extrapolated), "exponential tail"
    return ThresholdCalibration(threshold, fpr, n, int(np.count_nonzero(s > threshold)), method)


def fpr_for_daily_false_alarms(per_day: float, *, hop: int, rate: float) -> float:
    """The per-window rate meaning ``per_day`` alarm-raising windows a day at ``rate`` Hz."""
    if not per_day > 0 or not rate > 0 or hop < 1:
        raise ParamsError("false alarms per day, rate and hop must all be positive")
    return min(per_day * hop / (SECONDS_PER_DAY * rate), 0.5)


def daily_false_alarms(fpr: float, *, hop: int, rate: float) -> float:
    """At most how many windows a day exceed the threshold on normal data, for ``fpr``."""
    return fpr * SECONDS_PER_DAY * rate / hop


@dataclass(frozen=True)
class TrainedModel:
    model: PcaModel
    calibration: ThresholdCalibration
    fitted: int  # windows the PCA was fitted on
    gap: int  # windows dropped between the fitted and the held-out ones


def train(
    x: Any, *, components: int | float, fpr: float, holdout: float = 0.25, gap: int = 0
) -> TrainedModel:
    """Fit on the first windows of ``x`` (n, k, in time order), calibrate on the last ones.

    ``gap`` windows between the two sets are skipped: overlapping windows (hop < size) share
    readings, and a held-out window sharing readings with a fitted one would flatter the fit.
    """
    data = np.asarray(x, dtype=np.float64)
    if not 0 < holdout < 1:
        raise ParamsError(f"holdout must be in (0, 1), got {holdout!r}")
    held = max(1, round(len(data) * holdout))
    fitted = len(data) - held - gap
    if fitted < 2:
        raise ParamsError(
            f"{len(data)} windows are too few: {held} held out and {gap} skipped leave "
            f"{max(fitted, 0)} to fit; record longer or use a smaller window or hop"
        )
    model = fit_pca(data[:fitted], components)
    calibration = calibrate(model.score(data[fitted + gap :]), fpr)
    return TrainedModel(model, calibration, fitted, gap)


def export_onnx(model: PcaModel, path: str | Path, metadata: Mapping[str, str]) -> str:
    """Write ``model`` to ``path`` with ``metadata`` as metadata_props; return weights_sha256.

    ``weights_sha256`` is computed here from the exported initializers and overrides any value
    given in ``metadata``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = model.weights()
    k = model.inputs
    initializers = [numpy_helper.from_array(array, name) for name, array in weights.items()]
    initializers.append(numpy_helper.from_array(np.array([1], np.int64), "axes"))
    nodes = [
        helper.make_node("Sub", [INPUT_NAME, "mean"], ["centred"], name="centre"),
        helper.make_node("Div", ["centred", "scale"], ["standardised"], name="standardise"),
        helper.make_node("MatMul", ["standardised", "residual"], ["error"], name="residual"),
        helper.make_node(
            "ReduceSumSquare", ["error", "axes"], [OUTPUT_NAME], name="energy", keepdims=1
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "pca_reconstruction",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [1, 1])],
        initializers,
    )
    proto = helper.make_model(
        graph,
        producer_name="edgeline",
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
    )
    digest = weights_digest({**weights, "axes": np.array([1], np.int64)})
    props = {**metadata, WEIGHTS_KEY: digest}
    helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    # Written beside and renamed: a runtime watching ``path`` never sees half a model.
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(proto.SerializeToString())
    os.replace(partial, target)
    return digest
