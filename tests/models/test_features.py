"""Window features: the spec parser, straightforward references, and known signals."""

from __future__ import annotations

import itertools
import math
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import ModelError
from models.features import FEATURES, Feature, FeatureSpec, features
from models.windows import Window

ALL_SIMPLE = [name for name in FEATURES if name != "band"]


# -- references: plain Python, one feature at a time, from the textbook definitions --------


def central_moment(xs: list[float], k: int) -> float:
    mean = statistics.fmean(xs)
    return math.fsum((x - mean) ** k for x in xs) / len(xs)


def flat(xs: list[float]) -> bool:
    return central_moment(xs, 2) <= (1e-15 * statistics.fmean(xs)) ** 2


def ref_kurtosis(xs: list[float]) -> float:
    """scipy.stats.kurtosis(xs, fisher=True, bias=True), by its formula m4 / m2**2 - 3."""
    return 0.0 if flat(xs) else central_moment(xs, 4) / central_moment(xs, 2) ** 2 - 3


def ref_skew(xs: list[float]) -> float:
    """scipy.stats.skew(xs, bias=True): m3 / m2**1.5."""
    return 0.0 if flat(xs) else central_moment(xs, 3) / central_moment(xs, 2) ** 1.5


def ref_rms(xs: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in xs) / len(xs))


def ref_slope(ts: list[float], xs: list[float]) -> float:
    tm, xm = statistics.fmean(ts), statistics.fmean(xs)
    den = math.fsum((t - tm) ** 2 for t in ts)
    return math.fsum((t - tm) * (x - xm) for t, x in zip(ts, xs, strict=True)) / den if den else 0.0


def reference(name: str, ts: list[float], xs: list[float]) -> float:
    peak = max(abs(x) for x in xs)
    return {
        "mean": lambda: statistics.fmean(xs),
        "rms": lambda: ref_rms(xs),
        "peak": lambda: peak,
        "peak_to_peak": lambda: max(xs) - min(xs),
        "crest": lambda: peak / ref_rms(xs) if ref_rms(xs) else 0.0,
        "std": lambda: statistics.pstdev(xs),
        "kurtosis": lambda: ref_kurtosis(xs),
        "skew": lambda: ref_skew(xs),
        "slope": lambda: ref_slope(ts, xs),
    }[name]()


def ref_band_power(xs: list[float], rate: float, low: float, high: float) -> float:
    """Power between low and high Hz by a direct DFT, one-sided: bins sum to mean(x^2)."""
    n = len(xs)
    total = 0.0
    for k in range(n // 2 + 1):
        if not low <= k * rate / n < high:
            continue
        re = math.fsum(x * math.cos(2 * math.pi * k * i / n) for i, x in enumerate(xs))
        im = math.fsum(x * math.sin(2 * math.pi * k * i / n) for i, x in enumerate(xs))
        mirrored = 1 if k == 0 or 2 * k == n else 2
        total += mirrored * (re * re + im * im) / n**2
    return total


# -- the spec parser ---------------------------------------------------------------------


def test_parse_list_and_comma_string_agree() -> None:
    spec = FeatureSpec.parse(["rms", " crest", "band:80-100", "band:0.5-2.25"])
    assert spec == FeatureSpec.parse("rms, crest,band:80-100 ,band:0.5-2.25")
    assert spec.features[2] == Feature("band", 80.0, 100.0)
    assert str(spec) == "rms,crest,band:80-100,band:0.5-2.25"
    assert len(spec) == 4
    assert spec.needs_rate
    assert not FeatureSpec.parse("mean,rms").needs_rate


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["rsm"], "unknown feature 'rsm': did you mean 'rms'?"),
        (["RMS"], "did you mean 'rms'?"),
        (["energy"], "unknown feature 'energy': choose from mean, rms"),
        (["band"], "feature 'band': expected band:<low>-<high> in Hz, e.g. band:80-100"),
        (["band:80"], "expected band:<low>-<high>"),
        (["band:80-"], "expected band:<low>-<high>"),
        (["band:-5-10"], "expected band:<low>-<high>"),
        (["band:a-b"], "expected band:<low>-<high>"),
        (["band:100-80"], "low edge (100 Hz) must be below its high edge (80 Hz)"),
        (["band:80-80"], "must be below"),
        (["rms", "rms"], "feature 'rms' is listed twice"),
        (["band:1-2", "band:1.0-2"], "'band:1-2' is listed twice"),
        ([], "no features given"),
        ("", "unknown feature ''"),
        ([3], "must be strings"),
    ],
)
def test_parse_errors_name_the_feature(names: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        FeatureSpec.parse(names)  # type: ignore[arg-type]
    assert isinstance(info.value, ModelError)
    assert message in str(info.value)


@given(st.text(max_size=30))
def test_parser_accepts_or_refuses_cleanly(text: str) -> None:
    try:
        spec = FeatureSpec.parse(text)
    except ModelError:
        return
    assert FeatureSpec.parse(str(spec)) == spec


band_edges = st.decimals(0, 10_000, places=3, allow_nan=False).map(float)


@given(band_edges, band_edges)
def test_band_round_trips_through_its_text(a: float, b: float) -> None:
    if a == b:
        return
    low, high = sorted((a, b))
    spec = FeatureSpec.parse([f"band:{low}-{high}"])
    assert spec.features == (Feature("band", low, high),)
    assert FeatureSpec.parse(str(spec)) == spec


def test_labels_are_feature_major() -> None:
    spec = FeatureSpec.parse("rms,band:1-2")
    assert spec.labels() == ["rms", "band:1-2"]
    assert spec.labels(3) == [
        "rms[0]",
        "rms[1]",
        "rms[2]",
        "band:1-2[0]",
        "band:1-2[1]",
        "band:1-2[2]",
    ]


# -- against the references -------------------------------------------------------------

windows = st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=64)


