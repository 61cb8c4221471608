"""The systemd unit: `systemd-analyze verify` accepts it, and it keeps the promises the
runtime relies on (notify + watchdog, an unprivileged user, the hardening, the devices)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.deploy import unit_text

EDGE = Path(sys.executable).parent / "edge"  # this venv's console script


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_systemd_analyze_verifies_the_unit_without_a_word(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    unit = tmp_path / "edgeline.service"
    unit.write_text(unit_text(prefix=str(EDGE.parent.parent)))
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stderr
    # It does say something about a unit it cannot run or parse: the check can fail.
    bad = tmp_path / "bad.service"
    bad.write_text(unit_text(prefix="/nonexistent").replace("WatchdogSec=30", "WatchdogSec=x"))
    failed = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True)
    assert "Failed to parse sec value" in failed.stderr and failed.returncode != 0
    assert "/nonexistent/bin/edge is not executable" in failed.stderr


def test_the_unit_runs_the_release_as_a_notify_service_with_a_watchdog() -> None:
    unit = directives(unit_text(prefix="/opt/edgeline/releases/1.2.3", config="/etc/e.toml"))
    assert unit["ExecStart"] == ["/opt/edgeline/releases/1.2.3/bin/edge run --config /etc/e.toml"]
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert int(unit["WatchdogSec"][0]) >= 10  # the loop pings at half of it
    assert unit["User"] == ["edgeline"] and unit["StateDirectory"] == ["edgeline"]
    assert unit["ConfigurationDirectory"] == ["edgeline"]
    # A remote config is written beside edge.toml: the one path /etc's read-only view opens.
    assert unit["ReadWritePaths"] == ["/etc/edgeline"]
    assert unit["ConfigurationDirectoryMode"] == ["0770"]
    for hardening in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert unit[hardening] == ["yes"], hardening
    assert unit["ProtectSystem"] == ["strict"] and unit["DevicePolicy"] == ["closed"]
    assert "PrivateDevices" not in unit  # it would hide I2C, GPIO and serial
    allowed = {rule.split()[0] for rule in unit["DeviceAllow"]}
    assert {"char-i2c", "char-gpiochip", "char-ttyAMA", "char-ttyUSB"} <= allowed
    assert set(unit["SupplementaryGroups"][0].split()) == {"gpio", "i2c", "dialout"}
