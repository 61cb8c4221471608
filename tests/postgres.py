"""The throwaway PostgreSQL cluster for tests (``edge.bench.postgres``), and the skip rule
for tests that need it: ``tools/setup dev`` installs Debian's ``postgresql``.
"""

from __future__ import annotations

import os

import pytest

from edge.bench.postgres import INSTALL_HINT, PostgresCluster, find_postgres

__all__ = ["PostgresCluster", "need_postgres"]


def need_postgres() -> tuple[str, str]:
    """(initdb, pg_ctl); without them, skip the test (fail it when CI is set)."""
    found = find_postgres()
    if found is None:
        message = f"PostgreSQL's initdb and pg_ctl are not installed ({INSTALL_HINT})"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: required when CI is set")
        pytest.skip(message)
    return found
