"""Fuzz: command-line arguments, in-process through ``edge.cli.main``.

Hostile ``--set``, ``--detector``, ``--sensor`` and ``--quantity`` for ``edge detect`` on a
small CSV, and hostile ``--broker`` URLs (with passwords holding URL delimiters) for
``edge outbox replay`` and ``edge simulate``, which check them before doing anything: exit
0, 1 or 2, never a traceback, never the password.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import DETECTOR_TYPES
from tests.oracles import has_traceback, run_cli

pytestmark = pytest.mark.fuzz

HOSTILE = "\x00\x01\n\r\x7f\x85\u2028\ufdd0\ud800=,.:/@%?#[]{}\"' "
WORDS = ["window", "threshold", "min_std", "warmup", "above", "below", "severity", "nan",
         "inf", "-1", "0", "1e400", "1" + "0" * 5000, "true", "[1, 2]", "{a = 1}", "critical",
         "[" * 3000 + "]" * 3000, "", "x" * 300]  # fmt: skip


def text(rnd: random.Random) -> str:
    if rnd.random() < 0.5:
        return rnd.choice(WORDS)
    pick = [lambda: rnd.choice(HOSTILE), lambda: chr(rnd.randrange(0x110000))]
    return "".join(rnd.choice(pick)() for _ in range(rnd.randrange(10)))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-cli-") as directory:
        path = Path(directory)
        (path / "series.csv").write_text("timestamp,value\n" + "".join(
            f"{t},{t % 7}\n" for t in range(30)
        ))  # fmt: skip
        yield path


def no_surrogates(argv: list[str]) -> list[str]:
    """As a shell would pass them: arguments are text, lone surrogates become escapes."""
    return [arg.encode("utf-8", "backslashreplace").decode("utf-8") for arg in argv]


@given(rnd=st.randoms(use_true_random=True))
def test_detect_arguments_exit_0_1_or_2_without_a_traceback(
    scratch: Path, rnd: random.Random
) -> None:
    detector = rnd.choice([*sorted(k for k in DETECTOR_TYPES if k != "onnx"), text(rnd)])
    argv = ["detect", "--input", str(scratch / "series.csv"), "--detector", detector,
            "--output", str(scratch / "out.csv")]  # fmt: skip
    for _ in range(rnd.randrange(4)):
        argv += ["--set", f"{text(rnd)}={text(rnd)}" if rnd.random() < 0.9 else text(rnd)]
    if rnd.random() < 0.2:
        argv += [rnd.choice(["--sensor", "--quantity"]), text(rnd)]
    code, printed = run_cli(no_surrogates(argv))
    assert code in (0, 1, 2), printed
    assert not has_traceback(printed)


@given(rnd=st.randoms(use_true_random=True))
def test_a_broker_argument_never_shows_its_password(scratch: Path, rnd: random.Random) -> None:
    password = "S3cr" + text(rnd) + "!t"
    host = rnd.choice(["host", "host:1883", "[::1]:99999", "", "h/x", "h?q", "h:port"])
    scheme = rnd.choice(["mqtt://", "mqtts://", "http://", "", "mqtt:/"])
    url = f"{scheme}user:{password}@{host}"
    state = str(scratch / "no-outbox")
    argv = rnd.choice([
        ["outbox", "replay", "--state-dir", state, "--from-seq", "1", "--broker", url],
        ["simulate", "--broker", url, "--duration", "1", "--state-dir", state],
    ])  # fmt: skip
    code, printed = run_cli(no_surrogates(argv))
    assert code == 2, printed  # a URL with a password is refused before anything runs
    assert not has_traceback(printed)
    assert no_surrogates([password])[0] not in printed, printed
    assert len(printed.splitlines()) == 1, printed
