"""Simulated pulses on a gpiozero mock pin, at the rate a signal gives (``gpio.counter``)."""

from __future__ import annotations

import math
from typing import Any

from sensors.ports import Monotonic
from sensors.sim.signals import Signal


class PulseTrain:
    """Drives a gpiozero ``MockPin`` with pulses at ``rate()`` pulses per second.

    Each :meth:`advance` drives every edge due by ``clock()`` and returns when the
    next one is due. The rate is sampled at each call and holds until the next,
    so the train follows a changing signal as closely as it is advanced. Pulses
    are square (half a period active), active low by default (the pin idles high
    and each pulse drives it low, as a switch to ground on a pulled-up input).
    A rate that is not a finite number > 0 gives no pulses.

    Advance it at the returned time (capped by a polling interval, so a rate
    rising from zero is noticed) and each edge happens at its own simulated time;
    advance it on a coarser fixed period and the edges due in one period are
    driven together, at one clock instant, which a counter's ``debounce`` would
    merge. ``PulseTrain`` is also a scheduler action: ``train(due)`` advances it.
    """

    # Edges within this fraction of a cycle of being due count as due: a call at
    # the returned time must drive its edge despite float rounding.
    _EPSILON = 1e-9

    def __init__(
        self, pin: Any, rate: Signal, clock: Monotonic, *, active_low: bool = True
    ) -> None:
        self._pin = pin
        self._rate_signal = rate
        self._clock = clock
        self._active_low = active_low
        self._t = clock()
        self._phase = 0.0  # cycles since the start; edges at every half cycle
        self._edges = 0
        self._rate = self._sample()
        self._drive(active=False)

    @property
    def pulses(self) -> int:
        """Pulses started so far (each is one activation of the pin)."""
        return (self._edges + 1) // 2

    def advance(self) -> float:
        """Drive the edges due by now; return the clock time of the next one (inf if none)."""
        t = self._clock()
        self._phase += self._rate * max(0.0, t - self._t)
        self._t = t
        while (self._edges + 1) / 2 <= self._phase + self._EPSILON:
            self._edges += 1
            # Odd edges start a pulse (idle -> active), even ones end it.
            self._drive(active=self._edges % 2 == 1)
        self._rate = self._sample()
        if self._rate == 0.0:
            return math.inf
        return t + max(0.0, (self._edges + 1) / 2 - self._phase) / self._rate

    def __call__(self, due: float) -> None:
        self.advance()

    def _sample(self) -> float:
        rate = float(self._rate_signal())
        return rate if math.isfinite(rate) and rate > 0 else 0.0

    def _drive(self, *, active: bool) -> None:
        if active == self._active_low:
            self._pin.drive_low()
        else:
            self._pin.drive_high()
