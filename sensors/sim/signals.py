"""Deterministic field signals that feed simulated chips.

The models here are *time signals*: ``TimeSignal = Callable[[float], float]``, the
quantity ``t`` seconds after the scenario started. A chip model can sample one at any
instant (a FIFO fills at 500 Hz between two polls) and in any order, and the same ``t``
always gives the same value: randomness is either a pure function of ``t`` (``Noise``)
or drawn once from a seed when the model is built (``Events``). Models compose by
``Sum`` and ``During``; ``signal_from_spec`` builds the sum a scenario's TOML table asks for.

Chip models that take a zero-argument :data:`Signal` (the value now, on the runtime's
clock) get one from :func:`sampled`. ``Piecewise`` and ``Noisy`` are such signals from
before time signals existed; ``Piecewise(points).at`` is the time-signal form.
"""

from __future__ import annotations

import bisect
import difflib
import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from sensors.errors import SensorConfigError
from sensors.ports import Monotonic

Signal = Callable[[], float]
#: The value ``t`` seconds after the scenario started.
TimeSignal = Callable[[float], float]

_HOUR = 3600.0
_DAY_HOURS = 24.0


class Piecewise:
    """Linear interpolation between ``(t, value)`` points, held constant past the ends.

    Times are seconds since ``t0`` and must not decrease; two points at the same
    time make a step, and from that time on the later point's value holds.
    ``at(t)`` is the time signal; calling the object samples it on ``clock``, which
    only the zero-argument form needs.
    """

    def __init__(
        self,
        points: Sequence[tuple[float, float]],
        clock: Monotonic | None = None,
        *,
        t0: float | None = None,
    ) -> None:
        if not points:
            raise SensorConfigError("Piecewise needs at least one (t, value) point")
        for t, value in points:
            if not (math.isfinite(t) and math.isfinite(value)):
                raise SensorConfigError(f"Piecewise point ({t!r}, {value!r}) is not finite")
        self._times = [float(t) for t, _ in points]
        self._values = [float(v) for _, v in points]
        if any(b < a for a, b in itertools.pairwise(self._times)):
            raise SensorConfigError(f"Piecewise point times must not decrease: {self._times}")
        self._clock = clock
        if t0 is not None:
            self._t0 = t0
        else:
            self._t0 = clock() if clock is not None else 0.0

    def at(self, t: float) -> float:
        """The value ``t`` seconds after ``t0``."""
        # bisect_right lands after any points sharing time t, so a step has taken effect.
        i = bisect.bisect_right(self._times, t)
        if i == 0:
            return self._values[0]
        if i == len(self._times):
            return self._values[-1]
        t_a, t_b = self._times[i - 1], self._times[i]
        v_a, v_b = self._values[i - 1], self._values[i]
        return v_a + (v_b - v_a) * (t - t_a) / (t_b - t_a)

    def __call__(self) -> float:
        if self._clock is None:
            raise TypeError("Piecewise built without a clock: use .at(t), or sampled(...)")
        return self.at(self._clock() - self._t0)


class Noisy:
    """``signal`` plus Gaussian noise of standard deviation ``sigma`` from a seeded generator.

    Each call draws the next value, so two samples at the same instant differ; time
    signals use :class:`Noise` instead, which is a pure function of time.
    """

    def __init__(self, signal: Signal, sigma: float, seed: int) -> None:
        if not (math.isfinite(sigma) and sigma >= 0):
            raise SensorConfigError(f"Noisy sigma must be a finite number >= 0, got {sigma!r}")
        self._signal = signal
        self._sigma = sigma
        self._random = random.Random(seed)

    def __call__(self) -> float:
        # normalvariate, unlike gauss, is safe if two threads sample at once.
        return self._signal() + self._random.normalvariate(0.0, self._sigma)


def sampled(signal: TimeSignal, clock: Monotonic, t0: float | None = None) -> Signal:
    """``signal`` as a zero-argument signal on ``clock``, time counted from ``t0``
    (by default the clock's reading now)."""
    start = clock() if t0 is None else t0
    return lambda: signal(clock() - start)


def on_clock(signal: TimeSignal, t0: float) -> TimeSignal:
    """``signal`` as a function of the clock's own time, for chip models (the MPU-6050's
    FIFO) that stamp samples with clock readings; ``t0`` is the scenario's start."""
    return lambda t: signal(t - t0)


# -- deterministic models -----------------------------------------------------------


