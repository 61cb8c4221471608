"""Fuzz: config and scenario TOML built from hostile pieces, through ``edge check-config``.

Each case writes a file and runs ``edge.cli.main(["check-config", FILE])`` in-process: the
answer is exit 0 (a summary) or exit 2 (one ``error:`` line per problem), never anything
else and never a traceback. The pieces: a valid base, then sections, sensors, detectors and
a ``[simulation]`` table whose keys are the real ones or any unicode, holding values of the
wrong type, integers past every limit, floats that are not numbers, strings with control
characters, surrogates and non-characters, and arrays or inline tables nested up to
thousands deep; sometimes the text is cut or has bytes spliced in.

Also properties of the small validators: the topic-level check against a reference
predicate, and ``hide_password`` for any password.
"""

from __future__ import annotations

import dataclasses
import math
import random
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.secrets import hide_password
from edge.config.validation import mqtt_text, topic_level, topic_prefix
from models import DETECTOR_TYPES
from sensors import SENSOR_TYPES
from tests.oracles import has_traceback, run_cli

pytestmark = pytest.mark.fuzz

BASE = '[device]\nid = "d1"\n\n[uplink]\nbroker = "mqtt://localhost"\n'
SECTIONS = {
    "device": ["id", "rtc"],
    "storage": ["state_dir", "durability", "commit_window_ms", "max_bytes", "max_events",
                "critical_reserve", "keep_delivered", "ttl_info", "full_output"],
    "uplink": ["broker", "client_id", "topic_prefix", "qos", "keepalive", "inflight",
               "protocol", "username", "password_env", "allow_plaintext_password", "ca_file",
               "backoff_min", "backoff_max", "max_rate"],
    "commands": ["enabled", "allow_unsigned", "max_age", "key_env"],
    "simulation": ["duration", "speed", "seed", "start", "signals", "presses", "injections",
                   "random_presses"],
}  # fmt: skip
SENSOR_KEYS = sorted(
    {"id", "type", "interval", "telemetry", "stuck_after", "retry_max", "filters"}
    | {f.name for kind in SENSOR_TYPES.values() for f in dataclasses.fields(kind.params)}
)
DETECTOR_KEYS = sorted(
    {"id", "sensor", "type", "quantity", "inputs"}
    | {f.name for kind in DETECTOR_TYPES.values() for f in dataclasses.fields(kind.params)}
    - {"model", "shadow"}  # file paths: a fuzzed one could name a real, huge file
)

HOSTILE_CHARS = "\x00\x01\x1f\x7f\x80\x85\x9f\ufdd0\ufffe\uffff\U0010ffff\ud800$/+# \t\n\"'\\"

WORDS = [
    "mqtt://h",
    "mqtts://h:8883",
    "mqtt://u:p/w@h",
    "$SYS",
    "a/b",
    "full",
    "gpio.edge",
    "i2c.tmp102",
    "threshold",
    "zscore",
    "1970-01-01T00:00:00Z",
    "d1",
    "t",
    "",
    "x" * 65,
]
# Values as TOML text: a pool of hostile ones, plus generated strings, numbers and nesting.
POOL = [
    "true", "0", "-1", "1e309", "-0.0", "nan", "inf", "-inf", "0x76", "0o17", "0b1",
    str(2**63), str(2**64), "1" + "0" * 4400,  # past int()'s digit limit: tomllib refuses it
    "1979-05-27T07:32:00Z", "07:32:00", "[]", "{}", "[1, 2, 3]", '["a", 1, true]',
    "[[1], [2, [3]]]", '{id = "x", type = "gpio.edge", pin = 5}', "[{}, {a = 1}]",
    '"\\u0000"', '"\\uD800"', '"a\\nb"', "'literal\\'", '"""multi\nline"""',
]  # fmt: skip
DEPTHS = [*range(1, 41), 300, 1000, 3000]  # nested far past what recursion handles


def hostile_text(rnd: random.Random) -> str:
    """Words that mean something, or a few characters from anywhere in Unicode, mostly
    the ones brokers refuse."""
    if rnd.random() < 0.3:
        return rnd.choice(WORDS)
    pick = [
        lambda: rnd.choice(HOSTILE_CHARS),
        lambda: chr(rnd.randrange(0x20, 0x7F)),
        lambda: chr(rnd.randrange(0x110000)),
    ]
    return "".join(rnd.choice(pick)() for _ in range(rnd.randrange(13)))


