"""``edge check-config FILE`` through the real console script: exit codes, one ``error:`` line
per problem on stderr, never a traceback, and a one-paragraph summary for a good file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = """\
[device]
id = "pump-house-3"

[storage]
state_dir = "/data/edgeline"

[uplink]
broker = "mqtt://broker.local:1884"
topic_prefix = "plant"

[[sensors]]
id = "water-temp"
type = "i2c.tmp102"
interval = 2.0
address = 0x49

[[sensors]]
id = "door"
type = "gpio.edge"
pin = 17

[[detectors]]
sensor = "water-temp"
type = "threshold"
above = 30.0
severity = "critical"
"""

BROKEN = """\
[device]
id = "pump house"

[uplink]
broker = "mqtt://user:secret@broker.local"

[[sensors]]
id = "water-temp"
type = "i2c.tmp102"
interval = 2.0

[[sensors]]
id = "air-temp"
type = "i2c.tmp102"
intervall = 2.0
address = 0x50

[[detectors]]
sensor = "water_temp"
type = "threshold"
above = 30.0
"""
# (key path, text in the message) for each problem in BROKEN.
BROKEN_PROBLEMS = [
    ("device.id", "expected 1-64 characters without '/', '+', '#', spaces, control characters"),
    ("uplink.broker", "expected a URL without a password"),
    ("sensors[1].interval", "missing; expected seconds between polls"),
    ("sensors[1].intervall", "unknown key; did you mean 'interval'?"),
    ("sensors[1].address", "expected 0x48, 0x49, 0x4A or 0x4B, found 0x50"),
    ("detectors[0].sensor", "found 'water_temp'; did you mean 'water-temp'?"),
]


def edge_command() -> list[str]:
    """The installed ``edge`` script of this interpreter's environment, else ``-m edge.cli``."""
    script = shutil.which("edge", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "edge.cli"]


def edge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*edge_command(), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_broken_file_exits_2_with_one_error_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(BROKEN, encoding="utf-8")
    result = edge("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == len(BROKEN_PROBLEMS), result.stderr
    prefix = f"error: {path}: "
    assert all(line.startswith(prefix) for line in lines), result.stderr
    paths = sorted(line[len(prefix) :].split(": ", 1)[0] for line in lines)
    assert paths == sorted(key for key, _ in BROKEN_PROBLEMS)
    for key, text in BROKEN_PROBLEMS:
        [line] = [line for line in lines if line.startswith(f"{prefix}{key}: ")]
        assert text in line, (key, line)


BAD_ADDRESSES = """\
[device]
id = "bench"

[uplink]
broker = "mqtt://localhost"

[[sensors]]
id = "air"
type = "i2c.bme280"
interval = 2.0
address = 0x48

[[sensors]]
id = "lux"
type = "i2c.bh1750"
interval = 2.0
address = 0x24

[[sensors]]
id = "supply"
type = "i2c.ina219"
interval = 2.0
address = 0x50

[[sensors]]
id = "soil"
type = "i2c.registers"
interval = 2.0
address = 0x36
register = 0x100
"""


def test_i2c_addresses_are_written_in_hex(tmp_path: Path) -> None:
    """A new user copies 0x48 from i2cdetect: the answer speaks the same hex."""
    path = tmp_path / "bad.toml"
    path.write_text(BAD_ADDRESSES, encoding="utf-8")
    result = edge("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        f"error: {path}: sensors[0].address: expected 0x76 or 0x77, found 0x48",
        f"error: {path}: sensors[1].address: expected 0x23 or 0x5C, found 0x24",
        f"error: {path}: sensors[2].address: expected an integer from 0x40 to 0x4F, found 0x50",
        f"error: {path}: sensors[3].register: expected an integer from 0x00 to 0xFF, found 0x100",
    ]


def test_the_summary_names_each_chip_at_its_hex_address(tmp_path: Path) -> None:
    fixed = BAD_ADDRESSES.replace("0x48", "0x76").replace("0x24", "0x5C")
    fixed = fixed.replace("0x50", "0x41").replace("0x100", "0x00")
    path = tmp_path / "good.toml"
    path.write_text(fixed, encoding="utf-8")
    result = edge("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in (
        "air (i2c.bme280 at 0x76 on bus 1)",
        "lux (i2c.bh1750 at 0x5C on bus 1)",
        "supply (i2c.ina219 at 0x41 on bus 1)",
        "soil (i2c.registers at 0x36 on bus 1)",
    ):
        assert text in result.stdout, result.stdout


def test_relative_path_is_named_as_given(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(BROKEN, encoding="utf-8")
    result = edge("check-config", "broken.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: broken.toml: ")


def test_invalid_toml_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "syntax.toml"
    path.write_text('[device]\nid = "d1\n', encoding="utf-8")
    result = edge("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: invalid TOML: ")
    assert "line 2" in line


def test_good_file_exits_0_with_a_summary(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(GOOD, encoding="utf-8")
    result = edge("check-config", str(path), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    summary = result.stdout.strip()
    assert "\n" not in summary  # one paragraph
    assert summary.startswith(f"{path}: device 'pump-house-3'")
    for sensor in ("water-temp", "door"):
        assert sensor in summary
    assert "2 sensor(s)" in summary
    assert "water-temp-threshold on water-temp" in summary
    assert "mqtt://broker.local:1884" in summary
    assert "'plant/pump-house-3/'" in summary


def test_missing_file_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    result = edge("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {path}: cannot read: No such file or directory\n"


def test_directory_instead_of_a_file_exits_2(tmp_path: Path) -> None:
    result = edge("check-config", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path}: cannot read: ")


def test_file_that_is_not_utf8_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[device]\n")
    result = edge("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {path}: cannot read: not UTF-8 text")


def test_huge_integer_exits_2_without_traceback(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(GOOD.replace("interval = 2.0", "interval = " + "9" * 400), encoding="utf-8")
    result = edge("check-config", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {path}: sensors[0].interval: expected a number from")


def test_missing_argument_is_a_usage_error(tmp_path: Path) -> None:
    result = edge("check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "FILE" in result.stderr


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = edge("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: edge")
    for command in ("run", "simulate", "check-config", "outbox", "sink"):
        assert f"\n    {command} " in result.stdout, command


@pytest.mark.parametrize("command", ["check-config", "run", "simulate", "outbox", "sink"])
def test_each_command_has_help(tmp_path: Path, command: str) -> None:
    result = edge(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: edge {command}")


def test_a_scenario_file_is_checked_as_config_plus_simulation(tmp_path: Path) -> None:
    from edge.sim import scenarios

    scenario = tmp_path / "scenario.toml"
    scenario.write_text(scenarios.path("default").read_text("utf-8"))
    result = edge("check-config", str(scenario), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sim-01" in result.stdout and "As a scenario: 300 simulated seconds" in result.stdout
    scenario.write_text(scenario.read_text().replace("duration = 300.0", "duration = -1"))
    result = edge("check-config", str(scenario), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{scenario}: simulation.duration: expected a number from 0.001" in result.stderr


def test_a_password_in_the_broker_url_is_never_echoed(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('[device]\nid = "d"\n[uplink]\nbroker = "mqtt://dev:hunter2@host"\n')
    result = edge("check-config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "uplink.broker" in result.stderr and "hunter2" not in result.stderr