def _require(name: str, value: float, *, minimum: float | None = None) -> float:
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" >= {minimum:g}"
        raise SensorConfigError(f"{name} must be a finite number{bound}, got {value!r}")
    return float(value)


class Constant:
    """The same value at every instant."""

    def __init__(self, value: float) -> None:
        self.value = _require("Constant value", value)

    def __call__(self, t: float) -> float:
        return self.value


class Drift:
    """A linear drift from 0 at the start, ``per_hour`` units per hour (a sensor ageing)."""

    def __init__(self, per_hour: float) -> None:
        self.per_hour = _require("Drift per_hour", per_hour)
        self._per_second = self.per_hour / _HOUR

    def __call__(self, t: float) -> float:
        return self._per_second * t


class Daily:
    """A 24-hour sinusoid: ``+amplitude`` at ``peak_hour``, ``-amplitude`` twelve hours later.

    ``start_hour`` is the hour of day at t = 0 (a scenario that starts at 22:30 gives 22.5).
    """

    def __init__(self, amplitude: float, peak_hour: float, start_hour: float = 0.0) -> None:
        self.amplitude = _require("Daily amplitude", amplitude)
        self.peak_hour = _require("Daily peak_hour", peak_hour)
        self.start_hour = _require("Daily start_hour", start_hour)
        self._offset_hours = self.start_hour - self.peak_hour

    def __call__(self, t: float) -> float:
        hours = self._offset_hours + t / _HOUR
        return self.amplitude * math.cos(2.0 * math.pi * hours / _DAY_HOURS)


# splitmix64 (Steele, Lea and Flood 2014): a 64-bit finaliser whose outputs at state
# seed + n * GAMMA form a generator that passes BigCrush. Indexing it by time makes noise
# a counter-based RNG: any sample is computed directly, with no state carried between
# calls, in plain integers that every platform computes alike (no numpy needed).
_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_UNIT = 2.0**-53


def _mix64(x: int) -> int:
    x &= _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, stream: int) -> int:
    """An independent 64-bit seed for sub-stream ``stream`` of ``seed``."""
    return _mix64(_mix64(seed) + (stream + 1) * _GAMMA)


class Noise:
    """Gaussian white noise of standard deviation ``sigma``, a pure function of ``t``.

    ``t`` is rounded to the microsecond, and that tick indexes a splitmix64 stream keyed
    by ``seed``; two uniforms from it make one normal value by Box-Muller. Sampling the
    same instant twice gives the same value, whatever was sampled in between, so a
    FIFO and a poll that both see t = 12.0 agree. Instants under a microsecond apart
    share a value; any two distinct ticks are independent.
    """

    def __init__(self, sigma: float, seed: int) -> None:
        self.sigma = _require("Noise sigma", sigma, minimum=0.0)
        self.seed = seed
        self._key = _mix64(seed)

    def __call__(self, t: float) -> float:
        state = self._key + 2 * round(t * 1e6) * _GAMMA
        u1 = ((_mix64(state + _GAMMA) >> 11) + 1) * _UNIT  # (0, 1]: log is finite
        u2 = (_mix64(state + 2 * _GAMMA) >> 11) * _UNIT
        return self.sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class Tone(NamedTuple):
    """One sinusoid of a vibration: ``amplitude * sin(2 pi frequency t + phase)``.

    ``to_amplitude`` is the amplitude the tone reaches at the end of its ``Harmonics``'
    growth window (a bearing defect frequency rising from 0); None keeps it constant.
    """

    frequency: float  # Hz
    amplitude: float
    phase: float = 0.0  # radians
    to_amplitude: float | None = None


class Growth(NamedTuple):
    """The window over which tones move linearly from ``amplitude`` to ``to_amplitude``:
    before ``start`` they have their first amplitude, from ``end`` on their last
    (``start == end`` is a step)."""

    start: float
    end: float


