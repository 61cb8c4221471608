"""Config and command-line input a broker, an attacker or a slip of the hand makes hostile:
clear-text secrets, ids the broker refuses, passwords in URLs, and files that used to end
in a traceback instead of "exit 2, one line per problem"."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.cloud.sink import Sink
from edge.config.device import parse
from edge.config.secrets import hide_password
from edge.errors import ConfigError
from tests.brokers import publish_many
from tests.test_check_config import edge

MINIMAL = '[device]\nid = "d1"\n\n[uplink]\nbroker = "mqtt://localhost"\n'


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "x.toml")
    return info.value.problems


# --- finding 5: TLS settings and passwords with mqtt:// ---------------------------------------


@pytest.mark.parametrize(
    ("keys", "first"),
    [
        ('ca_file = "/etc/ca.pem"', "ca_file"),
        ('cert_file = "/etc/d.pem"\nkey_file = "/etc/d.key"', "cert_file"),
    ],
)
def test_tls_settings_with_an_mqtt_broker_are_refused(keys: str, first: str) -> None:
    found = problems(MINIMAL + keys + "\n")
    assert found[0] == (
        f"x.toml: uplink.{first}: expected an mqtts:// broker for TLS settings, found broker"
        " 'mqtt://localhost' (no TLS: it would be ignored)"
    )
    assert parse(MINIMAL.replace("mqtt://", "mqtts://") + keys + "\n", "x.toml").uplink.tls


@pytest.mark.parametrize("key", ['password_env = "P"', "password_file = '/nonexistent/pw'"])
def test_a_password_over_mqtt_is_refused_unless_allowed_on_purpose(key: str) -> None:
    [problem] = problems(MINIMAL + key + "\n")
    name = key.split(" ")[0]
    assert problem.startswith(
        f"x.toml: uplink.{name}: expected an mqtts:// broker, found broker 'mqtt://localhost':"
        " the password would travel in clear text (set allow_plaintext_password = true"
    )
    allowed = parse(MINIMAL + key + "\nallow_plaintext_password = true\n", "x.toml")
    assert allowed.uplink.allow_plaintext_password and not allowed.uplink.tls


def test_a_broker_without_a_password_needs_no_tls() -> None:
    assert parse(MINIMAL + 'username = "u"\n', "x.toml").uplink.username == "u"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
def test_a_password_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(mode)
    text = f"{MINIMAL}password_file = '{secret}'\n".replace("mqtt://", "mqtts://")
    [problem] = problems(text)
    assert problem == (
        f"x.toml: uplink.password_file: expected a file only its owner can read or write"
        f" (run: chmod 600 {secret}), found mode {mode:04o}"
    )
    secret.chmod(0o600)
    config = parse(text, "x.toml")
    assert config.uplink.password() == "s3cret"
    secret.chmod(mode)  # loosened after the config was loaded: the read refuses it too
    with pytest.raises(PermissionError, match="chmod 600"):
        config.uplink.password()


# --- finding 8: ids the broker refuses --------------------------------------------------------

REFUSED_BY_BROKERS = ["\x01", "\x1f", "\x7f", "\x85", "\x9f", "\ufdd0", "\ufdef", "\ufffe",
                      "\uffff", "\U0001fffe", "\U0010ffff"]  # fmt: skip


@pytest.mark.parametrize("char", REFUSED_BY_BROKERS)
@pytest.mark.parametrize(
    ("where", "template"),
    [
        ("device.id", '[device]\nid = "d{c}"\n[uplink]\nbroker = "mqtt://h"\n'),
        ("uplink.topic_prefix", MINIMAL + 'topic_prefix = "plant/a{c}"\n'),
        ("uplink.client_id", MINIMAL + 'client_id = "c{c}"\n'),
        ("uplink.username", MINIMAL + 'username = "u{c}"\n'),
        (
            "sensors[0].id",
            MINIMAL + '[[sensors]]\nid = "s{c}"\ntype = "gpio.edge"\npin = 5\n',
        ),
    ],
)
def test_characters_a_broker_refuses_are_refused_in_every_id(
    char: str, where: str, template: str
) -> None:
    escaped = char.encode("unicode_escape").decode("ascii").replace("\\x", "\\u00")
    [problem] = problems(template.replace("{c}", escaped))
    assert problem.startswith(f"x.toml: {where}: expected ")


@pytest.mark.parametrize("prefix", ["$SYS", "$share/g", "$x/edgeline"])
def test_a_topic_prefix_starting_with_dollar_is_refused(prefix: str) -> None:
    [problem] = problems(MINIMAL + f'topic_prefix = "{prefix}"\n')
    assert problem.startswith(
        "x.toml: uplink.topic_prefix: expected topic levels separated by '/', not starting with '$'"
    )
    assert parse(MINIMAL + 'topic_prefix = "plant/$x"\n', "x.toml").uplink.topic_prefix


# --- finding 9: passwords in URLs are never shown ---------------------------------------------

PASSWORDS = ["hun/ter2", "p@ss", "a:b:c", "50%off", "x?y#z", "@/@:", "a//b"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_hide_password_hides_passwords_with_url_delimiters(password: str) -> None:
    url = f"mqtt://dev:{password}@broker.example.net:1883"
    assert hide_password(url) == "mqtt://dev:***@broker.example.net:1883"
    assert hide_password("mqtt://dev@host") == "mqtt://dev@host"


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_in_the_config_broker_url_is_never_echoed(password: str) -> None:
    found = problems(MINIMAL.replace("mqtt://localhost", f"mqtt://dev:{password}@host"))
    assert found and all(password not in problem for problem in found), found


def command_lines(tmp_path: Path, url: str) -> list[list[str]]:
    """Every command that takes --broker."""
    state = str(tmp_path / "state")
    return [
        ["simulate", "--broker", url, "--duration", "1", "--state-dir", state],
        ["sink", "--broker", url],
        ["outbox", "replay", "--state-dir", state, "--from-seq", "1", "--broker", url],
    ]


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_password_in_broker_is_never_echoed_by_any_command(
    tmp_path: Path, password: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in command_lines(tmp_path, f"mqtt://dev:{password}@host:1883"):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert password not in out + err, (argv, err)
        assert err.startswith("error: --broker: expected ") and len(err.splitlines()) == 1, err


# --- edge sink: a payload nested too deeply ---------------------------------------------------


def test_the_sink_counts_a_deeply_nested_payload_and_goes_on(mosquitto: Mosquitto) -> None:
    arrived: list[int] = []
    got = threading.Event()

    def on_event(topic: str, body: dict[str, Any], duplicate: bool) -> None:
        arrived.append(body["seq"])
        got.set()

    deep = '{"device": "d", "stream": "s", "seq": 1, "value": ' + "[" * 5000 + "]" * 5000 + "}"
    good = json.dumps({"device": "d", "stream": "s", "seq": 2, "value": 1.5})
    with Sink(mosquitto.url, on_event=on_event) as sink:
        publish_many(
            mosquitto.url,
            [
                ("edgeline/d/status", deep),
                ("edgeline/d/events/threshold/t", deep),
                ("edgeline/d/events/threshold/t", good),
            ],
        )
        assert got.wait(10), "the sink stopped at the deep payload"
        assert arrived == [2]
        assert sink.malformed == 2


# --- finding 7: bad input files exit 2 with one line, never a traceback -----------------------


def assert_one_clean_line(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]


def deep_recording(path: Path) -> Path:
    header = {
        "type": "scenario", "name": "x", "device": "d", "seed": 1, "duration": 10.0,
        "start": "2026-01-01T00:00:00.000Z", "sensors": {"t": {"type": "x", "unit": "C"}},
    }  # fmt: skip
    deep = '{"type": "reading", "t": 1, "sensor": "t", "value": ' + "[" * 5000 + "]" * 5000
    path.write_text(json.dumps(header) + "\n" + deep + "}\n", encoding="utf-8")
    return path


def test_a_deeply_nested_recording_line_is_bad_input_for_detect(tmp_path: Path) -> None:
    recording = deep_recording(tmp_path / "deep.jsonl")
    result = edge(
        "detect", "--input", str(recording), "--detector", "zscore",
        "--output", str(tmp_path / "out.csv"), cwd=tmp_path,
    )  # fmt: skip
    assert_one_clean_line(result, f"{recording}:2: ", "nested too deeply")


def test_a_deeply_nested_recording_line_is_bad_input_for_model_eval(tmp_path: Path) -> None:
    recording = deep_recording(tmp_path / "deep.jsonl")
    result = edge("model", "eval", "vibration", str(recording), cwd=tmp_path)
    assert_one_clean_line(result, f"{recording}:2: ", "nested too deeply")


def test_a_recording_line_nested_deeper_than_any_record_is_refused(tmp_path: Path) -> None:
    from edge.sim.recording import MAX_DEPTH, RecordingError, read_recording

    recording = deep_recording(tmp_path / "deep.jsonl")
    lines = recording.read_text().splitlines()
    # Deep enough to be absurd, shallow enough for json: repr() of it in a message, or
    # numpy, would still overflow the stack further down.
    value = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    recording.write_text(f'{lines[0]}\n{{"type": "reading", "t": 1, "sensor": "t", "value": '
                         f"{value}}}\n")  # fmt: skip
    with pytest.raises(RecordingError, match=f"deep.jsonl:2: .*deeper than {MAX_DEPTH}"):
        read_recording(recording)


def test_a_csv_field_over_the_csv_limit_is_bad_input(tmp_path: Path) -> None:
    series = tmp_path / "big.csv"
    series.write_text("timestamp,value\n1," + "9" * 140_000 + "\n", encoding="utf-8")
    result = edge(
        "detect", "--input", str(series), "--detector", "zscore",
        "--output", str(tmp_path / "out.csv"), cwd=tmp_path,
    )  # fmt: skip
    assert_one_clean_line(result, str(series), "field larger than field limit")


def test_a_deeply_nested_toml_array_is_bad_input(tmp_path: Path) -> None:
    config = tmp_path / "deep.toml"
    config.write_text(MINIMAL + "[storage]\nx = " + "[" * 3000 + "]" * 3000 + "\n")
    result = edge("check-config", str(config), cwd=tmp_path)
    assert_one_clean_line(result, f"{config}: invalid TOML: ", "nested too deeply")


TWO_ON_PIN_17 = (
    MINIMAL
    + '[[sensors]]\nid = "door"\ntype = "gpio.edge"\npin = 17\n'
    + '[[sensors]]\nid = "meter"\ntype = "gpio.counter"\npin = 17\ninterval = 1\n'
)


def test_two_sensors_on_one_gpio_pin_fail_check_config_naming_both(tmp_path: Path) -> None:
    config = tmp_path / "pins.toml"
    config.write_text(TWO_ON_PIN_17)
    result = edge("check-config", str(config), cwd=tmp_path)
    assert_one_clean_line(
        result,
        f"{config}: sensors[1].pin: expected a free GPIO pin, found 17 taken by sensor 'door'"
        " (sensors[0].pin)",
    )


def test_two_sensors_on_one_gpio_pin_are_bad_input_for_simulate(tmp_path: Path) -> None:
    config = tmp_path / "pins.toml"
    config.write_text(TWO_ON_PIN_17)
    result = subprocess.run(
        [sys.executable, "-m", "edge.cli", "simulate", "--config", str(config), "--duration",
         "1", "--speed", "max", "--state-dir", str(tmp_path / "state"), "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert_one_clean_line(result, "sensors[1].pin: expected a free GPIO pin")


def test_a_problem_quoting_input_stays_one_line(tmp_path: Path) -> None:
    """A key or a value with a line break in it cannot split a problem, or forge one."""
    config = tmp_path / "edge.toml"
    config.write_text(
        MINIMAL + '"\\r\\nerror: forged\\u2028" = 1\n'
        '[[sensors]]\nid = "s"\ntype = "gpio.edge\\u0085x"\npin = 5\n'
    )
    result = edge("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert all(line.startswith(f"error: {config}: ") for line in lines), result.stderr
    assert "uplink.\\r\\nerror: forged\\u2028: unknown key" in lines[0]


def test_an_integer_too_large_for_a_float_in_a_recording_is_bad_input(tmp_path: Path) -> None:
    from edge.sim.recording import RecordingError, read_recording

    recording = deep_recording(tmp_path / "huge.jsonl")
    lines = recording.read_text().splitlines()
    huge = "1" + "0" * 400
    recording.write_text(lines[0].replace('"duration": 10.0', f'"duration": {huge}') + "\n")
    with pytest.raises(RecordingError, match=r"huge\.jsonl:1: 'duration' must be a number"):
        read_recording(recording)
    reading = f'{{"type": "reading", "t": 1, "sensor": "t", "value": {huge}}}'
    recording.write_text(f"{lines[0]}\n{reading}\n")
    result = edge(
        "detect", "--input", str(recording), "--detector", "zscore",
        "--output", str(tmp_path / "out.csv"), cwd=tmp_path,
    )  # fmt: skip
    assert_one_clean_line(result, "sensor 't' has no numeric readings")


@pytest.mark.parametrize(
    "flags", [["--drain-timeout", "nan"], ["--drain-timeout", "-1"], ["--grace", "-5"],
              ["--grace", "inf"]],
)  # fmt: skip
def test_simulate_refuses_seconds_that_are_not(
    flags: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "--duration", "1", *flags]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {flags[0]}: expected a number of seconds >= 0, found {float(flags[1])}\n"


def test_a_deeply_nested_set_value_is_bad_input_for_detect(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    series = tmp_path / "s.csv"
    series.write_text("timestamp,value\n1,2\n2,3\n")
    nested = "[" * 3000 + "]" * 3000
    argv = ["detect", "--input", str(series), "--detector", "zscore", "--set",
            f"window={nested}", "--output", str(tmp_path / "out.csv")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --set: window: expected an integer") and err.count("\n") == 1
