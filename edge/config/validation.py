"""Validate TOML tables into frozen dataclasses, collecting every problem with its key path.

A section or a sensor type declares its parameters as a frozen dataclass; this module reads
the field annotations (int, float, bool, str, Literal[...], X | None, tuple[X, ...], and
tuple[SomeParams, ...] for an array of tables, each validated in turn) and the field metadata
("min", "max", "choices", "hex", "doc", "check"; "expects" words what a "check" accepts for
the reference tables) and coerces a table into an instance, or records problems of the form
``file: key.path: expected ..., found ...``. A "check" judges one value: on a field that
takes a list (``str | tuple[str, ...]``) it judges each item, and a problem names the
item's index (``uplink.broker[1]``). Cross-field rules
live in the dataclass's ``__post_init__`` and raise ValueError; they are reported against
the table.

An integer field with ``"choices"`` takes only those values; one marked ``"hex": True`` (an
I2C address, a register) is written in hex wherever a message or the reference shows it:
``sensors[0].address: expected 0x76 or 0x77, found 0x48``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args, get_origin

from sensors.ports import hex_text

T = TypeVar("T")

# What an MQTT broker refuses in any UTF-8 string of a packet (Mosquitto drops the connection,
# and a device that reconnects with the same id is dropped again, for good): C0 and C1
# control characters, DEL, surrogates and the Unicode non-characters (U+FDD0-U+FDEF, and the
# last two code points of every plane).
_NOT_MQTT_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(chr(plane | 0xFFFE) + chr(plane | 0xFFFF) for plane in range(0, 0x110000, 0x10000))
    + "]"
)
# In one topic level also the separator, the wildcards and whitespace.
_NOT_IN_TOPIC_LEVEL = re.compile(r"[/+#\s]")

# A field's "check" metadata: returns an error text ("expected ...") or None when fine.
Check = Callable[[Any], str | None]


class KeyProblems(ValueError):
    """Cross-field rules broken, each reported at its own key: ``[(key, message), ...]``.

    A ``__post_init__`` raises this rather than a plain ValueError when a rule is about
    particular keys, so the message names their paths, not just the table's.
    """

    def __init__(self, items: typing.Sequence[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{key}: {message}" for key, message in items))
        self.items = list(items)


@dataclass
class Problems:
    """Every problem found in one file, in the order found."""

    source: str
    items: list[str] = field(default_factory=list)

    def add(self, path: str, message: str) -> None:
        where = f"{self.source}: {path}" if path else self.source
        self.items.append(f"{where}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)


def describe(value: Any) -> str:
    """How a found value reads in an error message: its TOML type and, if short, its value."""
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        dict: "table",
        list: "array",
    }.get(type(value), type(value).__name__)
    try:
        text = repr(value)
    except ValueError:  # an integer past Python's int-to-str digit limit
        return kind
    except RecursionError:  # arrays nested nearly as deep as the parser allows
        return kind
    return f"{kind} {text}" if len(text) <= 40 else kind


def _number(value: Any, meta: Mapping[str, Any]) -> str:
    """A bound or a choice of a field, in hex when the field is marked so."""
    if meta.get("hex") and isinstance(value, int) and not isinstance(value, bool):
        return hex_text(value)
    return str(value)


def _found(value: Any, meta: Mapping[str, Any]) -> str:
    """How the value found reads in a message: a hex field's integer in hex, bare."""
    if meta.get("hex") and isinstance(value, int) and not isinstance(value, bool):
        text = hex_text(value)  # no digit limit in hex, unlike decimal
        return text if len(text) <= 40 else "integer"
    return describe(_shown(value, meta))


