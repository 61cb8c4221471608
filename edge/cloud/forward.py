"""Forward targets: the ``[[forward]]`` entries of a sink config, validated once.

A target names an HTTP endpoint (``url``, ``method``, ``headers``), which events go to it (a
filter on ``kind``, ``severity``, ``sensor`` and ``device``: lists, empty for all), the body
each one makes (the event's payload, or a JSON ``template`` whose strings name event fields
in braces), and how hard to push (``rate`` and ``burst``: a token bucket; ``max_attempts``,
``timeout``, ``backoff``). ``edge.cloud.forwarder`` sends them.

Header values that are secrets come from the environment (``env:VAR``) or a file only its
owner can read (``file:/path``), as every secret in edgeline does: an ``Authorization``
header (or one whose name says token, secret or key) written inline is refused.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from edge.config.secrets import read_secret_text
from edge.config.validation import Problems, describe, either, join, unknown_key
from edge.errors import ConfigError

# What a template may name, and what the filter may select on.
FIELDS = ("device", "stream", "seq", "ts", "sensor", "kind", "severity", "value", "payload",
          "received_at")  # fmt: skip
FILTERS = {"kinds": "kind", "severities": "severity", "sensors": "sensor", "devices": "device"}
METHODS = ("POST", "PUT", "PATCH")
IDEMPOTENCY_HEADER = "Idempotency-Key"
_SECRET_NAME = re.compile(r"authorization|token|secret|key|password|cookie", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class Event:
    """One stored event as a forwarder reads it: ``id`` is its place in insert order."""

    id: int
    device: str
    stream: str
    seq: int
    ts: str | None
    sensor: str | None
    kind: str | None
    severity: str | None
    value: str | None  # JSON text
    payload: str  # JSON text
    received_at: str

    @property
    def key(self) -> str:
        """The idempotency key: ``device/stream/seq``, the event's identity."""
        return f"{self.device}/{self.stream}/{self.seq}"


@dataclass(frozen=True)
class Target:
    """One ``[[forward]]`` entry, its header secrets resolved."""

    name: str
    url: str
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=dict)
    kinds: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    sensors: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    template: Any = None  # None: the event's payload as the body
    rate: float = 5.0  # requests per second, on average
    burst: int = 10  # requests at once after a quiet spell
    max_attempts: int = 5  # failures (5xx, timeouts, errors) before the dead-letter table
    timeout: float = 10.0  # seconds for a connection, and for the answer
    backoff: float = 1.0  # seconds before the first retry, doubling to backoff_max
    backoff_max: float = 60.0
    start: str = "latest"  # a new target: "latest" (events stored from now) or "earliest"

    def matches(self, event: Event) -> bool:
        """Whether the filter lets ``event`` through (an empty list lets all through)."""
        return all(
            not chosen or getattr(event, column) in chosen
            for chosen, column in (
                (self.kinds, "kind"),
                (self.severities, "severity"),
                (self.sensors, "sensor"),
                (self.devices, "device"),
            )
        )

    def body(self, event: Event) -> bytes:
        """The request body for ``event``: its payload, or the template rendered."""
        if self.template is None:
            return event.payload.encode("utf-8")
        return json.dumps(render(self.template, event), ensure_ascii=True).encode("ascii")


# ---------------------------------------------------------------------------------------------
# templates


def template_problem(template: Any) -> str | None:
    """What is wrong with a template (a placeholder naming no event field, a lone brace, a
    value JSON cannot hold), or None."""
    if isinstance(template, str):
        for match in _PLACEHOLDER.finditer(template):
            text = match.group(0)
            if text in ("{{", "}}"):
                continue
            name = match.group(1)
            if name is None:
                return f"a lone {text!r} in {template!r} (write {text * 2} for the brace itself)"
            if name not in FIELDS:
                return f"{{{name}}} names no event field (known: {', '.join(FIELDS)})"
        return None
    if isinstance(template, dict):
        for key, value in template.items():
            if not isinstance(key, str):
                return f"expected text keys, found {describe(key)}"
            problem = template_problem(key) or template_problem(value)
            if problem:
                return problem
        return None
    if isinstance(template, list):
        for item in template:
            problem = template_problem(item)
            if problem:
                return problem
        return None
    if isinstance(template, float) and not math.isfinite(template):
        return "expected a finite number"
    if template is None or isinstance(template, bool | int | float):
        return None
    return f"expected a table, an array, text, a number or a boolean, found {describe(template)}"