class Harmonics:
    """A sum of sinusoids (shaft rate, resonances, a bearing defect frequency), each
    optionally growing over ``growth`` so a fault can develop over hours."""

    def __init__(
        self,
        tones: Sequence[Tone | tuple[float, float, float]],
        growth: Growth | tuple[float, float] | None = None,
    ) -> None:
        self.tones = tuple(Tone(*tone) for tone in tones)
        for tone in self.tones:
            _require("Harmonics frequency", tone.frequency, minimum=0.0)
            _require("Harmonics amplitude", tone.amplitude)
            _require("Harmonics phase", tone.phase)
            if tone.to_amplitude is not None:
                _require("Harmonics to_amplitude", tone.to_amplitude)
        self.growth = None if growth is None else Growth(*growth)
        if self.growth is not None:
            start = _require("Harmonics growth start", self.growth.start)
            end = _require("Harmonics growth end", self.growth.end)
            if end < start:
                raise SensorConfigError(f"Harmonics growth ends ({end:g}) before it starts")
        self._omegas = tuple(2.0 * math.pi * tone.frequency for tone in self.tones)

    def _progress(self, t: float) -> float:
        """How far the growth has gone at ``t``, from 0 to 1."""
        if self.growth is None or t < self.growth.start:
            return 0.0
        if t >= self.growth.end:
            return 1.0
        return (t - self.growth.start) / (self.growth.end - self.growth.start)

    def __call__(self, t: float) -> float:
        progress = self._progress(t)
        total = 0.0
        for tone, omega in zip(self.tones, self._omegas, strict=True):
            amplitude = tone.amplitude
            if tone.to_amplitude is not None:
                amplitude += (tone.to_amplitude - tone.amplitude) * progress
            total += amplitude * math.sin(omega * t + tone.phase)
        return total


Shape = Literal["pulse", "decay"]
SHAPES: tuple[Shape, ...] = ("pulse", "decay")
#: Events drawn for one model at most, so a typo in a rate cannot exhaust memory.
MAX_EVENTS = 1_000_000
# A decay is cut after this many time constants, when it has fallen under 0.04 %.
_DECAY_SPAN = 8.0


class Events:
    """Random events (an animal passing a PIR, a wind gust, a heart-rate spike).

    Arrivals are a Poisson process of ``rate_per_hour``, drawn once over
    ``[0, horizon)`` from ``seed`` and listed in ``starts``. Each event adds
    ``amplitude``: for ``duration`` seconds (``"pulse"``), or falling exponentially with
    time constant ``duration`` (``"decay"``). Overlapping events add up.
    """

    def __init__(
        self,
        rate_per_hour: float,
        amplitude: float,
        duration: float,
        *,
        shape: Shape = "pulse",
        seed: int,
        horizon: float,
    ) -> None:
        self.rate_per_hour = _require("Events rate_per_hour", rate_per_hour, minimum=0.0)
        self.amplitude = _require("Events amplitude", amplitude)
        self.duration = _require("Events duration", duration, minimum=0.0)
        if self.duration == 0.0:
            raise SensorConfigError("Events duration must be > 0, got 0")
        if shape not in SHAPES:
            raise SensorConfigError(f"Events shape must be one of {SHAPES}, got {shape!r}")
        self.shape = shape
        self.horizon = _require("Events horizon", horizon, minimum=0.0)
        expected = self.rate_per_hour * self.horizon / _HOUR
        if expected > MAX_EVENTS:
            raise SensorConfigError(
                f"Events rate {self.rate_per_hour:g}/h over {self.horizon:g} s would draw"
                f" about {expected:.3g} events; at most {MAX_EVENTS} are allowed"
            )
        self.starts = _poisson_arrivals(self.rate_per_hour / _HOUR, self.horizon, seed)
        self._reach = self.duration * (_DECAY_SPAN if shape == "decay" else 1.0)

    def __call__(self, t: float) -> float:
        # The events under way at t began in (t - reach, t].
        last = bisect.bisect_right(self.starts, t)
        first = bisect.bisect_right(self.starts, t - self._reach, 0, last)
        if self.shape == "pulse":
            return self.amplitude * (last - first)
        return sum(
            self.amplitude * math.exp((s - t) / self.duration) for s in self.starts[first:last]
        )


def _poisson_arrivals(rate: float, horizon: float, seed: int) -> tuple[float, ...]:
    if rate == 0.0:
        return ()
    rng = random.Random(seed)
    starts = []
    t = rng.expovariate(rate)
    while t < horizon:
        starts.append(t)
        t += rng.expovariate(rate)
    return tuple(starts)


class Sum:
    """The sum of time signals, added in the order given (so the result is reproducible)."""

    def __init__(self, *signals: TimeSignal) -> None:
        self.signals = signals

    def __call__(self, t: float) -> float:
        total = 0.0
        for signal in self.signals:
            total += signal(t)
        return total


