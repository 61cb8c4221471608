"""The command key: hex text, read exactly, from a file only its owner can read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.command_key import CommandKeyError, parse_key, read_key_env, read_key_file
from edge.config.device import CommandsConfig


def key_file(tmp_path: Path, data: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "command.key"
    path.write_bytes(data)
    path.chmod(mode)
    return path


@given(st.binary(min_size=16, max_size=64), st.sampled_from([b"", b"\n", b"\r\n"]))
def test_hex_text_is_read_exactly(key: bytes, end: bytes) -> None:
    assert parse_key(key.hex().encode() + end, "k") == key
    assert parse_key(key.hex().upper().encode() + end, "k") == key


@given(st.binary(min_size=32, max_size=32))
def test_a_binary_key_file_is_refused_never_shortened(raw: bytes) -> None:
    # Before, a binary file was .strip()ped: keys starting or ending in whitespace bytes
    # were silently shortened. Raw bytes are not the format: refused, unless they happen to
    # be hex text.
    try:
        key = parse_key(raw, "k")
    except CommandKeyError as exc:
        assert raw.hex() not in str(exc)  # the key is never echoed
    else:
        assert key == bytes.fromhex(raw.rstrip(b"\n").rstrip(b"\r").decode())


def test_a_short_odd_or_padded_key_is_refused(tmp_path: Path) -> None:
    for text, reason in [
        (b"", "hex text"),
        (b"  \n", "hex text"),
        (b"ab" * 15 + b"\n", "at least 16 bytes"),
        (b"a" * 33, "odd number"),
        (b" " + b"ab" * 16, "hex text"),
        (b"ab" * 16 + b"\n\n", "hex text"),
        (b"ab" * 2049, "more than 4096 bytes"),  # never cut to the first 4096
    ]:
        with pytest.raises(CommandKeyError, match=reason):
            read_key_file(key_file(tmp_path, text))


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = key_file(tmp_path, b"ab" * 16 + b"\n", mode=0o644)
    with pytest.raises(CommandKeyError, match=f"chmod 600 {path}"):
        CommandsConfig(enabled=True, key_file=str(path)).key()
    path.chmod(0o600)
    assert CommandsConfig(enabled=True, key_file=str(path)).key() == b"\xab" * 16


def test_the_key_from_the_environment_is_hex_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_KEY", "x" * 32)
    with pytest.raises(CommandKeyError, match="EDGE_KEY: expected hex text"):
        read_key_env("EDGE_KEY")
    monkeypatch.setenv("EDGE_KEY", "0f" * 16)
    assert CommandsConfig(enabled=True, key_env="EDGE_KEY").key() == b"\x0f" * 16
    monkeypatch.delenv("EDGE_KEY")
    with pytest.raises(CommandKeyError, match="not set"):
        read_key_env("EDGE_KEY")


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CommandKeyError, match=f"{tmp_path / 'none'}: cannot read"):
        read_key_file(tmp_path / "none")
    assert not os.path.exists(tmp_path / "none")