@given(windows, st.sampled_from(ALL_SIMPLE))
def test_each_feature_matches_its_reference(xs: list[float], name: str) -> None:
    ts = [10_000.0 + 0.01 * i for i in range(len(xs))]
    got = features(xs, FeatureSpec.parse([name]), times=ts)
    assert got.dtype == np.float32
    assert got.shape == (1,)
    assert np.isfinite(got).all()
    scale = max(1.0, max(abs(x) for x in xs))
    if name in ("kurtosis", "skew", "crest") and central_moment(xs, 2) < 1e-6 * scale**2:
        return  # ratios of moments: near-flat windows amplify rounding; compare where well-posed
    expected = reference(name, ts, xs)
    if name in ("kurtosis", "skew", "crest"):
        assert got[0] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    elif name == "slope":
        assert got[0] == pytest.approx(expected, rel=1e-4, abs=1e-6 * scale / 0.01)
    else:
        assert got[0] == pytest.approx(expected, rel=1e-5, abs=1e-6 * scale)


def test_kurtosis_and_skew_match_scipy() -> None:
    from scipy import stats  # the dev extra's reference implementation

    rng = np.random.default_rng(7)
    x = rng.standard_t(5, size=(256, 3))
    got = features(x, FeatureSpec.parse("kurtosis,skew"))
    expected = np.concatenate(
        [stats.kurtosis(x, axis=0, fisher=True, bias=True), stats.skew(x, axis=0, bias=True)]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_kurtosis_of_known_distributions() -> None:
    # Two-point (+-1) has excess kurtosis -2; uniform tends to -1.2.
    assert features([1.0, -1.0] * 50, FeatureSpec.parse("kurtosis"))[0] == pytest.approx(-2.0)
    uniform = np.linspace(-1, 1, 10_001)
    assert features(uniform, FeatureSpec.parse("kurtosis"))[0] == pytest.approx(-1.2, abs=1e-3)


@given(
    st.lists(st.floats(-100, 100), min_size=2, max_size=48), st.sampled_from([8.0, 100.0, 1000.0])
)
def test_band_power_matches_a_direct_dft(xs: list[float], rate: float) -> None:
    edges = [0.0, rate / 8, rate / 4, rate / 2 + 1]
    names = [f"band:{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(edges)]
    got = features(xs, FeatureSpec.parse(names), rate)
    expected = [ref_band_power(xs, rate, lo, hi) for lo, hi in itertools.pairwise(edges)]
    scale = max(1.0, max(x * x for x in xs))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * scale)
    # Bands covering 0 Hz to past Nyquist hold all the power (Parseval).
    assert float(got.sum()) == pytest.approx(
        statistics.fmean(x * x for x in xs), rel=1e-4, abs=1e-9
    )


# -- known signals ------------------------------------------------------------------------

RATE = 1000.0
T = np.arange(1000) / RATE  # one second: whole periods of every integer frequency


def sine(freq: float, amplitude: float = 1.0) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * freq * T)


def test_sine_rms_crest_and_peak() -> None:
    got = features(sine(50, 3.0), FeatureSpec.parse("rms,crest,peak,peak_to_peak,mean"), RATE)
    np.testing.assert_allclose(got, [3 / math.sqrt(2), math.sqrt(2), 3.0, 6.0, 0.0], atol=1e-5)


def test_band_energy_of_a_90_hz_sine_sits_in_its_band() -> None:
    spec = FeatureSpec.parse("band:80-100,band:10-20,band:100-500")
    in_band, low_band, high_band = features(sine(90, 2.0), spec, RATE)
    assert in_band == pytest.approx(2.0**2 / 2, rel=1e-5)  # the sine's power, A^2 / 2
    assert low_band < 1e-9
    assert high_band < 1e-9


