"""Features of a window of readings, chosen in config by name and computed with numpy.

A config lists features as strings, ``["rms", "crest", "band:80-100"]``;
:meth:`FeatureSpec.parse` checks them once, and :func:`features` computes them on each window
(see :mod:`models.windows`) as one float32 vector, the input an anomaly model is trained on.

Order of the output: **feature-major**. For a window of vectors (``width`` axes, e.g. x, y, z)
each feature gives one value per axis, and the vector is ``[f1[x], f1[y], f1[z], f2[x], ...]``;
:meth:`FeatureSpec.labels` names each position. Feature-major keeps a feature's axes side by
side, so adding an axis or a feature never reorders the ones before it in the spec.

Statistics are population ones (``ddof=0``), the way ``scipy.stats`` computes ``skew`` and
``kurtosis`` with ``bias=True``. Shape statistics of a flat window (``crest``, ``skew``,
``kurtosis``, where scipy gives NaN) are 0: a stuck sensor must not feed NaN to a model.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import ParamsError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    FloatArray = NDArray[np.float64]

#: Every feature a spec may name, with the one line its help text shows.
FEATURES: dict[str, str] = {
    "mean": "arithmetic mean",
    "rms": "root mean square, sqrt(mean(x^2))",
    "peak": "largest absolute value, max |x|",
    "peak_to_peak": "max(x) - min(x)",
    "crest": "crest factor, peak / rms (0 for an all-zero window)",
    "std": "population standard deviation",
    "kurtosis": "excess (Fisher) kurtosis, m4 / m2^2 - 3 (0 for a flat window)",
    "skew": "skewness, m3 / m2^1.5 (0 for a flat window)",
    "slope": "least-squares slope, units per second, from the readings' times",
    "band": "band:<low>-<high>: signal power between low (inclusive) and high Hz",
}

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_BAND = re.compile(rf"band:{_NUMBER}-{_NUMBER}")


@dataclass(frozen=True)
class Feature:
    """One feature; ``low`` and ``high`` (Hz) are used by ``band`` only."""

    name: str
    low: float = 0.0
    high: float = 0.0

    def __str__(self) -> str:
        if self.name != "band":
            return self.name
        # Shortest plain decimal that reads back as the same float: the parser takes no exponent.
        low, high = (np.format_float_positional(edge, trim="-") for edge in (self.low, self.high))
        return f"band:{low}-{high}"

    @property
    def needs_rate(self) -> bool:
        return self.name in ("band", "slope")


@dataclass(frozen=True)
class FeatureSpec:
    """The features to compute, in output order; build it with :meth:`parse`."""

    features: tuple[Feature, ...]

    @classmethod
    def parse(cls, names: str | Iterable[str]) -> FeatureSpec:
        """Parse feature names (a list, or one comma-separated string).

        Raises :class:`~models.errors.ParamsError` (a ``ValueError``) naming the offending
        feature and, for a misspelt name, the closest known one.
        """
        items = names.split(",") if isinstance(names, str) else list(names)
        parsed: list[Feature] = []
        for item in items:
            if not isinstance(item, str):
                raise ParamsError(f"feature names must be strings, got {item!r}")
            feature = _parse_one(item.strip())
            if feature in parsed:
                raise ParamsError(f"feature '{feature}' is listed twice")
            parsed.append(feature)
        if not parsed:
            raise ParamsError(f"no features given; choose from {', '.join(FEATURES)}")
        return cls(tuple(parsed))

    def __str__(self) -> str:
        return ",".join(str(f) for f in self.features)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def needs_rate(self) -> bool:
        """Whether a sample rate (or the readings' times) is needed."""
        return any(f.needs_rate for f in self.features)

    def labels(self, width: int | None = None) -> list[str]:
        """Name of each output position: ``rms`` for scalars, ``rms[0]``... for vectors."""
        if width is None:
            return [str(f) for f in self.features]
        return [f"{f}[{axis}]" for f in self.features for axis in range(width)]

    def check_rate(self, rate: float) -> None:
        """Refuse bands that start at or above the Nyquist frequency of ``rate`` Hz."""
        nyquist = rate / 2
        for f in self.features:
            if f.name == "band" and f.low >= nyquist:
                raise ParamsError(
                    f"feature '{f}' starts at or above the Nyquist frequency ({nyquist:g} Hz) "
                    f"of {rate:g} Hz sampling: it would always be 0; sample faster than "
                    f"{2 * f.low:g} Hz or choose a lower band"
                )


def _parse_one(text: str) -> Feature:
    if text in FEATURES and text != "band":
        return Feature(text)
    if text.startswith("band"):
        match = _BAND.fullmatch(text)
        if match is None:
            raise ParamsError(
                f"feature '{text}': expected band:<low>-<high> in Hz, e.g. band:80-100"
            )
        low, high = float(match[1]), float(match[2])
        if not low < high:
            raise ParamsError(
                f"feature '{text}': the band's low edge ({low:g} Hz) must be below "
                f"its high edge ({high:g} Hz)"
            )
        return Feature("band", low, high)
    close = difflib.get_close_matches(text.lower(), list(FEATURES), n=1)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ParamsError(f"unknown feature '{text}': {hint}choose from {', '.join(FEATURES)}")


def features(
    window: ArrayLike,
    spec: FeatureSpec,
    rate: float | None = None,
    *,
    times: ArrayLike | None = None,
) -> NDArray[np.float32]:
    """Compute ``spec`` on ``window`` (shape ``(n,)``, or ``(n, width)`` for vectors).

    ``rate`` is the sample rate in Hz; without it, ``band`` and ``slope`` take the readings'
    ``times`` (seconds, one per reading; the rate is then ``(n - 1) / (last - first)``).
    Returns ``len(spec)`` values for scalars, ``len(spec) * width`` feature-major for vectors.
    """
    x = np.asarray(window, dtype=np.float64)
    if x.ndim not in (1, 2) or len(x) == 0:
        raise ValueError(f"expected a non-empty window of shape (n,) or (n, width), got {x.shape}")
    t = None if times is None else np.asarray(times, dtype=np.float64)
    if t is not None and t.shape != (len(x),):
        raise ValueError(f"expected {len(x)} timestamps, got an array of shape {t.shape}")
    stats = _Stats(x.reshape(len(x), -1), t, rate)
    width = stats.x.shape[1]
    out = np.empty(len(spec) * width, dtype=np.float32)
    for j, feature in enumerate(spec.features):
        compute = _COMPUTE[feature.name]
        out[j * width : (j + 1) * width] = compute(stats, feature)
    return out


class _Stats:
    """Quantities shared between features of one window, each computed at most once."""

    def __init__(self, x: FloatArray, times: FloatArray | None, rate: float | None) -> None:
        self.x = x  # (n, width)
        self._times = times
        self._rate = rate

    @cached_property
    def mean(self) -> FloatArray:
        return _f64(self.x.mean(axis=0))

    @cached_property
    def centred(self) -> FloatArray:
        return self.x - self.mean

    @cached_property
    def m2(self) -> FloatArray:
        return _f64(np.mean(self.centred**2, axis=0))

    @cached_property
    def flat(self) -> NDArray[np.bool_]:
        # scipy.stats' test for a constant input: the variance is within rounding of 0.
        return self.m2 <= (np.finfo(np.float64).resolution * self.mean) ** 2

    @cached_property
    def rms(self) -> FloatArray:
        # Scaled by the peak so that squaring tiny or huge readings cannot under- or overflow.
        peak = np.where(self.peak > 0, self.peak, 1.0)
        return _f64(self.peak * np.sqrt(np.mean((self.x / peak) ** 2, axis=0)))

    @cached_property
    def peak(self) -> FloatArray:
        return _f64(np.max(np.abs(self.x), axis=0))

    def shape_ratio(self, moment: int) -> FloatArray:
        """``m_k / m2^(k/2)``, as the mean of standardised powers (``m2**2`` of readings near
        1e-100 underflows to 0); 0 where the window is flat."""
        std = np.sqrt(np.where(self.flat, 1.0, self.m2))
        return np.where(self.flat, 0.0, np.mean((self.centred / std) ** moment, axis=0))

    def rate(self, feature: Feature) -> float:
        if self._rate is not None:
            if not self._rate > 0:
                raise ValueError(f"sample rate must be positive, got {self._rate!r}")
            return self._rate
        t = self._times
        if t is None or len(t) < 2 or not t[-1] > t[0]:
            raise ValueError(
                f"feature '{feature}' needs the sample rate: pass rate, or the times of "
                f"at least two readings spanning some time"
            )
        return float((len(t) - 1) / (t[-1] - t[0]))

    def seconds(self, feature: Feature) -> FloatArray:
        """Reading times relative to the first (keeps large monotonic clocks exact)."""
        if self._times is not None:
            return _f64(self._times - self._times[0])
        return np.arange(len(self.x), dtype=np.float64) / self.rate(feature)

    @cached_property
    def spectrum(self) -> FloatArray:
        """One-sided power per rfft bin, scaled so the bins sum to mean(x^2) (Parseval)."""
        n = len(self.x)
        power = np.abs(np.fft.rfft(self.x, axis=0)) ** 2 / n**2
        last = len(power) if n % 2 else len(power) - 1  # an even n's Nyquist bin is not mirrored
        power[1:last] *= 2
        return power


def _slope(s: _Stats, feature: Feature) -> FloatArray:
    t = s.seconds(feature)
    tc = t - t.mean()
    denominator = float(tc @ tc)
    if denominator == 0:  # all readings at one instant: no slope to speak of
        return np.zeros(s.x.shape[1])
    return _f64(tc @ s.centred) / denominator


def _band(s: _Stats, feature: Feature) -> FloatArray:
    rate = s.rate(feature)
    FeatureSpec((feature,)).check_rate(rate)
    # k * rate / n rather than rfftfreq's k * (1 / (n / rate)): a bin on a band's edge then
    # lands exactly on it, and in the band it starts, as a person reading the config expects.
    freqs = np.arange(len(s.spectrum)) * rate / len(s.x)
    inside = (freqs >= feature.low) & (freqs < feature.high)
    return _f64(s.spectrum[inside].sum(axis=0))


def _f64(array: Any) -> FloatArray:
    """``array`` as float64, typed: numpy's stubs type reductions as ``Any``. No copy."""
    return np.asarray(array, dtype=np.float64)


_COMPUTE: dict[str, Callable[[_Stats, Feature], FloatArray]] = {
    "mean": lambda s, _: s.mean,
    "rms": lambda s, _: s.rms,
    "peak": lambda s, _: s.peak,
    "peak_to_peak": lambda s, _: np.ptp(s.x, axis=0),
    "crest": lambda s, _: np.where(s.rms > 0, s.peak / np.where(s.rms > 0, s.rms, 1.0), 0.0),
    "std": lambda s, _: np.sqrt(s.m2),
    "kurtosis": lambda s, _: s.shape_ratio(4) - np.where(s.flat, 0.0, 3.0),
    "skew": lambda s, _: s.shape_ratio(3),
    "slope": _slope,
    "band": _band,
}
