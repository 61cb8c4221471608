"""How fast the uplink may go: a token bucket for metered links, and reconnect backoff.

Both run on the uplink's clock (virtual in the simulator and the tests); neither does I/O.
"""

from __future__ import annotations

import random

from edge.clock import Clock


class RateLimit:
    """A token bucket on the uplink's clock: at most ``rate`` events a second on average,
    in bursts of at most a tenth of a second's worth (for metered links)."""

    def __init__(self, rate: float, clock: Clock) -> None:
        self.rate = rate
        self.clock = clock
        self.capacity = max(1.0, rate / 10)
        self.tokens = self.capacity
        self._last = clock.monotonic()

    def delay(self) -> float:
        """Seconds (on the clock) until an event may go; 0 when one may go now."""
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + max(0.0, now - self._last) * self.rate)
        self._last = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate

    def take(self) -> None:
        self.tokens -= 1


class Backoff:
    """Exponential backoff with jitter: each delay is drawn from [d/2, d], d doubling."""

    def __init__(self, first: float, longest: float, rng: random.Random | None = None) -> None:
        self.first = first
        self.longest = longest
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.longest, self.first * 2**self.attempt)
        self.attempt += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