def toml_value(rnd: random.Random) -> str:
    kind = rnd.randrange(7)
    if kind == 0:
        return rnd.choice(POOL)
    if kind == 1:
        return toml_string(hostile_text(rnd))
    if kind == 2:
        return str(rnd.choice([rnd.randrange(-300, 300), rnd.getrandbits(80) - 2**79]))
    if kind == 3:
        return toml_float(rnd.choice([rnd.uniform(-1e6, 1e6), rnd.expovariate(1e-9), 1e-320]))
    if kind == 4:
        return "[" + ", ".join(rnd.choice(POOL) for _ in range(rnd.randrange(4))) + "]"
    depth = rnd.choice(DEPTHS)
    if kind == 5:
        return "[" * depth + "]" * depth
    return "{a=" * depth + "1" + "}" * depth


def toml_string(text: str) -> str:
    """A TOML basic string; control characters and surrogates escaped (a surrogate escape
    is invalid TOML, which is hostile input too)."""
    out = []
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_float(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def entries(rnd: random.Random, keys: list[str]) -> str:
    """Lines ``key = value``: real keys (mostly), hostile values."""
    chosen: dict[str, str] = {}
    for _ in range(rnd.randrange(5)):
        key = rnd.choice(keys) if rnd.random() < 0.8 else hostile_text(rnd) or "k"
        chosen[toml_key(key)] = toml_value(rnd)
    return "\n".join(f"{key} = {value}" for key, value in chosen.items())


def document(rnd: random.Random) -> str:
    """A config or scenario file: the base, sections, sensors and detectors, hostile keys
    and values; one in ten is cut or has characters spliced in."""
    parts = [BASE if rnd.random() < 0.6 else ""]
    for section in rnd.sample(sorted(SECTIONS), rnd.randrange(4)):
        parts.append(f"\n[{section}]\n{entries(rnd, SECTIONS[section])}\n")
    for _ in range(rnd.randrange(3)):
        kind = rnd.choice(sorted(SENSOR_TYPES))
        parts.append(f'\n[[sensors]]\ntype = "{kind}"\n{entries(rnd, SENSOR_KEYS)}\n')
    for _ in range(rnd.randrange(2)):
        kind = rnd.choice(sorted(k for k in DETECTOR_TYPES if k != "onnx"))
        parts.append(f'\n[[detectors]]\ntype = "{kind}"\n{entries(rnd, DETECTOR_KEYS)}\n')
    text = "".join(parts)
    if rnd.random() < 0.1 and text:
        at = rnd.randrange(len(text) + 1)
        text = text[:at] + hostile_text(rnd) + text[at + rnd.randrange(4) :]
    return text


# One seeded generator per case: building a document from hypothesis draws cost ~10 ms a
# case, this ~0.1 ms, and a failure still reproduces from hypothesis's seed and prints the
# document.
documents = st.randoms(use_true_random=True).map(document)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as directory:
        yield Path(directory)


@given(text=documents)
def test_check_config_answers_0_or_2_and_never_a_traceback(scratch: Path, text: str) -> None:
    path = scratch / "edge.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    code, printed = run_cli(["check-config", str(path)])
    assert code in (0, 2), printed
    assert not has_traceback(printed)
    if code == 2:
        lines = printed.splitlines()
        assert lines and all(line.startswith(f"error: {path}") for line in lines), printed


def refused_by_brokers(char: str) -> bool:
    """Reference predicate: what Mosquitto refuses in any MQTT string."""
    code = ord(char)
    return (
        unicodedata.category(char) in ("Cc", "Cs")
        or 0xFDD0 <= code <= 0xFDEF
        or code & 0xFFFE == 0xFFFE
    )


level_text = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=st.sampled_from(HOSTILE_CHARS + "ab-_.é\u3000\u2028"), max_size=70),
    st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF), max_size=8),
)


@given(level_text)
def test_topic_level_refuses_exactly_what_a_level_may_not_hold(text: str) -> None:
    fine = 1 <= len(text) <= 64 and not any(
        c in "/+#" or c.isspace() or refused_by_brokers(c) for c in text
    )
    assert (topic_level(text) is None) == fine
    assert (mqtt_text(text) is None) == (not any(refused_by_brokers(c) for c in text))


@given(st.lists(level_text, min_size=1, max_size=4))
def test_topic_prefix_is_good_levels_not_starting_with_dollar(levels: list[str]) -> None:
    prefix = "/".join(levels)
    parts = prefix.split("/")  # a drawn level may hold '/' itself
    fine = not prefix.startswith("$") and all(topic_level(level) is None for level in parts)
    assert (topic_prefix(prefix) is None) == fine


@given(
    user=st.text(alphabet=st.characters(blacklist_characters=":@/"), max_size=8),
    password=st.text(min_size=1, max_size=20),
    host=st.sampled_from(["broker", "10.0.0.1:1883", "[::1]:8883"]),
    scheme=st.sampled_from(["mqtt://", "mqtts://", ""]),
)
def test_hide_password_never_shows_the_password(
    user: str, password: str, host: str, scheme: str
) -> None:
    assert hide_password(f"{scheme}{user}:{password}@{host}") == f"{scheme}{user}:***@{host}"
