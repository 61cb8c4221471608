"""A fleet's devices, from a CSV file: one row per card, checked whole before anything is
written.

Columns: ``id`` (required: the device id, an MQTT topic level and a directory name),
``hostname`` (optional, default the id; RFC 1123) and ``wifi_ssid`` (optional: this card's
network instead of ``--wifi-ssid``). Rows are numbered as a spreadsheet shows them, the
header being row 1; every problem names its row and column.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from edge.config.validation import topic_level
from edge.errors import UsageError

COLUMNS = ("id", "hostname", "wifi_ssid")
MAX_PROBLEMS = 10  # in one message; the count of the rest follows
MAX_FILE = 1024 * 1024  # a fleet file is rows of short text, never more

_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Device:
    id: str
    hostname: str
    wifi_ssid: str | None = None
    row: int = 0  # in the fleet file, as a spreadsheet numbers it (0: not from one)


def device_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a device id here, or None: the config's rule (an MQTT topic
    level), and a name a directory and a key file can take."""
    if problem := topic_level(value):
        return f"expected {problem}"
    if value in (".", "..") or "\\" in value or value.startswith("-"):
        return "expected an id usable as a file name (not '.', '..', a '\\' or a leading '-')"
    return None


def hostname_problem(value: str) -> str | None:
    """Why ``value`` is not a host name (RFC 1123: dot-separated labels of letters, digits
    and inner hyphens, 1 to 63 characters each, 253 in all), or None."""
    labels = value.split(".")
    if not value or len(value) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return (
            "expected a host name (RFC 1123: letters, digits and inner hyphens, labels of"
            " 1 to 63 characters joined by dots)"
        )
    return None


def ssid_problem(value: str) -> str | None:
    """Why ``value`` is not a Wi-Fi network name (1 to 32 bytes of UTF-8, no control
    characters), or None."""
    if not value or len(value.encode("utf-8", "surrogatepass")) > 32:
        return "expected an SSID of 1 to 32 bytes"
    if not value.isprintable() or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return "expected an SSID without control characters"
    return None


def read_fleet(path: Path) -> list[Device]:
    """The devices in the CSV file at ``path``; UsageError listing every problem."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE + 1)
    except OSError as exc:
        raise UsageError(f"--fleet: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE:
        raise UsageError(f"--fleet: {path} is larger than {MAX_FILE} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--fleet: {path} is not UTF-8 text ({exc.reason})") from None
    return parse_fleet(text, str(path))


def parse_fleet(text: str, source: str = "<fleet>") -> list[Device]:
    """The devices in CSV ``text``; UsageError listing every problem with its row."""
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UsageError(f"{source}: not a CSV file ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise UsageError(f"{source}: no header row (expected columns {', '.join(COLUMNS)})")
    header = [cell.strip() for cell in rows[0]]
    problems = [
        f"{source} row 1: unknown column {name!r} (expected {', '.join(COLUMNS)})"
        for name in header
        if name not in COLUMNS
    ]
    problems += [
        f"{source} row 1: column {name!r} appears twice"
        for name in sorted({n for n in header if header.count(n) > 1})
    ]
    if "id" not in header:
        problems.append(f"{source} row 1: no id column (expected {', '.join(COLUMNS)})")
    if problems:
        raise UsageError("; ".join(problems))
    devices: list[Device] = []
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        where = f"{source} row {number}"
        if len(row) > len(header):
            problems.append(f"{where}: {len(row)} values for {len(header)} columns")
            continue
        values = {name: cell.strip() for name, cell in zip(header, row, strict=False)}
        device_id = values.get("id", "")
        row_problems = []
        if problem := device_id_problem(device_id):
            row_problems.append(f"{where}, column id: {problem}, found {device_id!r}")
        elif device_id in first_row:
            row_problems.append(
                f"{where}, column id: {device_id!r} again (first in row {first_row[device_id]})"
            )
        else:
            first_row[device_id] = number
        hostname = values.get("hostname") or device_id
        checked = bool(values.get("hostname")) or not row_problems  # the id, when valid
        if checked and (problem := hostname_problem(hostname)):
            given = "found" if values.get("hostname") else "found the id"
            row_problems.append(f"{where}, column hostname: {problem}, {given} {hostname!r}")
        ssid = values.get("wifi_ssid") or None
        if ssid is not None and (problem := ssid_problem(ssid)):
            row_problems.append(f"{where}, column wifi_ssid: {problem}, found {ssid!r}")
        problems += row_problems
        if not row_problems:
            devices.append(Device(device_id, hostname, ssid, number))
    if not problems and not devices:
        problems.append(f"{source}: no devices (one row per device after the header)")
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append(f"and {len(problems) - MAX_PROBLEMS} more")
        raise UsageError("; ".join(shown))
    return devices
