"""The ``config`` command's arguments, and the chunks a large config arrives in.

A config that fits in one command comes whole::

    {"toml": "<the whole TOML text>", "sha256": "<optional: its hex digest>", "timeout": 30}

A larger one comes as signed chunks of its UTF-8 bytes, each base64, all naming the sha256
of the whole; they are kept in ``<state_dir>/config-upload/`` until every one has arrived
(in any order; a chunk sent again replaces itself), and the config is applied only when the
bytes put together hash to that sha256::

    {"sha256": "<hex>", "chunk": 0, "of": 3, "data": "<base64>", "timeout": 30}

``timeout`` (seconds, default 30) bounds the health check after the config is applied; the
chunk that completes an upload gives it. Everything here is refused with a reason that says
what was expected: a ``CommandRefused``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.runtime import uploads
from edge.runtime.uploads import CHUNK_BYTES, MAX_CHUNKS, Piece, chunk_args, chunks, got
from edge.uplink.commands import CommandRefused, shown

__all__ = [  # chunks and its limits are uploads' (shared with model put), named here too
    "CHUNK_BYTES", "MAX_CHUNKS", "MAX_CONFIG_BYTES", "Chunk", "Uploads", "Whole", "chunks",
    "config_commands", "decode", "read_args",
]  # fmt: skip

MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few KB; a MiB is a mistake, not a config
DEFAULT_TIMEOUT = 30.0  # seconds for sampling and the uplink to come up on the new config
MAX_TIMEOUT = 600.0
UPLOADS = "config-upload"  # the directory, in the state directory, chunks wait in
WHOLE_KEYS = frozenset({"toml", "sha256", "timeout"})
CHUNK_KEYS = frozenset({"sha256", "chunk", "of", "data", "timeout"})


@dataclass(frozen=True)
class Whole:
    """A whole config, as its text and the sha256 of its UTF-8 bytes."""

    text: str
    sha256: str
    timeout: float


@dataclass(frozen=True)
class Chunk(Piece):
    """One piece of a config sent in chunks, with the health check's timeout."""

    timeout: float


def read_args(args: Mapping[str, Any]) -> Whole | Chunk:
    """The ``config`` command's arguments, checked; ``CommandRefused`` says what is wrong."""
    chunked = "data" in args
    if chunked == ("toml" in args):
        raise CommandRefused("config needs toml (the whole config) or data (a chunk), not both")
    allowed = CHUNK_KEYS if chunked else WHOLE_KEYS
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise CommandRefused(
            f"unknown argument(s) {shown(', '.join(unknown))}"
            f" (expected {', '.join(sorted(allowed))})"
        )
    timeout = _timeout(args.get("timeout", DEFAULT_TIMEOUT))
    if chunked:
        piece = uploads.read_piece(args, limit=MAX_CONFIG_BYTES, what="config")
        return Chunk(piece.sha256, piece.index, piece.of, piece.data, timeout)
    given = args.get("sha256")
    if given is not None:
        given = uploads.read_sha256(given, "config")
    text = args["toml"]
    if not isinstance(text, str):
        raise CommandRefused("toml must be the config's text (a string)")
    data = _utf8(text)
    if len(data) > MAX_CONFIG_BYTES:
        raise CommandRefused(f"a config is at most {MAX_CONFIG_BYTES} bytes, got {len(data)}")
    digest = hashlib.sha256(data).hexdigest()
    if given is not None and given != digest:
        raise CommandRefused(f"sha256 does not match the config sent (its sha256 is {digest})")
    return Whole(text, digest, timeout)


def _timeout(value: Any) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 1 <= number <= MAX_TIMEOUT:
        raise CommandRefused(f"timeout must be seconds from 1 to {MAX_TIMEOUT:g}, got {got(value)}")
    return float(number)


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON allows it, TOML files cannot hold it
        raise CommandRefused("toml must be text that UTF-8 can hold") from None


def decode(data: bytes) -> str:
    """A config's bytes as text; ``CommandRefused`` when they are not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CommandRefused(f"the config is not UTF-8 text ({exc.reason})") from None


class Uploads(uploads.Uploads):
    """The chunks of the config being uploaded, in ``<state_dir>/config-upload/``."""

    def __init__(self, state_dir: str | Path) -> None:
        super().__init__(Path(state_dir) / UPLOADS, limit=MAX_CONFIG_BYTES, what="config")


WHOLE_UP_TO = 12_000  # bytes of JSON arguments sent in one command (max_size is 16,384)


def config_commands(text: str, timeout: float | None = None) -> list[dict[str, Any]]:
    """The ``config`` commands' arguments that send ``text``: one whole command when it
    fits, else one per chunk (what ``edge command ... config --file F`` sends)."""
    extra = {} if timeout is None else {"timeout": timeout}
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    whole = {"toml": text, "sha256": digest, **extra}
    if len(json.dumps(whole, ensure_ascii=False).encode("utf-8")) <= WHOLE_UP_TO:
        return [whole]
    return chunk_args(data, extra, CHUNK_BYTES)
