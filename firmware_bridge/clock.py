"""The MCU's millisecond clock (``t_ms``, 32 bits, wrapping every 49.7 days) mapped onto the
host's clock: each frame that carries ``t_ms`` is a sample of ``host - mcu`` that is late by
the link's latency, never early, so the lower envelope of those samples is the offset, and
its slope over minutes is the drift between the two crystals.

The samples are kept as one minimum per ``bucket_s`` of MCU time over ``span_s``; the map is
the least-squares line through those minima (with one bucket, the offset alone)."""

from __future__ import annotations

from collections import deque

from firmware_bridge.messages import U32_MODULO

_HALF = U32_MODULO // 2


class ClockMap:
    def __init__(self, bucket_s: float = 5.0, span_s: float = 600.0) -> None:
        self.bucket_s = bucket_s
        self.buckets: deque[tuple[float, float]] = deque(maxlen=max(2, int(span_s / bucket_s)))
        self._last_raw: int | None = None
        self._wraps = 0
        self._fit: tuple[float, float, float] | None = None  # (t_ref, offset, drift)

    @property
    def synced(self) -> bool:
        """Mapped from at least two buckets: an offset and a drift both measured."""
        return len(self.buckets) >= 2

    def reset(self) -> None:
        """The MCU restarted: its clock began again from 0, and nothing before holds."""
        self.buckets.clear()
        self._last_raw = None
        self._wraps = 0
        self._fit = None

    def unwrap(self, t_ms: int) -> float:
        """``t_ms`` as seconds since the MCU started, counting the wraps of 32 bits. A stamp
        behind the newest one seen (a block that began before the last heartbeat) maps
        back, across a wrap if need be."""
        if self._last_raw is None:
            self._last_raw = t_ms
        forward = (t_ms - self._last_raw) % U32_MODULO < _HALF
        if forward:
            if t_ms < self._last_raw:
                self._wraps += 1
            self._last_raw = t_ms
            wraps = self._wraps
        else:
            wraps = self._wraps - 1 if t_ms > self._last_raw else self._wraps
        return (t_ms + wraps * U32_MODULO) / 1000.0

    def behind(self, t_ms: int) -> float:
        """Seconds ``t_ms`` is behind the newest stamp seen (0 when ahead): far behind with
        no new HELLO is an MCU that restarted while its HELLO was lost."""
        if self._last_raw is None:
            return 0.0
        back = (self._last_raw - t_ms) % U32_MODULO
        return back / 1000.0 if back < _HALF else 0.0

    def observe(self, t_ms: int, host_s: float) -> None:
        """A frame stamped ``t_ms`` by the MCU arrived at ``host_s``."""
        mcu_s = self.unwrap(t_ms)
        offset = host_s - mcu_s
        bucket = mcu_s // self.bucket_s
        if self.buckets and self.buckets[-1][0] // self.bucket_s == bucket:
            if offset < self.buckets[-1][1]:
                self.buckets[-1] = (mcu_s, offset)
            else:
                return
        else:
            self.buckets.append((mcu_s, offset))
        self._fit = None

    def to_host(self, t_ms: int) -> float | None:
        """The host time at which the MCU's clock read ``t_ms``; None before any observation."""
        if not self.buckets:
            return None
        mcu_s = self.unwrap(t_ms)
        t_ref, offset, drift = self._line()
        return mcu_s + offset + drift * (mcu_s - t_ref)

    @property
    def drift_ppm(self) -> float:
        return self._line()[2] * 1e6 if self.buckets else 0.0

    def _line(self) -> tuple[float, float, float]:
        if self._fit is None:
            points = list(self.buckets)
            t_ref = points[-1][0]
            if len(points) < 2:
                self._fit = (t_ref, points[-1][1], 0.0)
            else:
                n = len(points)
                mean_t = sum(t for t, _ in points) / n
                mean_o = sum(o for _, o in points) / n
                var = sum((t - mean_t) ** 2 for t, _ in points)
                slope = sum((t - mean_t) * (o - mean_o) for t, o in points) / var if var else 0.0
                self._fit = (t_ref, mean_o + slope * (t_ref - mean_t), slope)
        return self._fit
