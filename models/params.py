"""Shared checks for detector parameter classes.

A params class is a frozen dataclass whose fields are annotated only with ``int``, ``float``,
``bool``, ``str``, ``Literal[...]`` of strings, or ``X | None`` of those. A field's metadata may
carry ``min`` and ``max`` (inclusive bounds) and ``doc`` (one line for help and errors). The
runtime's config loader reads these to validate TOML tables; :func:`check_fields` applies the
same bounds when a params object is built directly from Python, so both paths agree.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from models.errors import ParamsError


def check_fields(params: Any) -> None:
    """Check every numeric field of the dataclass ``params`` is finite and within its bounds.

    ``None`` values are skipped (they mean "not set"). Raises :class:`ParamsError`, a
    ``ValueError``, naming the field, the bound and the value found.
    """
    for f in fields(params):
        value = getattr(params, f.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamsError(f"{f.name} must be a finite number, got {value!r}")
        low = f.metadata.get("min")
        if low is not None and value < low:
            raise ParamsError(f"{f.name} must be at least {low}, got {value!r}")
        high = f.metadata.get("max")
        if high is not None and value > high:
            raise ParamsError(f"{f.name} must be at most {high}, got {value!r}")
