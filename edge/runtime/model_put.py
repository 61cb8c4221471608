"""``model put``: a new model file for an ``onnx`` detector, sent in signed chunks, stored
beside the configured model and started in shadow.

    {"detector": "bearing-anomaly", "action": "put",
     "sha256": "<hex of the whole file>", "chunk": 0, "of": 2, "data": "<base64>"}

The chunks wait in ``<state_dir>/model-upload/`` (:mod:`edge.runtime.uploads`, as a
config's do). The one that completes the file, when the bytes hash to ``sha256``, has it
written as ``<sha256[:12]>.onnx`` in the configured model's directory (a synced temporary
file renamed into place, so a power cut leaves the whole file or none) and started in shadow
exactly as ``{"action": "shadow", "path": "<sha12>.onnx"}`` would. A file the detector
refuses is removed again: only models that ran in shadow stay on the device.

Runs on the command worker; only the shadow's start happens on the sampling thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.runtime.uploads import Piece, Uploads, read_piece
from edge.uplink.commands import CommandRefused, on_sampler, shown
from models.shipped import model_path

if TYPE_CHECKING:
    from models.onnx_detector import OnnxDetector

Post = Callable[[Callable[[], None]], None]
# Sent through the command channel at 6 KiB a chunk: a few MiB is already hundreds of
# commands; a bigger model goes with a bundle. The detector's max_model_bytes may be lower.
MAX_PUT_BYTES = 4 * 1024 * 1024
UPLOADS = "model-upload"  # the directory, in the state directory, chunks wait in
PUT_KEYS = frozenset({"detector", "action", "sha256", "chunk", "of", "data"})


def put_limit(detector: OnnxDetector) -> int:
    return min(MAX_PUT_BYTES, detector.params.max_model_bytes)


def read_put(args: Mapping[str, Any], limit: int) -> Piece:
    """A ``model put`` chunk's arguments, checked; ``CommandRefused`` says what is wrong."""
    unknown = sorted(set(args) - PUT_KEYS)
    if unknown:
        raise CommandRefused(
            f"unknown argument(s) {shown(', '.join(unknown))} for put"
            f" (expected {', '.join(sorted(PUT_KEYS))})"
        )
    return read_piece(args, limit=limit, what="model")


def stored_name(sha256: str) -> str:
    """The file name a put model gets: its sha256's first 12 hex digits."""
    return f"{sha256[:12]}.onnx"


class ModelPuts:
    """``model put`` for the runtime's onnx detectors; chunks in ``<state_dir>/model-upload/``.

    Used on the command worker only; ``post`` hands work to the sampling thread."""

    def __init__(self, state_dir: str | Path, post: Post) -> None:
        self.directory = Path(state_dir) / UPLOADS
        self.post = post

    def put(self, detector: OnnxDetector, args: Mapping[str, Any]) -> dict[str, Any]:
        limit = put_limit(detector)
        piece = read_put(args, limit)
        uploads = Uploads(self.directory, limit=limit, what="model")
        data = uploads.add(piece)
        if data is None:
            return {"received": piece.index, "of": piece.of, "missing": uploads.missing(piece)}
        path, written = self._store(detector, data, piece.sha256)
        prepared = detector.prepare(str(path))  # the disk work, here on the worker
        result = on_sampler(self.post, lambda: detector.adopt(prepared, shadow=True))
        if not result.accepted and written:
            path.unlink(missing_ok=True)  # refused: nothing a later command could pick up
        return {
            "received": piece.index,
            "of": piece.of,
            "missing": 0,
            "stored": path.name if result.accepted else None,
            "accepted": result.accepted,
            "reason": result.reason,
            "model": result.name,
            "version": result.version,
            "sha256": piece.sha256,
        }

    def _store(self, detector: OnnxDetector, data: bytes, sha256: str) -> tuple[Path, bool]:
        """Write ``data`` beside the configured model as ``<sha12>.onnx``; the path, and
        whether it was written (False: the same bytes were there already)."""
        configured = model_path(detector.params.model)
        path = configured.parent / stored_name(sha256)
        with contextlib.suppress(OSError):
            if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
                return path, False
        if path.exists() and path.resolve() == configured.resolve():
            # Only a file that merely shares the name: never overwrite the configured model.
            raise CommandRefused(f"{path} is the configured model and holds other bytes")
        temporary = path.with_name(f".{path.name}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
            _sync_directory(path.parent)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise CommandRefused(f"cannot write {path}: {exc.strerror or exc}") from None
        return path, True


def _sync_directory(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