def render(template: Any, event: Event) -> Any:
    """``template`` with every string's ``{field}`` replaced by the event's field as text; a
    string that is one placeholder alone becomes the field's JSON value (``"{value}"`` stays a
    number). The result goes through ``json.dumps``, which escapes whatever a field holds:
    a field's text cannot add keys or break out of its string."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and whole.group(1):
            return _value(event, whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _text(event, m), template)
    if isinstance(template, dict):
        return {render(key, event): render(value, event) for key, value in template.items()}
    if isinstance(template, list):
        return [render(item, event) for item in template]
    return template


def _value(event: Event, name: str) -> Any:
    raw = getattr(event, name)
    if name in ("value", "payload") and raw is not None:
        return json.loads(raw)
    return raw


def _text(event: Event, match: re.Match[str]) -> str:
    if match.group(0) in ("{{", "}}"):
        return match.group(0)[0]
    raw = getattr(event, match.group(1))
    if raw is None:
        return ""
    return raw if isinstance(raw, str) else str(raw)


# ---------------------------------------------------------------------------------------------
# the config file


def load_targets(path: str | Path, env: Mapping[str, str] | None = None) -> list[Target]:
    """The ``[[forward]]`` entries of a sink config; ``ConfigError`` listing every problem."""
    source = str(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not TOML: {exc}"]) from exc
    return parse_targets(data, source, os.environ if env is None else env)


def parse_targets(data: Mapping[str, Any], source: str, env: Mapping[str, str]) -> list[Target]:
    problems = Problems(source)
    for key in data:
        if key != "forward":
            unknown_key(problems, "", key, ["forward"])
    entries = data.get("forward", [])
    if not isinstance(entries, list):
        problems.add("forward", f"expected [[forward]] tables, found {describe(entries)}")
        entries = []
    targets: list[Target] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        target = _target(entry, join("forward", index), problems, env)
        if target is None:
            continue
        if target.name in names:
            problems.add(join(join("forward", index), "name"), f"{target.name!r} twice")
        names.add(target.name)
        targets.append(target)
    if problems:
        raise ConfigError(problems.items)
    return targets


_KEYS = ("name", "url", "method", "headers", *FILTERS, "template", "rate", "burst",
         "max_attempts", "timeout", "backoff", "backoff_max", "start")  # fmt: skip


def _target(entry: Any, path: str, problems: Problems, env: Mapping[str, str]) -> Target | None:
    if not isinstance(entry, dict):
        problems.add(path, f"expected a table, found {describe(entry)}")
        return None
    before = len(problems.items)
    for key in entry:
        if key not in _KEYS:
            unknown_key(problems, path, key, _KEYS)
    values: dict[str, Any] = {}
    name = entry.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        problems.add(join(path, "name"), f"expected 1-64 of A-Za-z0-9_.-, found {describe(name)}")
    values["name"] = name
    url = entry.get("url")
    wrong = url_problem(url)
    if wrong:
        problems.add(join(path, "url"), wrong)
    values["url"] = url
    method = entry.get("method", "POST")
    if method not in METHODS:
        problems.add(join(path, "method"), f"expected {either(METHODS)}, found {describe(method)}")
    values["method"] = method
    values["headers"] = _headers(entry.get("headers", {}), join(path, "headers"), problems, env)
    for key in FILTERS:
        chosen = entry.get(key, [])
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            problems.add(join(path, key), f"expected a list of text, found {describe(chosen)}")
            chosen = []
        values[key] = frozenset(chosen)
    if "template" in entry:
        wrong = template_problem(entry["template"])
        if wrong:
            problems.add(join(path, "template"), wrong)
        values["template"] = entry["template"]
    for key, low, kind in (("rate", 0.0, float), ("burst", 1, int), ("max_attempts", 1, int),
                           ("timeout", 0.0, float), ("backoff", 0.0, float),
                           ("backoff_max", 0.0, float)):  # fmt: skip
        if key not in entry:
            continue
        value = entry[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if kind is int and not isinstance(value, int):
            number = False
        if not number or not math.isfinite(value) or value < low or (low == 0.0 and value == 0):
            more = f"an integer >= {low}" if kind is int else "a number > 0"
            problems.add(join(path, key), f"expected {more}, found {describe(value)}")
            continue
        values[key] = kind(value)
    start = entry.get("start", "latest")
    if start not in ("latest", "earliest"):
        problems.add(join(path, "start"), f"expected latest or earliest, found {describe(start)}")
    values["start"] = start
    if len(problems.items) > before:
        return None
    return Target(**values)


def url_problem(url: Any) -> str | None:
    """What is wrong with a target's URL, or None: http(s) to a host, no password in it."""
    if not isinstance(url, str):
        return f"expected http://host[:port]/path or https://..., found {describe(url)}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"expected http(s)://host[:port]/path ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected http://host[:port]/path or https://..., found {url!r}"
    if parts.password is not None:
        return "a password in the URL: put the credentials in a header from env: or file:"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "expected a URL without spaces or control characters"
    return None


def _headers(table: Any, path: str, problems: Problems, env: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(table, dict):
        problems.add(path, f"expected a table of text, found {describe(table)}")
        return {}
    headers: dict[str, str] = {}
    for name, spec in table.items():
        where = join(path, name)
        if not _HEADER_NAME.fullmatch(name) or name.lower() in ("content-length", "host"):
            problems.add(where, "expected a header name other than Host and Content-Length")
            continue
        if name.lower() == IDEMPOTENCY_HEADER.lower():
            problems.add(where, "set by the forwarder (device/stream/seq), not by the config")
            continue
        if not isinstance(spec, str):
            problems.add(where, f"expected text, env:VAR or file:/path, found {describe(spec)}")
            continue
        value = _header_value(name, spec, where, problems, env)
        if value is not None:
            if any(c in value for c in "\r\n\x00"):
                problems.add(where, "expected one line (no CR, LF or NUL)")
                continue
            headers[name] = value
    return headers


def _header_value(
    name: str, spec: str, where: str, problems: Problems, env: Mapping[str, str]
) -> str | None:
    if spec.startswith("env:"):
        var = spec.removeprefix("env:")
        if var not in env:
            problems.add(where, f"the environment variable {var} is not set")
            return None
        return env[var]
    if spec.startswith("file:"):
        try:
            return read_secret_text(spec.removeprefix("file:"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.add(where, f"cannot read the secret: {exc}")
            return None
    if _SECRET_NAME.search(name):
        problems.add(
            where,
            "a secret written inline: give env:VAR (an environment variable) or file:/path"
            " (a file only its owner can read)",
        )
        return None
    return spec