class During:
    """``signal`` inside ``[start, end)`` and 0 outside: an injected anomaly."""

    def __init__(self, signal: TimeSignal, start: float, end: float) -> None:
        if math.isnan(start) or math.isnan(end) or end < start:
            raise SensorConfigError(f"During needs start <= end, got [{start!r}, {end!r})")
        self.signal = signal
        self.start = start
        self.end = end

    def __call__(self, t: float) -> float:
        return self.signal(t) if self.start <= t < self.end else 0.0


# -- scenario tables ------------------------------------------------------------------

#: Magnitude allowed for any number in a signal table: far past any physical quantity
#: a sensor reports, and small enough that sums and products of them stay finite.
LIMIT = 1e12

_KEYS = ("base", "noise", "drift", "daily", "points", "harmonics", "events")
_DAILY_KEYS = ("amplitude", "peak_hour")
_TONE_KEYS = ("frequency", "amplitude", "phase", "grow_from", "grow_until", "to_amplitude")
_GROWTH_KEYS = ("grow_from", "grow_until", "to_amplitude")
_EVENT_KEYS = ("rate_per_hour", "amplitude", "duration", "shape")
# Sub-streams of the scenario seed: noise, then one per events table.
_NOISE_STREAM = 0
_EVENTS_STREAM = 1


def signal_from_spec(
    spec: Mapping[str, Any], *, seed: int, start_hour: float = 0.0, horizon: float
) -> TimeSignal:
    """The time signal a scenario table describes, the sum of the terms it names.

    ``base`` (a constant), ``noise`` (sigma), ``drift`` (per hour), ``daily``
    (``amplitude``, ``peak_hour``), ``points`` ([[t, value], ...], added), ``harmonics``
    (tables of ``frequency``, ``amplitude``, ``phase`` and optionally ``grow_from``,
    ``grow_until``, ``to_amplitude``), ``events`` (a table or an array of tables of
    ``rate_per_hour``, ``amplitude``, ``duration``, ``shape``). Random terms draw from
    sub-streams of ``seed``; ``start_hour`` is the hour of day at t = 0 and events are
    drawn over ``[0, horizon)``. A problem raises :class:`SensorConfigError` starting with
    its key path (``events.rate_per_hour: expected ...``) for the caller to prefix.
    """
    start_hour = _number(start_hour, "start_hour", minimum=0.0, below=_DAY_HOURS)
    horizon = _number(horizon, "horizon", minimum=0.0)
    if not isinstance(spec, Mapping):
        raise SensorConfigError(f"expected a table, found {_describe(spec)}")
    _known_keys(spec, "", _KEYS)
    terms: list[TimeSignal] = []
    if "base" in spec:
        terms.append(Constant(_number(spec["base"], "base")))
    if "points" in spec:
        terms.append(Piecewise(_points(spec["points"], "points")).at)
    if "drift" in spec:
        terms.append(Drift(_number(spec["drift"], "drift")))
    if "daily" in spec:
        terms.append(_daily(spec["daily"], "daily", start_hour))
    if "harmonics" in spec:
        tones = spec["harmonics"]
        if not isinstance(tones, list):
            raise SensorConfigError(
                f"harmonics: expected an array of tables, found {_describe(tones)}"
            )
        terms += [_harmonic(tone, f"harmonics[{i}]") for i, tone in enumerate(tones)]
    if "events" in spec:
        tables = spec["events"]
        if isinstance(tables, Mapping):
            terms.append(_events(tables, "events", derive_seed(seed, _EVENTS_STREAM), horizon))
        elif isinstance(tables, list):
            terms += [
                _events(table, f"events[{i}]", derive_seed(seed, _EVENTS_STREAM + i), horizon)
                for i, table in enumerate(tables)
            ]
        else:
            raise SensorConfigError(
                f"events: expected a table or an array of tables, found {_describe(tables)}"
            )
    if "noise" in spec:
        sigma = _number(spec["noise"], "noise", minimum=0.0)
        if sigma:
            terms.append(Noise(sigma, derive_seed(seed, _NOISE_STREAM)))
    if len(terms) == 1:
        return terms[0]
    return Sum(*terms) if terms else Constant(0.0)


def _daily(table: Any, path: str, start_hour: float) -> Daily:
    table = _table(table, path, _DAILY_KEYS, required=_DAILY_KEYS)
    amplitude = _number(table["amplitude"], f"{path}.amplitude")
    peak = _number(table["peak_hour"], f"{path}.peak_hour", minimum=0.0, below=_DAY_HOURS)
    return Daily(amplitude, peak, start_hour)


