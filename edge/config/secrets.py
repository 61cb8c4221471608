"""Secrets in the config: the broker password's file, and URLs as messages may show them.

A secret comes from a file or an environment variable, never inline. A secret file must be
private to its owner (as ssh insists for a private key): a file that others on the device
can read is refused, with the fix in the message, rather than used. Every URL that goes into
an error message or a log passes through :func:`hide_password` first.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

# What a user name ends at in the user info of a URL; whatever follows is treated as secret.
_USER_END = re.compile(r"[:@]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def hide_password(value: Any) -> Any:
    """A URL as messages show it, its password replaced by ``***``.

    The user info runs from ``//`` to the *last* ``@``, so a password holding ``/``, ``@``,
    ``:``, ``%``, ``?`` or ``#`` is hidden whole, even where ``urllib.parse`` would split the
    URL inside it (it ends the authority at the first ``/``). The text before ``//`` is kept,
    so a URL without a scheme (``user:pw@host``) is hidden too. Over-hiding is fine here.
    """
    if not isinstance(value, str) or "@" not in value:
        return value
    scheme = _SCHEME.match(value)  # not just any "//": the password may hold one
    start = scheme.end() if scheme else 0
    at = value.rfind("@")
    if at < start:
        return value
    userinfo = value[start:at]
    user = _USER_END.split(userinfo, maxsplit=1)[0]
    if user == userinfo:  # a user name only: nothing secret
        return value
    return f"{value[:start]}{user}:***{value[at:]}"


def private_file_problem(path: str | Path) -> str | None:
    """Why a secret file must not be used, or None: it is readable or writable by others.

    A missing file is no problem here (the reading reports it, where the device runs).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return mode_problem(mode, path)


def mode_problem(mode: int, path: str | Path) -> str | None:
    """Why a secret file with this ``st_mode`` must not be used, or None."""
    if stat.S_IMODE(mode) & 0o077:
        return (
            f"expected a file only its owner can read or write (run: chmod 600 {path}),"
            f" found mode {stat.S_IMODE(mode):04o}"
        )
    return None


def read_secret_text(path: str | Path) -> str:
    """A secret file's text, stripped; PermissionError when others could read it too."""
    problem = private_file_problem(path)
    if problem:
        raise PermissionError(f"{path}: {problem}")
    return Path(path).read_text(encoding="utf-8").strip()