def either(items: typing.Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def unknown_key(problems: Problems, path: str, key: str, known: typing.Iterable[str]) -> None:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f" (known keys: {', '.join(known)})"
    problems.add(join(path, key), f"unknown key{hint}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _expected(annotation: Any, meta: Mapping[str, Any]) -> str:
    """Human text for what a field accepts."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        return " or ".join(_expected(a, meta) for a in options)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin is tuple:
        if _table_items(annotation) is not None:
            return "an array of tables"
        item = _expected(get_args(annotation)[0], {}).removeprefix("a ").removeprefix("an ")
        return f"a list of {item}s"
    choices = meta.get("choices")
    if choices:
        return either([_number(c, meta) for c in choices])
    low, high = (_number(meta[k], meta) if k in meta else None for k in ("min", "max"))
    name = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        annotation, str(annotation)
    )
    if low is not None and high is not None:
        return f"{name} from {low} to {high}"
    if low is not None:
        return f"{name} >= {low}"
    if high is not None:
        return f"{name} <= {high}"
    return name


def _coerce(value: Any, annotation: Any, meta: Mapping[str, Any]) -> tuple[bool, Any]:
    """(ok, coerced value) for one field's annotation."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in get_args(annotation):
            if option is type(None):
                continue
            ok, coerced = _coerce(value, option, meta)
            if ok:
                return True, coerced
        return False, None
    if origin is Literal:
        return (value in get_args(annotation) and type(value) is not bool), value
    if origin is tuple:  # tuple[X, ...]: a TOML array of X, kept immutable
        if not isinstance(value, list):
            return False, None
        items = [_coerce(item, get_args(annotation)[0], meta) for item in value]
        return all(ok for ok, _ in items), tuple(item for _, item in items)
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        choices = meta.get("choices")
        return ok and _in_range(value, meta) and (not choices or value in choices), value
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            number = float(value) if ok else None
        except OverflowError:  # an integer too large for a float
            return False, None
        return ok and value == value and _in_range(value, meta), number
    if annotation is str:
        return isinstance(value, str), value
    raise TypeError(f"validation does not support the annotation {annotation!r}")


def _table_items(annotation: Any) -> type | None:
    """The dataclass of a ``tuple[SomeParams, ...]`` field (an array of tables), else None."""
    if get_origin(annotation) is not tuple:
        return None
    item = get_args(annotation)[0]
    return item if isinstance(item, type) and dataclasses.is_dataclass(item) else None


def _tables(
    cls: type, value: Any, path: str, problems: Problems, meta: Mapping[str, Any]
) -> tuple[bool, tuple[Any, ...]]:
    """An array of tables, each validated into ``cls`` with its own key path
    (``sensors[0].channels[2].max``)."""
    if not isinstance(value, list):
        problems.add(path, f"expected an array of tables, found {_found(value, meta)}")
        return False, ()
    built = [build(cls, item, join(path, i), problems) for i, item in enumerate(value)]
    return all(item is not None for item in built), tuple(built)


def _shown(value: Any, meta: Mapping[str, Any]) -> Any:
    """The value as an error message may show it: a field's "redact" hides secrets, in
    each item of a list too."""
    redact: Callable[[Any], Any] | None = meta.get("redact")
    if redact is None:
        return value
    return [redact(item) for item in value] if isinstance(value, list) else redact(value)


def _checked(check: Check, coerced: Any, value: Any, meta: Mapping[str, Any]) -> bool:
    """Whether a field's "check" passes: on the value, or on each item of a list (a check
    is written for one item; a ``str | tuple[str, ...]`` field takes one or a list)."""
    items = coerced if isinstance(coerced, tuple) and isinstance(value, list) else (coerced,)
    return not any(check(item) for item in items)


def _check_problems(
    problems: Problems, path: str, check: Check, coerced: Any, value: Any, meta: Mapping[str, Any]
) -> None:
    """Record what a field's "check" says: at the field, or at each bad item's index
    (``uplink.broker[1]``)."""
    if not (isinstance(coerced, tuple) and isinstance(value, list)):
        problems.add(path, f"expected {check(coerced)}, found {_found(value, meta)}")
        return
    for index, item in enumerate(coerced):
        message = check(item)
        if message:
            problems.add(
                join(path, index), f"expected {message}, found {_found(value[index], meta)}"
            )


def _in_range(value: float, meta: Mapping[str, Any]) -> bool:
    low, high = meta.get("min"), meta.get("max")
    return (low is None or value >= low) and (high is None or value <= high)


def build(
    cls: type[T],
    table: Any,
    path: str,
    problems: Problems,
    *,
    skip: typing.Collection[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> T | None:
    """Validate ``table`` into ``cls``; None (and problems recorded) when it does not fit.

    ``skip`` names keys of the table that the caller handles itself; ``extra`` supplies
    field values that do not come from the table.
    """
    if not isinstance(table, dict):
        problems.add(path, f"expected a table, found {describe(table)}")
        return None
    hints = typing.get_type_hints(cls, include_extras=False)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    supplied = dict(extra or {})
    values: dict[str, Any] = {}
    count = len(problems.items)
    for key, value in table.items():
        if key in skip:
            continue
        retired = getattr(cls, "RETIRED", {})
        if key in retired and key not in fields:
            problems.add(join(path, key), f"no longer a setting: {retired[key]}")
            continue
        if key not in fields or key in supplied:
            unknown_key(problems, path, key, [*(k for k in fields if k not in supplied), *skip])
            continue
        meta = fields[key].metadata
        items = _table_items(hints[key])
        if items is not None:
            ok, tables = _tables(items, value, join(path, key), problems, meta)
            if ok:
                values[key] = tables
            continue
        ok, coerced = _coerce(value, hints[key], meta)
        if not ok:
            found = _found(value, meta)
            problems.add(join(path, key), f"expected {_expected(hints[key], meta)}, found {found}")
            continue
        check: Check | None = meta.get("check")
        if check and coerced is not None and not _checked(check, coerced, value, meta):
            _check_problems(problems, join(path, key), check, coerced, value, meta)
            continue
        values[key] = coerced
    for name, f in fields.items():
        if name in table or name in supplied:  # present: valid, or reported above
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required:
            problems.add(
                join(path, name), f"missing; expected {_expected(hints[name], f.metadata)}"
            )
    if len(problems.items) > count:
        return None
    try:
        return cls(**values, **supplied)
    except KeyProblems as exc:
        for key, message in exc.items:
            problems.add(join(path, key), message)
        return None
    except ValueError as exc:
        problems.add(path, str(exc))
        return None


def field_docs(cls: type) -> list[tuple[str, str, str, str]]:
    """(name, expected, default, doc) for each field: the generated tables in docs/."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            hexed = f.metadata.get("hex") and isinstance(f.default, int)
            default = hex_text(f.default) if hexed else repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append(
            # "expects": what a field's "check" accepts, said better than its type says it
            (
                f.name,
                f.metadata.get("expects") or _expected(hints[f.name], f.metadata),
                default,
                f.metadata.get("doc", ""),
            )
        )
    return rows


# What an id may be.
ID = "1-64 characters without '/', '+', '#', spaces, control characters or non-characters"


def mqtt_text(value: str) -> str | None:
    """Text a broker takes in a packet (a client id, a user name): no control characters,
    surrogates or non-characters."""
    if _NOT_MQTT_TEXT.search(value):
        return "text without control characters or Unicode non-characters"
    return None


def topic_level(value: str) -> str | None:
    """An id that becomes one MQTT topic level: not empty, at most 64 characters, none of
    '/', '+', '#', whitespace, nor anything a broker refuses (``mqtt_text``)."""
    if (
        not value
        or len(value) > 64
        or _NOT_IN_TOPIC_LEVEL.search(value)
        or _NOT_MQTT_TEXT.search(value)
    ):
        return f"{ID} (it becomes an MQTT topic level)"
    return None


def topic_prefix(value: str) -> str | None:
    """The first topic level(s): valid levels joined by '/', not starting with '$' (a broker
    keeps '$' topics, such as $SYS, for itself: it acknowledges a publish there and
    delivers it to no one, so the outbox would delete events nobody received)."""
    levels = value.split("/")
    if not value or value.startswith("$") or any(topic_level(level) for level in levels):
        return (
            "topic levels separated by '/', not starting with '$', without '+', '#', spaces,"
            " control characters, non-characters or empty levels"
        )
    return None
