"""Verdicts from the cloud side, for many devices: a CSV file sent as signed ``label`` commands.

The file has a header row naming its columns: ``device``, ``seq``, ``verdict`` and
optionally ``note``, ``detector``, ``side`` and ``stream`` (the ``label`` command's
arguments, see docs/control.md)::

    device,seq,verdict,note
    press-line-3,4711,false_alarm,door left open
    press-line-4,88,true_alarm,

Each row goes to its device as one ``label`` command signed with ``keys/<device>.key``, one
at a time (the answer tells whether it was stored). A row that cannot be read is a problem
named by its line before anything is sent.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config.command_key import CommandKeyError, read_key_file
from edge.errors import UplinkError

COLUMNS = ("device", "seq", "verdict", "note", "detector", "side", "stream")
REQUIRED = ("device", "seq", "verdict")

# (device, key, args) -> the device's reply: send_command, bound to a broker and a login.
Send = Callable[[str, bytes, Mapping[str, Any]], Mapping[str, Any]]


@dataclass(frozen=True)
class LabelRow:
    line: int
    device: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    row: LabelRow
    ok: bool
    answer: str  # the reply's result as JSON, or the reason it failed


def read_rows(path: str | Path) -> tuple[list[LabelRow], list[str]]:
    """The rows of a verdicts file, and one problem per bad line (``file:line: reason``)."""
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            missing = [c for c in REQUIRED if c not in header]
            unknown = [c for c in header if c not in COLUMNS]
            if missing or unknown:
                wrong = f"missing {', '.join(missing)}" if missing else f"unknown {unknown[0]!r}"
                return [], [f"{path}:1: header must name {', '.join(REQUIRED)} ({wrong})"]
            rows = [_row(path, reader.line_num, raw, problems) for raw in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [], [f"{path}: cannot read: {exc}"]
    return [row for row in rows if row is not None], problems


def _row(path: str | Path, line: int, raw: dict[str, Any], problems: list[str]) -> LabelRow | None:
    if None in raw:  # more cells than the header names
        problems.append(f"{path}:{line}: more cells than the header has")
        return None
    device, seq = (raw.get("device") or "").strip(), (raw.get("seq") or "").strip()
    if not device:
        problems.append(f"{path}:{line}: device is empty")
        return None
    if not seq.isdigit() or int(seq) < 1:
        problems.append(f"{path}:{line}: seq must be an integer >= 1, got {seq!r}")
        return None
    args: dict[str, Any] = {"seq": int(seq)}
    for column in ("verdict", "note", "detector", "side", "stream"):
        value = raw.get(column)
        if value:  # an empty cell is an argument not given
            args[column] = value
    return LabelRow(line, device, args)


def send_rows(rows: Iterable[LabelRow], keys: Path, send: Send) -> Iterable[Outcome]:
    """Send each row as a ``label`` command; the outcomes in the file's order. The device
    checks the arguments (it answers a bad verdict with the reason)."""
    import json

    for row in rows:
        try:
            key = read_key_file(keys / f"{row.device}.key")
        except CommandKeyError as exc:
            yield Outcome(row, False, f"no command key: {exc}")
            continue
        try:
            reply = send(row.device, key, row.args)
        except UplinkError as exc:  # NoReply, a refused login, a broker not there
            yield Outcome(row, False, str(exc))
            continue
        if reply.get("ok") is True:
            yield Outcome(row, True, json.dumps(reply.get("result", {}), sort_keys=True))
        else:
            yield Outcome(row, False, str(reply.get("error")))
