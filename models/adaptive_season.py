"""The daily profile the ``adaptive`` detector explains recurring jumps with.

Many signals follow the clock: traffic, ad clicks, load, a plant's shifts. Their daily rise
and fall are jumps the detector would otherwise count as rare again and again (a square
wave's evening drop is the largest jump of the day, every day). :class:`DailyProfile`
learns, for each phase of the day (:data:`BINS` bins of the time of day), how far the
signal usually is from its baseline median there. From :data:`CYCLES` days on, the detector
also measures every jump on the *deseasonalised* signal (the reading minus the profile at
its phase), and while the profile is trusted a jump counts only as far as it is rare in
both: one the daily cycle explains no longer scores, one at an hour it never happens
still does.

The profile is trusted once it has seen :data:`CYCLES` days and while it explains the
signal: its *strength*, ``1 - E|residual| / E|reading - median|`` (running means, over
about ``1 / GAMMA`` readings, of its one-step-ahead errors with and without the profile),
is at least :data:`MIN_STRENGTH`. On a signal without a daily cycle it stays below, and
the detector scores as if there were no profile; the long memory keeps a weakly periodic
signal from flickering in and out.

The phase is ``t`` modulo a day, ``t`` in seconds of any steady clock (a monotonic clock or
the timestamps of a recording). Time may step back: a reading at most :data:`LATE` behind
the latest is late, learnt at its phase; one further back starts a new clock (a monotonic
clock starts again at boot while the learnt state is restored), which keeps what was learnt
but must prove its phase again (:meth:`DailyProfile.learn`). Nothing is ever forgotten for
a step back. Memory: two arrays of :data:`BINS` entries.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Mapping
from typing import Any

DAY = 86_400.0  # seconds in the period of the profile
BINS = 288  # phases of the day: 5-minute bins
ALPHA = 0.25  # the weight of a new day in a bin's profile, once it has seen 1 / ALPHA days
CYCLES = 2.0  # days seen before the profile is used
MIN_STRENGTH = 0.3  # share of the typical deviation the profile must explain to be used
GAMMA = 0.003  # the weight of a new reading in the running means of the errors
NEAREST = 3  # bins either side searched for a phase not seen yet
LATE = 3600.0  # s behind the latest: late (or daylight saving's hour back); past it, a new clock
_FULL = round(1 / ALPHA)  # a bin's count stops there: past it, its weight stays ALPHA


class DailyProfile:
    """The usual deviation from the baseline median at each phase of the day."""

    def __init__(self) -> None:
        self._profile = array("d", bytes(8 * BINS))
        self._counts = array("b", bytes(BINS))
        self._error = 0.0  # running mean |reading - median - profile| (one step ahead)
        self._spread = 0.0  # running mean |reading - median|
        self._origin: float | None = None  # days are counted from it (on the current clock)
        self._last = -math.inf  # the latest t
        self._back = 0  # readings whose t was before the latest

    @property
    def steps_back(self) -> int:
        """Readings learnt whose time was before the latest one's (late, or a new clock)."""
        return self._back

    def expected(self, t: float) -> float | None:
        """The profile at ``t``'s phase (the nearest phase seen, 0 if none is near), once
        :data:`CYCLES` days have been seen; None before."""
        seen = self._seen(t)
        if seen is None or seen < CYCLES * DAY:
            return None
        return self._at(_bin(t))

    @property
    def strength(self) -> float:
        """The share of the typical deviation from the median the profile explains."""
        return 1.0 - self._error / self._spread if self._spread > 0 else 0.0

    def trusted(self, t: float) -> bool:
        """Whether the profile is learnt (:data:`CYCLES` days seen) and explains the signal
        (its strength is at least :data:`MIN_STRENGTH`)."""
        seen = self._seen(t)
        return seen is not None and seen >= CYCLES * DAY and self.strength >= MIN_STRENGTH

    def learn(self, t: float, deviation: float) -> None:
        """Take a reading's ``deviation`` from the baseline median at time ``t``.

        A ``t`` before the latest is counted. Up to :data:`LATE` before, the reading is late:
        learnt at its phase, the latest stays. Further back is a new clock: see
        :meth:`_rebase`.
        """
        origin = self._origin
        if origin is None:
            self._origin = t
        elif t < self._last:
            self._back += 1
            if self._last - t > LATE:
                self._rebase(t, origin)
        self._last = max(self._last, t)
        at = _bin(t)
        self._error += GAMMA * (abs(deviation - self._at(at)) - self._error)
        self._spread += GAMMA * (abs(deviation) - self._spread)
        count = self._counts[at]
        if count < _FULL:
            count += 1
            self._counts[at] = count
        self._profile[at] += (deviation - self._profile[at]) / count

    def _rebase(self, t: float, origin: float) -> None:
        """Go on from ``t`` on a new clock, forgetting nothing.

        The days seen carry over (the origin moves with the clock), and so do the profile
        and the typical deviation (``spread``): they are the signal's, not the clock's. But
        the new clock's phase may be shifted by any amount (a monotonic clock starts at
        boot), so the running error starts again at the typical deviation, a strength of 0:
        the profile is trusted again once it explains the readings on this clock (within a
        few hundred readings if it still fits; if it does not, its bins are relearnt
        meanwhile, and the detector scores as without a profile until then).
        """
        self._origin = t - (self._last - origin)
        self._last = t
        self._error = max(self._error, self._spread)

    def _seen(self, t: float) -> float | None:
        """Seconds of readings seen at ``t``, None before any; a new clock's first reading
        (before :meth:`learn` rebases on it) has seen what the latest had."""
        if self._origin is None:
            return None
        if self._last - t > LATE:
            return self._last - self._origin
        return t - self._origin

    def _at(self, at: int) -> float:
        counts = self._counts
        if counts[at]:
            return self._profile[at]
        for step in range(1, NEAREST + 1):
            for near in ((at - step) % BINS, (at + step) % BINS):
                if counts[near]:
                    return self._profile[near]
        return 0.0

    # -- state --------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "profile": list(self._profile),
            "counts": list(self._counts),
            "error": self._error,
            "spread": self._spread,
            "origin": self._origin,
            "last": self._last if self._origin is not None else None,
            "back": self._back,
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        profile = [float(v) for v in state["profile"]]
        counts = [int(c) for c in state["counts"]]
        error, spread = float(state["error"]), float(state["spread"])
        origin = None if state["origin"] is None else float(state["origin"])
        last = None if state["last"] is None else float(state["last"])
        back = state.get("back", 0)  # not in the snapshots of earlier releases
        if isinstance(back, bool) or not isinstance(back, int) or back < 0:
            raise ValueError(f"a daily profile's count of steps back is {back!r}")
        if len(profile) != BINS or len(counts) != BINS:
            raise ValueError(f"a daily profile has {BINS} bins")
        if any(not 0 <= c <= _FULL for c in counts):
            raise ValueError("a daily profile's counts are out of range")
        numbers = [*profile, error, spread, *(v for v in (origin, last) if v is not None)]
        if not all(math.isfinite(v) for v in numbers) or error < 0 or spread < 0:
            raise ValueError("a daily profile holds a non-finite or negative number")
        if (origin is None) != (last is None) or (
            origin is not None and last is not None and last < origin
        ):
            raise ValueError("a daily profile's times are inconsistent")
        self._profile = array("d", profile)
        self._counts = array("b", counts)
        self._error, self._spread = error, spread
        self._origin = origin
        self._last = -math.inf if last is None else last
        self._back = back


def _bin(t: float) -> int:
    return int(t % DAY * (BINS / DAY)) % BINS
