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

import base64
import binascii
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from edge.uplink.commands import CommandRefused, shown

MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few KB; a MiB is a mistake, not a config
MAX_CHUNKS = 1024
DEFAULT_TIMEOUT = 30.0  # seconds for sampling and the uplink to come up on the new config
MAX_TIMEOUT = 600.0
UPLOADS = "config-upload"  # the directory, in the state directory, chunks wait in
SHA256 = re.compile(r"[0-9a-f]{64}")
WHOLE_KEYS = frozenset({"toml", "sha256", "timeout"})
CHUNK_KEYS = frozenset({"sha256", "chunk", "of", "data", "timeout"})


@dataclass(frozen=True)
class Whole:
    """A whole config, as its text and the sha256 of its UTF-8 bytes."""

    text: str
    sha256: str
    timeout: float


@dataclass(frozen=True)
class Chunk:
    """One piece of a config sent in chunks: bytes ``index`` of ``of`` of the config whose
    sha256 is ``sha256``."""

    sha256: str
    index: int
    of: int
    data: bytes
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
    given = args.get("sha256")
    if given is not None or chunked:
        if not isinstance(given, str) or not SHA256.fullmatch(given.lower()):
            raise CommandRefused("sha256 must be 64 hex digits (the config's sha256)")
        given = given.lower()
    if not chunked:
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
    assert isinstance(given, str)
    index, of = args.get("chunk"), args.get("of")
    if not _integer(of) or not 1 <= of <= MAX_CHUNKS:
        raise CommandRefused(f"of must be the number of chunks, 1 to {MAX_CHUNKS}, got {_got(of)}")
    if not _integer(index) or not 0 <= index < of:
        raise CommandRefused(f"chunk must be an index from 0 to {of - 1}, got {_got(index)}")
    encoded = args["data"]
    if not isinstance(encoded, str) or not encoded:
        raise CommandRefused("data must be the chunk's bytes as base64 text")
    if len(encoded) > MAX_CONFIG_BYTES * 4 // 3 + 4:
        raise CommandRefused(f"a config is at most {MAX_CONFIG_BYTES} bytes")
    try:
        data = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise CommandRefused("data must be base64 (A-Z a-z 0-9 + /, = padding)") from None
    return Chunk(given, index, of, data, timeout)


def _timeout(value: Any) -> float:
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not 1 <= number <= MAX_TIMEOUT:
        got = _got(value)
        raise CommandRefused(f"timeout must be seconds from 1 to {MAX_TIMEOUT:g}, got {got}")
    return float(number)


def _got(value: Any) -> str:
    """A value the sender gave, as a refusal shows it: escaped, cut short."""
    return shown(repr(value))


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


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


class Uploads:
    """Chunks of the config being uploaded, one upload at a time, in ``<state_dir>/
    config-upload/`` (a chunk of another upload drops the unfinished one's).

    Used on the command worker only. A chunk is a file named ``<sha256>-<of>-<index>``;
    a restart of the runtime (or a power cut) keeps what arrived."""

    def __init__(self, state_dir: str | Path) -> None:
        self.directory = Path(state_dir) / UPLOADS

    def add(self, chunk: Chunk) -> bytes | None:
        """Keep a chunk; the whole config's bytes once the last one is in (and the parts
        are gone), else None. ``CommandRefused`` when the whole does not hash to the
        upload's sha256 or grows too big: the upload starts over."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        prefix = f"{chunk.sha256}-{chunk.of}-"
        parts: dict[int, Path] = {}
        for path in self.directory.iterdir():
            if path.name.startswith(prefix) and path.name[len(prefix) :].isdigit():
                parts[int(path.name[len(prefix) :])] = path
            else:  # another upload's, unfinished, or a stray temporary file
                path.unlink(missing_ok=True)
        size = chunk.data.__len__() + sum(
            p.stat().st_size for i, p in parts.items() if i != chunk.index
        )
        if size > MAX_CONFIG_BYTES:
            self.clear()
            raise CommandRefused(f"a config is at most {MAX_CONFIG_BYTES} bytes: upload dropped")
        target = self.directory / f"{prefix}{chunk.index}"
        temporary = self.directory / f".{target.name}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(chunk.data)
        os.replace(temporary, target)
        parts[chunk.index] = target
        if len(parts) < chunk.of:
            return None
        whole = b"".join(parts[i].read_bytes() for i in range(chunk.of))
        self.clear()
        digest = hashlib.sha256(whole).hexdigest()
        if digest != chunk.sha256:
            raise CommandRefused(
                f"the chunks put together hash to {digest}, not sha256 {chunk.sha256}:"
                " upload dropped, send it again"
            )
        return whole

    def missing(self, chunk: Chunk) -> int:
        """How many chunks of ``chunk``'s upload have not arrived yet."""
        prefix = f"{chunk.sha256}-{chunk.of}-"
        if not self.directory.is_dir():
            return chunk.of
        return chunk.of - sum(1 for p in self.directory.iterdir() if p.name.startswith(prefix))

    def clear(self) -> None:
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                path.unlink(missing_ok=True)


def chunks(data: bytes, size: int) -> list[bytes]:
    """``data`` cut into pieces of ``size`` bytes (the last shorter): what a sender sends."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


WHOLE_UP_TO = 12_000  # bytes of JSON arguments sent in one command (max_size is 16,384)
CHUNK_BYTES = 6_144  # raw bytes a chunk carries: 8 KiB of base64, well under max_size


def config_commands(text: str, timeout: float | None = None) -> list[dict[str, Any]]:
    """The ``config`` commands' arguments that send ``text``: one whole command when it
    fits, else one per chunk (what ``edge command ... config --file F`` sends)."""
    extra = {} if timeout is None else {"timeout": timeout}
    data = text.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    whole = {"toml": text, "sha256": digest, **extra}
    if len(json.dumps(whole, ensure_ascii=False).encode("utf-8")) <= WHOLE_UP_TO:
        return [whole]
    pieces = chunks(data, CHUNK_BYTES)
    return [
        {"sha256": digest, "chunk": index, "of": len(pieces),
         "data": base64.b64encode(piece).decode("ascii"), **extra}
        for index, piece in enumerate(pieces)
    ]  # fmt: skip