def test_band_energy_with_rate_from_timestamps() -> None:
    # Not on a bin centre and with a large clock offset: leakage stays near 90 Hz.
    times = 5e5 + T
    spec = FeatureSpec.parse("band:80-100,band:10-20")
    in_band, low_band = features(sine(90.5), spec, times=times)
    assert in_band > 0.45
    assert low_band < 1e-3 * in_band


def test_slope_of_a_ramp() -> None:
    ramp = 2.5 * T + 7.0
    spec = FeatureSpec.parse("slope")
    assert features(ramp, spec, RATE)[0] == pytest.approx(2.5, rel=1e-6)
    # From timestamps on a monotonic clock far from zero, unevenly spaced.
    times = 1e6 + np.cumsum(np.full(100, 0.25) + np.tile([0.0, 0.1], 50))
    values = -0.75 * (times - 1e6) + 3.0
    assert features(values, spec, times=times)[0] == pytest.approx(-0.75, rel=1e-6)


def test_slope_of_readings_at_one_instant_is_zero() -> None:
    assert features([1.0, 2.0, 3.0], FeatureSpec.parse("slope"), times=[5.0, 5.0, 5.0])[0] == 0.0


def test_vector_window_is_feature_major() -> None:
    x = np.stack([sine(50, 1.0), sine(50, 2.0), np.full_like(T, 0.5)], axis=1)
    spec = FeatureSpec.parse("rms,mean")
    got = features(x, spec, RATE)
    np.testing.assert_allclose(got, [1 / math.sqrt(2), 2 / math.sqrt(2), 0.5, 0, 0, 0.5], atol=1e-5)
    assert len(got) == len(spec.labels(3))


def test_flat_windows_give_zeros_not_nan() -> None:
    spec = FeatureSpec.parse("crest,skew,kurtosis,std,slope")
    for value in (0.0, 3.0, 1e6):
        got = features(np.full(32, value), spec, RATE)
        assert np.isfinite(got).all()
        assert got[1:].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert features(np.zeros(4), spec, RATE)[0] == 0.0
    assert features(np.full(4, -2.0), spec, RATE)[0] == 1.0


def test_single_reading_window() -> None:
    got = features([4.0], FeatureSpec.parse("mean,rms,std,kurtosis"))
    assert got.tolist() == [4.0, 4.0, 0.0, 0.0]


def test_rate_is_required_for_band_and_slope() -> None:
    for name in ("band:1-2", "slope"):
        with pytest.raises(ValueError, match=f"'{name}' needs the sample rate"):
            features([1.0, 2.0], FeatureSpec.parse(name))
    with pytest.raises(ValueError, match="needs the sample rate"):
        features([1.0, 2.0], FeatureSpec.parse("band:1-2"), times=[3.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        features([1.0, 2.0], FeatureSpec.parse("slope"), 0.0)


def test_band_above_nyquist_is_refused() -> None:
    spec = FeatureSpec.parse("band:80-100")
    with pytest.raises(ModelError, match=r"Nyquist frequency \(50 Hz\) of 100 Hz"):
        features(np.zeros(16), spec, 100.0)
    with pytest.raises(ModelError, match="Nyquist"):
        spec.check_rate(160.0)
    spec.check_rate(161.0)
    # A band may reach past Nyquist: it then holds everything from its low edge up.
    FeatureSpec.parse("band:40-1000").check_rate(100.0)


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        features([], FeatureSpec.parse("mean"))
    with pytest.raises(ValueError, match="shape"):
        features(np.zeros((2, 2, 2)), FeatureSpec.parse("mean"))
    with pytest.raises(ValueError, match="timestamps"):
        features([1.0, 2.0], FeatureSpec.parse("mean"), times=[1.0])


def test_features_of_windows_from_a_window() -> None:
    # 3-axis accel at 1 kHz, sliding windows of 200 with hop 100, fed as one FIFO block.
    window = Window(200, 100, width=3)
    spec = FeatureSpec.parse("rms,band:80-100")
    x = np.stack([sine(90), sine(90, 0.5), np.zeros_like(T)], axis=1)
    batch = window.push_block(100.0 + T, x)
    assert len(batch.values) == 9
    for values, times in zip(batch.values, batch.times, strict=True):
        got = features(values, spec, times=times)
        np.testing.assert_allclose(got[:3], [1 / math.sqrt(2), 0.5 / math.sqrt(2), 0], atol=1e-3)
        assert got[3] == pytest.approx(0.5, rel=1e-4)
        assert got[5] == 0.0
