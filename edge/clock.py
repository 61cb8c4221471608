"""One clock behind all timing: scheduling, timestamps, backoff and waits.

The real clock reads the OS; the virtual clock is advanced by whoever drives it (the
simulator's loop or a test), so an hour of scenario runs in seconds and tests are
deterministic. Both answer the same four questions: what is the monotonic time, what is the
wall time, is the wall time trustworthy yet, and wait until a deadline unless woken.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Protocol

# systemd-timesyncd touches this file once the clock has been synchronised.
TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"
_TIME_ERROR = 5  # adjtimex() result while the kernel considers the clock unsynchronised
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never jumps; the scheduler's time base."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch, as the wall clock says now."""
        ...

    def synced(self) -> bool:
        """Whether the wall clock is known to be synchronised (NTP, RTC)."""
        ...

    def wait(self, wake: threading.Event, deadline: float) -> bool:
        """Block until monotonic() >= deadline or ``wake`` is set; True if woken."""
        ...

    @property
    def epoch(self) -> str:
        """Names the monotonic time base; readings from different epochs don't compare."""
        ...


def kernel_clock_synced() -> bool:
    """Ask the system whether the wall clock is synchronised, without any network I/O.

    systemd's timesync flag first; otherwise the kernel's own view (adjtimex returns
    TIME_ERROR while unsynchronised), which chrony, ntpd and timesyncd all maintain.
    """
    if os.path.exists(TIMESYNC_FLAG):
        return True
    try:
        # CDLL(None) is the running process, which links libc: no library search, no fork.
        adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
        timex = ctypes.create_string_buffer(512)  # modes=0: read only
        return bool(adjtimex(timex) != _TIME_ERROR)
    except (OSError, AttributeError):
        return False


def boot_id() -> str:
    """Identifies this boot: monotonic readings are comparable only within one boot."""
    try:
        with open(_BOOT_ID, encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return f"process-{os.getpid()}-{time.time():.0f}"


class RealClock:
    """The OS clocks. Sync status is probed at most every ``probe_interval`` seconds."""

    def __init__(
        self,
        *,
        assume_synced: bool = False,
        probe: Callable[[], bool] = kernel_clock_synced,
        probe_interval: float = 5.0,
    ) -> None:
        self._assume_synced = assume_synced
        self._probe = probe
        self._probe_interval = probe_interval
        self._last_probe = -float("inf")
        self._synced = assume_synced
        self._lock = threading.Lock()
        self.epoch = boot_id()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def synced(self) -> bool:
        if self._assume_synced:
            return True
        now = time.monotonic()
        with self._lock:
            # Once synchronised, stay so: a later probe failure must not unstamp events.
            if not self._synced and now - self._last_probe >= self._probe_interval:
                self._last_probe = now
                self._synced = self._probe()
            return self._synced

    def wait(self, wake: threading.Event, deadline: float) -> bool:
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            return wake.is_set()
        return wake.wait(timeout)


class VirtualClock:
    """A clock that moves only when told to.

    ``advance``/``advance_to`` move time forward and release every waiter whose deadline
    has passed. ``wait`` blocks the calling thread in real time until virtual time reaches
    the deadline. Exactly one party drives time: a test, or the simulator's scheduler when
    it runs as fast as possible (it advances to its next due time instead of waiting).
    """

    def __init__(
        self,
        *,
        start_wall: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
        start_monotonic: float = 1000.0,
        synced: bool = True,
    ) -> None:
        self._now = start_monotonic
        self._wall_offset = start_wall - start_monotonic
        self._synced = synced
        self._cond = threading.Condition()
        self.epoch = f"virtual-{uuid.uuid4().hex}"

    def monotonic(self) -> float:
        with self._cond:
            return self._now

    def wall(self) -> float:
        with self._cond:
            return self._now + self._wall_offset

    def synced(self) -> bool:
        with self._cond:
            return self._synced

    def set_synced(self, synced: bool, *, wall_step: float = 0.0) -> None:
        """Simulate NTP: mark the clock synchronised and step the wall clock."""
        with self._cond:
            self._synced = synced
            self._wall_offset += wall_step

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self.advance_to(self.monotonic() + seconds)

    def advance_to(self, deadline: float) -> None:
        with self._cond:
            if deadline > self._now:
                self._now = deadline
                self._cond.notify_all()

    def wait(self, wake: threading.Event, deadline: float) -> bool:
        with self._cond:
            while self._now < deadline and not wake.is_set():
                # Short real-time slices so a wake event set without notify is still seen.
                self._cond.wait(0.05)
            return wake.is_set()

    def poke(self) -> None:
        """Release waiters so they re-check their wake events promptly."""
        with self._cond:
            self._cond.notify_all()


class ScaledClock:
    """Real time sped up by a factor, for ``edge simulate --speed X``."""

    def __init__(self, speed: float, *, start_wall: float | None = None) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, not {speed}")
        self.speed = speed
        self._real0 = time.monotonic()
        self._wall0 = time.time() if start_wall is None else start_wall
        self.epoch = f"scaled-{uuid.uuid4().hex}"

    def monotonic(self) -> float:
        return (time.monotonic() - self._real0) * self.speed

    def wall(self) -> float:
        return self._wall0 + self.monotonic()

    def synced(self) -> bool:
        return True

    def wait(self, wake: threading.Event, deadline: float) -> bool:
        timeout = (deadline - self.monotonic()) / self.speed
        if timeout <= 0:
            return wake.is_set()
        return wake.wait(timeout)
