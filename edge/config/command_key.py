"""The command key: hex text in a file or an environment variable, read exactly.

One reader for both sides: the device (``[commands] key_file`` / ``key_env``) and the
operator's ``edge command --key-file``. The format is hex text, at least 32 hex digits
(16 bytes), with at most one trailing newline, as ``openssl rand -hex 32 > command.key``
writes it. Nothing else is stripped or guessed: a binary file, or text that is not hex,
is refused, so a key is never silently shortened. Messages never echo the key.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.config.secrets import mode_problem

MIN_COMMAND_KEY = 16  # bytes: 32 hex digits
MAX_FILE = 4096  # bytes: a key file is a line of hex, never more
HOW = "hex text such as `openssl rand -hex 32` writes"


class CommandKeyError(OSError):
    """A command key that cannot be used: unreadable, not hex, too short, or exposed."""


def parse_key(text: bytes, where: str) -> bytes:
    """The key in ``text`` (hex digits, one trailing newline allowed), or CommandKeyError."""
    body = text[:-1] if text.endswith(b"\n") else text
    body = body[:-1] if body.endswith(b"\r") else body
    digits = b"0123456789abcdefABCDEF"
    if not body or body.strip(digits):
        raise CommandKeyError(
            f"{where}: expected {HOW}, found {len(text)} bytes that are not (the key is not shown)"
        )
    if len(body) % 2:
        raise CommandKeyError(f"{where}: expected {HOW}, found an odd number of hex digits")
    key = bytes.fromhex(body.decode("ascii"))
    if len(key) < MIN_COMMAND_KEY:
        raise CommandKeyError(
            f"{where}: a command key needs at least {MIN_COMMAND_KEY} bytes "
            f"({2 * MIN_COMMAND_KEY} hex digits), found {len(key)}"
        )
    return key


def read_key_file(path: str | Path) -> bytes:
    """The key in ``path``; refused when group or others may read or write it."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise CommandKeyError(f"{where}: cannot read the command key: {exc.strerror}") from exc
    if len(text) > MAX_FILE:
        raise CommandKeyError(f"{where}: expected {HOW}, found more than {MAX_FILE} bytes")
    if problem := mode_problem(mode, where):
        raise CommandKeyError(f"{where}: {problem}")
    return parse_key(text, where)


def read_key_env(name: str) -> bytes:
    """The key in environment variable ``name``."""
    value = os.environ.get(name)
    where = f"environment variable {name}"
    if value is None:
        raise CommandKeyError(f"{where} is not set (expected the command key, {HOW})")
    return parse_key(value.encode("utf-8", "surrogateescape"), where)
