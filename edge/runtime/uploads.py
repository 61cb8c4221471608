"""Files that arrive as signed chunks: a config (``config`` command) or a model (``model put``).

Each chunk names the sha256 of the whole file, its index and the number of chunks, and
carries its bytes as base64::

    {"sha256": "<hex>", "chunk": 0, "of": 3, "data": "<base64>"}

Chunks may come in any order, and a chunk sent again replaces itself; they wait in a
directory of the state directory until every one has arrived, and the file is handed over
only when the bytes put together hash to that sha256. Everything here is refused with a
reason that says what was expected: a ``CommandRefused``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from edge.uplink.commands import CommandRefused, shown

MAX_CHUNKS = 1024
SHA256 = re.compile(r"[0-9a-f]{64}")
CHUNK_BYTES = 6_144  # raw bytes a chunk carries: 8 KiB of base64, well under max_size


@dataclass(frozen=True)
class Piece:
    """One chunk: bytes ``index`` of ``of`` of the file whose sha256 is ``sha256``."""

    sha256: str
    index: int
    of: int
    data: bytes


def read_sha256(given: Any, what: str) -> str:
    """``given`` as a lowercase hex sha256; refused unless it is one."""
    if not isinstance(given, str) or not SHA256.fullmatch(given.lower()):
        raise CommandRefused(f"sha256 must be 64 hex digits (the {what}'s sha256)")
    return given.lower()


def read_piece(args: Mapping[str, Any], *, limit: int, what: str) -> Piece:
    """The ``sha256``, ``chunk``, ``of`` and ``data`` of a chunk, checked; ``what`` names
    the file in refusals ("config", "model") and ``limit`` is its largest size in bytes."""
    sha256 = read_sha256(args.get("sha256"), what)
    index, of = args.get("chunk"), args.get("of")
    if not _integer(of) or not 1 <= of <= MAX_CHUNKS:
        raise CommandRefused(f"of must be the number of chunks, 1 to {MAX_CHUNKS}, got {got(of)}")
    if not _integer(index) or not 0 <= index < of:
        raise CommandRefused(f"chunk must be an index from 0 to {of - 1}, got {got(index)}")
    encoded = args.get("data")
    if not isinstance(encoded, str) or not encoded:
        raise CommandRefused("data must be the chunk's bytes as base64 text")
    if len(encoded) > limit * 4 // 3 + 4:
        raise CommandRefused(f"a {what} is at most {limit} bytes")
    try:
        data = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise CommandRefused("data must be base64 (A-Z a-z 0-9 + /, = padding)") from None
    return Piece(sha256, index, of, data)


def got(value: Any) -> str:
    """A value the sender gave, as a refusal shows it: escaped, cut short."""
    return shown(repr(value))


def _integer(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class Uploads:
    """The chunks of the file being uploaded into ``directory``, one upload at a time (a
    chunk of another upload drops the unfinished one's); ``limit`` bytes at most, ``what``
    names the file in refusals.

    Used on the command worker only. A chunk is a file named ``<sha256>-<of>-<index>``;
    a restart of the runtime (or a power cut) keeps what arrived."""

    def __init__(self, directory: Path, *, limit: int, what: str) -> None:
        self.directory = directory
        self.limit = limit
        self.what = what

    def add(self, chunk: Piece) -> bytes | None:
        """Keep a chunk; the whole file's bytes once the last one is in (and the parts
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
        size = len(chunk.data) + sum(p.stat().st_size for i, p in parts.items() if i != chunk.index)
        if size > self.limit:
            self.clear()
            raise CommandRefused(f"a {self.what} is at most {self.limit} bytes: upload dropped")
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

    def missing(self, chunk: Piece) -> int:
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


def chunk_args(
    data: bytes, extra: Mapping[str, Any], size: int = CHUNK_BYTES
) -> list[dict[str, Any]]:
    """The arguments of the commands that send ``data`` in chunks, one per chunk, each with
    ``extra`` (the command's other arguments) beside the chunk's."""
    digest = hashlib.sha256(data).hexdigest()
    pieces = chunks(data, size)
    return [
        {**extra, "sha256": digest, "chunk": index, "of": len(pieces),
         "data": base64.b64encode(piece).decode("ascii")}
        for index, piece in enumerate(pieces)
    ]  # fmt: skip
