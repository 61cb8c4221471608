"""``edge command``: the operator's signer, against a real Mosquitto and a real runtime."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.bench.mosquitto import Mosquitto, free_port
from edge.cli import main
from edge.cli.command import parse_args_list
from edge.clock import RealClock
from edge.uplink.operator import NoReply, send_command
from tests.test_commands_mqtt import DEVICE, KEY, KEY_HEX, Device


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "operator.key"
    path.write_text(KEY_HEX + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def device(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Device]:
    (tmp_path / "device").mkdir()
    # The operator dates commands by the real clock: so does this device.
    clock = RealClock(assume_synced=True)
    running = Device(tmp_path / "device", mosquitto.url, "3.1.1", clock=clock)
    try:
        yield running
    finally:
        running.close()


def until_subscribed(url: str) -> None:
    """The device subscribes to its commands a moment after it starts: ping until it answers."""
    for _ in range(50):
        try:
            assert send_command(url, DEVICE, KEY, "ping", timeout=0.3)["ok"] is True
            return
        except NoReply:
            continue
    raise AssertionError("the device never answered")


def test_edge_command_ping_prints_the_result_and_exits_0(
    device: Device, mosquitto: Mosquitto, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    until_subscribed(mosquitto.url)
    code = main(["command", "--broker", mosquitto.url, "--device", DEVICE, "--key-file",
                 str(key_file), "ping", "--arg", "echo=[1, 2]", "--arg", "note=hello"])  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"pong": True, "echo": [1, 2]}
    code = main(["command", "--broker", mosquitto.url, "--device", DEVICE, "--key-file",
                 str(key_file), "--json", "status"])  # fmt: skip
    reply = json.loads(capsys.readouterr().out)
    assert code == 0 and reply["ok"] is True and "outbox" in reply["result"]


def test_a_refusal_and_silence_exit_1(
    device: Device, mosquitto: Mosquitto, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    until_subscribed(mosquitto.url)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("ab" * 32)
    wrong.chmod(0o600)
    code = main(["command", "--broker", mosquitto.url, "--device", DEVICE, "--key-file",
                 str(wrong), "ping"])  # fmt: skip
    assert code == 1
    assert (
        capsys.readouterr().err.strip() == f"error: {DEVICE} refused ping: refused: bad signature"
    )
    code = main(["command", "--broker", mosquitto.url, "--device", "nobody", "--key-file",
                 str(wrong), "--timeout", "0.5", "ping"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "no reply from device nobody to ping within 0.5 s" in err


def test_bad_arguments_exit_2_one_line_each(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_key = tmp_path / "open.key"
    open_key.write_text(KEY_HEX)
    open_key.chmod(0o644)
    code = main(["command", "--broker", "http://x", "--device", "a/b", "--key-file",
                 str(open_key), "--arg", "novalue", "--timeout", "-1", "bad name"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert [line.split(":")[1].strip() for line in err] == [
        "--broker", "--device", "NAME", "--timeout", "--arg", "--key-file"]  # fmt: skip
    assert f"chmod 600 {open_key}" in err[-1] and KEY_HEX not in err[-1]


def test_broker_login_options_are_checked_as_the_config_checks_them(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = tmp_path / "operator.pw"
    password.write_text("s3cret\n")
    password.chmod(0o600)
    base = ["command", "--device", DEVICE, "--key-file", str(key_file), "ping"]
    code = main([*base, "--broker", "mqtt://127.0.0.1:1", "--password-file", str(password),
                 "--ca-file", str(tmp_path / "ca.pem")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and [line.split(":")[1].strip() for line in err] == [
        "--ca-file", "--password-file"]  # fmt: skip
    assert "clear text" in err[1] and "s3cret" not in "\n".join(err)
    password.chmod(0o644)
    code = main([*base, "--broker", "mqtt://127.0.0.1:1", "--allow-plaintext-password",
                 "--password-file", str(password)])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"chmod 600 {password}" in err[0]


def test_an_unreachable_broker_exits_1(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["command", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--device", DEVICE,
                 "--key-file", str(key_file), "ping"])  # fmt: skip
    assert code == 1 and capsys.readouterr().err.startswith("error: cannot connect")


def test_arg_values_are_json_when_they_parse_else_strings() -> None:
    assert parse_args_list(["n=5", "s=b.onnx", "q=\"5\"", "o={\"a\": null}", "e=", "x=NaN"]) == {
        "n": 5, "s": "b.onnx", "q": "5", "o": {"a": None}, "e": "", "x": "NaN"}  # fmt: skip


def test_text_that_cannot_travel_is_bad_input_not_a_traceback(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found by the fuzz campaign: a lone surrogate (undecodable bytes in argv) in the device
    # id could not be signed and escaped as a UnicodeEncodeError.
    base = ["command", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--key-file", str(key_file)]
    for extra in (["--device", "\udcff"], ["--device", "a\x01"], ["--device", DEVICE,
                  "--prefix", "p\udcff"], ["--device", DEVICE, "--arg", "k=\udcff"]):  # fmt: skip
        code = main([*base, *extra, "ping"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
