"""The category memory of the ``adaptive`` detector: dual-vigilance fuzzy ART.

Fuzzy ART (Carpenter, Grossberg and Rosen, 1991) keeps categories as boxes in [0, 1]^d,
stored complement-coded: a pattern ``x`` is ``(x, 1 - x)`` and a category's weights ``w``
are the lower corner and the complement of the upper corner. A pattern resonates with a
category when their overlap ``|x ^ w| / |w|`` (``^`` the element-wise minimum, ``|.|`` the
sum) is high enough, and the category then grows to hold it (``w <- x ^ w``). The dual-
vigilance variant (da Silva, Elnabarawy and Wunsch, 2019) has two thresholds: at or above
``rho_ub`` every resonant category learns the pattern; below it the pattern becomes a new
category, of a known cluster if its best match is at least ``rho_lb``, else of a **new
cluster**: a pattern like nothing seen. ARTime's match also weighs the latest value alone
(its "energy"): ``(overlap)^3 * e^2``, with ``e`` the overlap on that one value.

The table is bounded: past ``size`` categories, the least recently used one makes room.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
_ROUNDING = 1e-9


class Categories:
    """At most ``size`` complement-coded categories of ``dim``-value patterns.

    ``latest`` is the index of the pattern's latest value (the energy term's).
    """

    def __init__(self, dim: int, latest: int, size: int) -> None:
        self.dim, self.size = dim, size
        self._latest, self._latest_c = latest, dim + latest
        self.count = 0
        self.weights = np.zeros((size, 2 * dim))
        self._norm = np.ones(size)  # |w| (0 stored as 0.001, as ARTime does)
        self._energy_norm = np.ones(size)  # w at the latest value and its complement
        self._energy_full = np.zeros(size)  # 1 where that is 0: the energy match is then full
        self._used = np.zeros(size)  # the step each category last won or learnt
        self._scratch = np.zeros((size, 2 * dim))

    def train(
        self, x: Array, step: int, rho_ub: float, rho_lb: float, learning: bool = True
    ) -> tuple[bool, float, float]:
        """Present pattern ``x`` (complement-coded); returns (a new cluster?, the best match,
        its energy overlap). Without ``learning`` nothing changes."""
        n = self.count
        if n == 0:
            if learning:
                self._add(x, step)
            return learning, 0.0, 0.0
        weights = self.weights[:n]
        overlap = np.minimum(weights, x, out=self._scratch[:n])
        sums = overlap.sum(1)
        fit = sums / self._norm[:n]
        energy_sums = overlap[:, self._latest] + overlap[:, self._latest_c]
        energy = (energy_sums + self._energy_full[:n]) / self._energy_norm[:n]
        match = fit * fit * fit * energy * energy
        best = int(match.argmax())
        a, e = float(match[best]), float(energy[best])
        if not learning:
            return False, a, e
        self._used[best] = step
        if a >= rho_ub:
            # every resonant category learns (fast commit); its new norms are the sums above
            rows = np.flatnonzero(match >= rho_ub)
            weights[rows] = overlap[rows]
            self._set_norms(rows, sums[rows], energy_sums[rows])
            self._used[rows] = step
            return False, a, e
        self._add(x, step)  # a new category: of a known cluster (a >= rho_lb) or a new one
        return a < rho_lb, a, e

    def rescale(self, start: int, old_lo: float, old_range: float, lo: float, rng: float) -> None:
        """Re-express the value half ``[start, dim)`` of every category when the range those
        values are normalised by changes from (old_lo, old_range) to (lo, rng): an exact
        affine map of each box's lower corner and upper corner."""
        n = self.count
        if not n or rng <= 0:
            return
        low = self.weights[:n, start : self.dim]
        complement = self.weights[:n, self.dim + start :]
        high = 1.0 - complement
        low[:] = (old_lo - lo + low * old_range) / rng
        complement[:] = 1.0 - (old_lo - lo + high * old_range) / rng
        self._refresh(slice(0, n))

    def _add(self, x: Array, step: int) -> None:
        if self.count < self.size:
            k = self.count
            self.count += 1
        else:
            k = int(np.argmin(self._used[: self.count]))
        self.weights[k] = x
        self._refresh(slice(k, k + 1))
        self._used[k] = step

    def _refresh(self, rows: slice) -> None:
        weights = self.weights[rows]
        self._set_norms(rows, weights.sum(1), weights[:, self._latest] + weights[:, self._latest_c])

    def _set_norms(self, rows: Any, total: Array, energy: Array) -> None:
        self._norm[rows] = np.where(total == 0, 0.001, total)
        self._energy_full[rows] = energy == 0
        self._energy_norm[rows] = np.where(energy == 0, 1.0, energy)

    # -- state ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        n = self.count
        return {"weights": self.weights[:n].tolist(), "used": self._used[:n].tolist()}

    def restore(self, state: Any) -> None:
        weights = np.asarray(state["weights"], dtype=np.float64)
        used = np.asarray(state["used"], dtype=np.float64)
        n = len(weights)
        if n and weights.shape != (n, 2 * self.dim):
            raise ValueError(f"categories of {weights.shape[-1]} values, expected {2 * self.dim}")
        if n > self.size or used.shape != (n,):
            raise ValueError("category table of the wrong size")
        # boxes lie in [0, 1] (re-expressed ones within rounding of it)
        inside = (weights >= -_ROUNDING) & (weights <= 1 + _ROUNDING)
        if not np.isfinite(used).all() or (n and not inside.all()):
            raise ValueError("category weights outside [0, 1]")
        self.count = n
        if n:
            self.weights[:n] = weights
            self._used[:n] = used
            self._refresh(slice(0, n))
