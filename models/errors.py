"""The models package's exception tree: each error also inherits the built-in it resembles."""

from __future__ import annotations


class ModelError(Exception):
    """Base of every error the ``models`` package raises on purpose."""


class ParamsError(ModelError, ValueError):
    """A detector's parameters are invalid; the message names the fields and the fix."""