def _harmonic(table: Any, path: str) -> Harmonics:
    table = _table(table, path, _TONE_KEYS, required=("frequency", "amplitude"))
    tone = Tone(
        frequency=_number(table["frequency"], f"{path}.frequency", minimum=0.0),
        amplitude=_number(table["amplitude"], f"{path}.amplitude"),
        phase=_number(table.get("phase", 0.0), f"{path}.phase"),
    )
    given = [key for key in _GROWTH_KEYS if key in table]
    if not given:
        return Harmonics([tone])
    for key in _GROWTH_KEYS:
        if key not in table:
            raise SensorConfigError(f"{path}.{key}: required with {given[0]}")
    start = _number(table["grow_from"], f"{path}.grow_from")
    end = _number(table["grow_until"], f"{path}.grow_until", minimum=start)
    to_amplitude = _number(table["to_amplitude"], f"{path}.to_amplitude")
    return Harmonics([tone._replace(to_amplitude=to_amplitude)], Growth(start, end))


def _events(table: Any, path: str, seed: int, horizon: float) -> Events:
    table = _table(table, path, _EVENT_KEYS, required=("rate_per_hour", "amplitude", "duration"))
    rate = _number(table["rate_per_hour"], f"{path}.rate_per_hour", minimum=0.0)
    if rate * horizon / _HOUR > MAX_EVENTS:
        raise SensorConfigError(
            f"{path}.rate_per_hour: {rate:g} per hour over {horizon:g} s draws more than"
            f" {MAX_EVENTS} events"
        )
    shape = table.get("shape", "pulse")
    if shape not in SHAPES:
        raise SensorConfigError(
            f"{path}.shape: expected one of {', '.join(SHAPES)}, found {_describe(shape)}"
        )
    return Events(
        rate,
        _number(table["amplitude"], f"{path}.amplitude"),
        _number(table["duration"], f"{path}.duration", above=0.0),
        shape=shape,
        seed=seed,
        horizon=horizon,
    )


def _points(value: Any, path: str) -> list[tuple[float, float]]:
    if not isinstance(value, list | tuple) or not value:
        raise SensorConfigError(f"{path}: expected [[t, value], ...], found {_describe(value)}")
    points: list[tuple[float, float]] = []
    for i, point in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise SensorConfigError(f"{where}: expected [t, value], found {_describe(point)}")
        t = _number(point[0], f"{where}[0]")
        if points and t < points[-1][0]:
            raise SensorConfigError(
                f"{where}[0]: times must not decrease, found {t:g} after {points[-1][0]:g}"
            )
        points.append((t, _number(point[1], f"{where}[1]")))
    return points


def _table(
    value: Any, path: str, known: Sequence[str], *, required: Sequence[str]
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SensorConfigError(f"{path}: expected a table, found {_describe(value)}")
    _known_keys(value, f"{path}.", known)
    for key in required:
        if key not in value:
            raise SensorConfigError(f"{path}.{key}: required")
    return value


def _known_keys(table: Mapping[Any, Any], prefix: str, known: Sequence[str]) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
            raise SensorConfigError(f"{prefix}{key}: unknown key; {hint}")


def _number(
    value: Any,
    path: str,
    *,
    minimum: float | None = None,
    above: float | None = None,
    below: float | None = None,
) -> float:
    """``value`` as a float within ``[minimum, below)`` (``above``: an exclusive minimum)."""
    bounds = [
        f">= {minimum:g}" if minimum is not None else "",
        f"> {above:g}" if above is not None else "",
        f"< {below:g}" if below is not None else "",
    ]
    domain = " and ".join(b for b in bounds if b)
    expected = f"expected a number {domain}".rstrip()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SensorConfigError(f"{path}: {expected}, found {_describe(value)}")
    if not -LIMIT <= value <= LIMIT:  # also catches nan, inf and huge integers
        raise SensorConfigError(
            f"{path}: expected a finite number of magnitude <= {LIMIT:g}, found {_describe(value)}"
        )
    number = float(value)
    if (
        (minimum is not None and number < minimum)
        or (above is not None and number <= above)
        or (below is not None and number >= below)
    ):
        raise SensorConfigError(f"{path}: {expected}, found {_describe(value)}")
    return number


def _describe(value: Any) -> str:
    """How a found value reads in a message: its TOML type and, if short, its value."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    kind = "table" if isinstance(value, Mapping) else kinds.get(type(value), type(value).__name__)
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's int-to-str digit limit
        return kind
    return f"{kind} {text}" if len(text) <= 40 else kind
