"""Sliding and tumbling windows over one sensor's readings, in buffers allocated once.

A :class:`Window` keeps the last ``size`` readings (scalars, or vectors of ``width`` such as
a 3-axis acceleration) with their timestamps, and hands out the full window each time ``hop``
new readings have arrived once it is full: every reading slides it by one when ``hop`` is 1,
``hop == size`` gives tumbling windows that do not overlap.

The buffer is a "doubled" ring: each reading is written twice, at ``i`` and ``i + size`` of a
``2 * size`` array, so the last ``size`` readings are always one contiguous slice. Handing a
window to numpy or to an ONNX session is then a view, never a copy or a per-reading
allocation, for twice the memory of a plain ring (a 512-sample 3-axis float64 window: 24 KiB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

    FloatArray = NDArray[np.float64]


class WindowBatch(NamedTuple):
    """The windows a block of samples completed, oldest first, each a copy.

    ``values`` has shape ``(n, size)`` for scalars or ``(n, size, width)`` for vectors;
    ``times`` has shape ``(n, size)``. ``n`` may be 0.
    """

    values: FloatArray
    times: FloatArray


class Window:
    """The last ``size`` readings of a series, emitted every ``hop`` readings once full.

    ``width`` is ``None`` for scalar readings and the vector length (3 for x, y, z) otherwise.
    Readings are stored as float64 as given (a NaN reading stays in the window); timestamps
    must not decrease.
    """

    def __init__(self, size: int, hop: int | None = None, *, width: int | None = None) -> None:
        hop = size if hop is None else hop
        if size < 1:
            raise ValueError(f"window size must be at least 1, got {size}")
        if not 1 <= hop <= size:
            # A hop past the size would skip readings between windows; no detector wants that.
            raise ValueError(f"window hop must be between 1 and size ({size}), got {hop}")
        if width is not None and width < 1:
            raise ValueError(f"window width must be at least 1 (or None for scalars), got {width}")
        self.size = size
        self.hop = hop
        self.width = width
        shape = (2 * size,) if width is None else (2 * size, width)
        self._values: FloatArray = np.zeros(shape, dtype=np.float64)
        self._times: FloatArray = np.zeros(2 * size, dtype=np.float64)
        self._next = 0  # where the next reading goes, in [0, size)
        self._count = 0  # readings pushed since creation or reset
        self._due = size  # readings still to arrive before the next window is emitted

    @property
    def count(self) -> int:
        """Readings pushed since the window was created or reset."""
        return self._count

    @property
    def full(self) -> bool:
        return self._count >= self.size

    @property
    def values(self) -> FloatArray:
        """The last ``min(count, size)`` readings, oldest first, as a view (no copy).

        Valid until the next push: copy it to keep it.
        """
        if self.full:
            return self._values[self._next : self._next + self.size]
        return self._values[: self._count]

    @property
    def times(self) -> FloatArray:
        """Timestamps of :attr:`values`, as a view valid until the next push."""
        if self.full:
            return self._times[self._next : self._next + self.size]
        return self._times[: self._count]

    @property
    def first_time(self) -> float:
        """Timestamp of the oldest reading in the window."""
        return float(self.times[0]) if self._count else _no_readings()

    @property
    def last_time(self) -> float:
        """Timestamp of the newest reading in the window."""
        return float(self.times[-1]) if self._count else _no_readings()

    def reset(self) -> None:
        """Forget every reading (after a gap in the series, say); the buffers are kept."""
        self._next, self._count, self._due = 0, 0, self.size

    def push(self, t: float, value: ArrayLike) -> FloatArray | None:
        """Add one reading; return the full window when this reading completes one.

        The window is a view of shape ``(size,)`` or ``(size, width)``, oldest reading first,
        valid until the next push (copy it to keep it).
        """
        if self._count and t < self._times[self._next - 1 + self.size]:
            raise ValueError(f"reading time {t} is before the previous reading's")
        i = self._next
        self._values[i] = value
        self._values[i + self.size] = value
        self._times[i] = t
        self._times[i + self.size] = t
        self._next = (i + 1) % self.size
        self._count += 1
        self._due -= 1
        if self._due:
            return None
        self._due = self.hop
        return self.values

    def push_block(self, times: ArrayLike, samples: ArrayLike) -> WindowBatch:
        """Add a block of readings at once (a FIFO's worth); return the windows it completed.

        ``times`` has one timestamp per sample, not decreasing; ``samples`` has shape ``(n,)``
        or ``(n, width)``. The block is written in a few slice copies, one run of samples
        between consecutive windows at a time, not sample by sample.
        """
        t = np.asarray(times, dtype=np.float64)
        x = np.asarray(samples, dtype=np.float64)
        item = () if self.width is None else (self.width,)
        if len(t) == 0 and x.size == 0:
            x = x.reshape(0, *item)  # an empty FIFO read, whatever shape it came in
        if t.ndim != 1 or x.shape != (len(t), *item):
            raise ValueError(
                f"expected {len(t)} timestamps and samples of shape {(len(t), *item)}, "
                f"got times of shape {t.shape} and samples of shape {x.shape}"
            )
        if len(t) and (
            bool((t[1:] < t[:-1]).any())
            or (self._count and t[0] < self._times[self._next - 1 + self.size])
        ):
            raise ValueError("sample times must not decrease")
        emitted = 1 + (len(t) - self._due) // self.hop if len(t) >= self._due else 0
        out_values = np.empty((emitted, self.size, *item), dtype=np.float64)
        out_times = np.empty((emitted, self.size), dtype=np.float64)
        start, n = 0, 0
        while start < len(t):
            run = min(self._due, len(t) - start)  # never more than size: hop <= size
            self._write(t[start : start + run], x[start : start + run])
            start += run
            self._due -= run
            if not self._due:
                self._due = self.hop
                out_values[n] = self.values
                out_times[n] = self.times
                n += 1
        return WindowBatch(out_values, out_times)

    def _write(self, t: FloatArray, x: FloatArray) -> None:
        """Write ``len(t) <= size`` readings at the ring's write position, both copies."""
        size, i, k = self.size, self._next, len(t)
        self._values[i : i + k] = x
        self._times[i : i + k] = t
        if i + k <= size:
            self._values[i + size : i + size + k] = x
            self._times[i + size : i + size + k] = t
        else:  # the run wraps: its tail's mirror copy lands at the start
            head = size - i
            self._values[i + size :] = x[:head]
            self._times[i + size :] = t[:head]
            self._values[: k - head] = x[head:]
            self._times[: k - head] = t[head:]
        self._next = (i + k) % size
        self._count += k


def _no_readings() -> float:
    raise ValueError("the window has no readings yet")
