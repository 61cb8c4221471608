"""`edge flash`: a Raspberry Pi OS card's boot partition prepared so that the first boot
installs a bundle offline; fleets from a CSV with their keys and certificates.

Cards are directories shaped like a freshly written card's boot partition. Most tests use a
tiny bundle whose install.sh records how it ran; the slow ones install a real bundle built
from this checkout into a root directory, offline, by running the very script the card's
first boot runs.
"""

from __future__ import annotations

import io
import json
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import example, given
from hypothesis import strategies as st

from edge.config.command_key import read_key_file
from edge.deploy import card
from edge.deploy.card import HOOK, with_words, wpa_psk
from edge.deploy.fleet import hostname_problem, parse_fleet
from edge.errors import UsageError
from tests.bundles import REPO, no_network
from tests.oracles import run_cli

DEPLOY = REPO / "edge" / "deploy"
PASSPHRASE = "correct horse battery staple"
CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4"
    " fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
)
# What Raspberry Pi Imager writes on a Bookworm card (customization_generator.cpp), shortened.
IMAGER_FIRSTRUN = """#!/bin/sh

set +e

CURRENT_HOSTNAME=$(cat /etc/hostname | tr -d " \\t\\n\\r")
if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
   /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname imager-host
fi
FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)
/usr/lib/userconf-pi/userconf 'alice' '$6$salt$hash'
rm -f /boot/firstrun.sh
sed -i 's| systemd.run.*||g' /boot/cmdline.txt
exit 0
"""
IMAGER_HOOK = (
    " systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot"
    " systemd.unit=kernel-command-line.target"
)
# A stand-in for a bundle's install.sh: it says how it was run (in the root it is given, as
# first boot runs it: --no-start --root ROOT) and installs nothing.
STUB_INSTALL = """#!/bin/sh
echo "stub install.sh $*"
echo "$*" >>"$3/stub-install.log"
"""


def write_bundle(path: Path, python: str = "3.11", target: str = "linux_aarch64") -> Path:
    """A tiny bundle: the manifest, bundle.env, the example config and a stub install.sh."""
    top = f"edgeline-0.1.0-{target}-py{python}"
    members = {
        "install.sh": STUB_INSTALL,
        "manifest.json": json.dumps(
            {"name": "edgeline", "version": "0.1.0", "target": target, "python": python}
        ),
        "bundle.env": "VERSION=0.1.0\nTARGET=linux_aarch64\n",
        "edge.toml.example": (DEPLOY / "edge.toml.example").read_text(),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def trixie_card(path: Path) -> Path:
    """A Trixie boot partition as the image ships it: its cloud-init files included."""
    path.mkdir()
    (path / "cmdline.txt").write_text(CMDLINE)
    (path / "config.txt").write_text("dtparam=audio=on\n[all]\n")
    (path / "meta-data").write_text("dsmode: local\ninstance_id: rpios-image\n")
    (path / "user-data").write_text("#cloud-config\nssh_pwauth: false\n")
    (path / "network-config").write_text(
        "network:\n  version: 2\n  ethernets:\n    eth0:\n      dhcp4: true\n"
    )
    return path


def bookworm_card(path: Path, imager: bool = False) -> Path:
    path.mkdir()
    (path / "cmdline.txt").write_text(CMDLINE.rstrip("\n") + (IMAGER_HOOK if imager else "") + "\n")
    (path / "config.txt").write_text("dtparam=audio=on\n[all]\n")
    if imager:
        (path / "firstrun.sh").write_text(IMAGER_FIRSTRUN)
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """A bundle, a Wi-Fi key file (0600) and an ssh public key."""
    made = tmp_path / "inputs"
    made.mkdir()
    psk = made / "wifi.psk"
    psk.write_text(PASSPHRASE + "\n")
    psk.chmod(0o600)
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    ssh = made / "id_ed25519.pub"
    openssh = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    ssh.write_bytes(openssh + b" me@laptop\n")
    return {
        "bundle": write_bundle(made / "b.tar.gz"),
        "bundle313": write_bundle(made / "b313.tar.gz", python="3.13"),
        "psk": psk,
        "ssh": ssh,
    }


def flash(*argv: str | Path) -> tuple[int, str]:
    return run_cli(["flash", *map(str, argv)])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_trixie_card_gets_cloud_init_files_that_cloud_init_accepts(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = trixie_card(tmp_path / "boot")
    code, printed = flash(
        "--boot", boot, "--id", "press-3", "--hostname", "press-3-pi", "--bundle",
        inputs["bundle313"], "--wifi-ssid", "Shop Floor", "--wifi-psk-file", inputs["psk"],
        "--wifi-country", "gb", "--ssh-key", inputs["ssh"],
    )  # fmt: skip
    assert code == 0, printed
    assert "Raspberry Pi OS trixie card for device press-3" in printed
    assert PASSPHRASE not in printed and wpa_psk(PASSPHRASE, "Shop Floor") not in printed

    user_data = boot / "user-data"
    assert user_data.read_text().startswith("#cloud-config\n")
    cloud_init = shutil.which("cloud-init")
    if cloud_init is None:
        pytest.skip("cloud-init is not installed (Debian's cloud-init; tools/setup dev adds it)")
    schema = subprocess.run(
        [cloud_init, "schema", "--config-file", str(user_data)], capture_output=True, text=True
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr

    config = yaml.safe_load(user_data.read_text())
    assert config["hostname"] == "press-3-pi"
    (user,) = config["users"]
    assert user["name"] == "pi" and user["lock_passwd"] is True
    assert user["ssh_authorized_keys"] == [inputs["ssh"].read_text().strip()]
    assert config["ssh_pwauth"] is False
    assert config["runcmd"][-1] == [
        "sh", "/boot/firmware/edgeline/firstboot.sh", "--boot", "/boot/firmware"
    ]  # fmt: skip
    network = yaml.safe_load((boot / "network-config").read_text())["network"]
    assert network["version"] == 2 and network["ethernets"]["eth0"]["dhcp4"] is True
    wlan = network["wifis"]["wlan0"]
    assert wlan["regulatory-domain"] == "GB"
    # The key as wpa_passphrase derives it: the passphrase itself is not on the card.
    assert wlan["access-points"] == {"Shop Floor": {"password": wpa_psk(PASSPHRASE, "Shop Floor")}}
    meta = yaml.safe_load((boot / "meta-data").read_text())
    assert meta["local-hostname"] == "press-3-pi" and meta["dsmode"] == "local"
    assert meta["instance-id"].startswith("edgeline-press-3-")
    for path in boot.rglob("*"):
        if path.is_file():
            assert PASSPHRASE.encode() not in path.read_bytes(), path
    assert (boot / "config.txt").read_text() == "dtparam=audio=on\n[all]\n"
    assert (boot / "cmdline.txt").read_text() == CMDLINE  # the country went to netplan

    # This machine's copy of the command key: 0600 in a 0700 directory, read as edgeline does.
    key_file = tmp_path / "edgeline-keys" / "press-3.key"
    assert mode(key_file) == 0o600 and mode(key_file.parent) == 0o700
    assert read_key_file(key_file).hex() == (boot / "edgeline/command.key").read_text().strip()
    assert key_file.read_text().strip() not in printed


def test_the_device_config_keeps_comments_and_names_the_device(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = trixie_card(tmp_path / "boot")
    code, printed = flash("--boot", boot, "--id", "pi-07", "--bundle", inputs["bundle313"])
    assert code == 0, printed
    config = (boot / "edgeline" / "edge.toml").read_text()
    assert config.startswith("# edgeline's config: /etc/edgeline/edge.toml.")  # the example's
    assert 'id = "pi-07"                      # unique in the fleet' in config
    assert 'key_file = "/etc/edgeline/command.key"' in config
    code, printed = run_cli(["check-config", str(boot / "edgeline" / "edge.toml")])
    assert code == 0 and "device 'pi-07'" in printed, printed
    # Without Wi-Fi, network-config is the image's Ethernet and nothing is scrubbed later.
    assert "wifis" not in (boot / "network-config").read_text()
    assert "SECRETS=edgeline/command.key\n" in (boot / "edgeline/device.env").read_text()


def test_a_bookworm_card_gets_one_hook_in_cmdline_even_flashed_twice(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = bookworm_card(tmp_path / "boot")
    argv = ["--boot", boot, "--id", "pi-01", "--bundle", inputs["bundle"], "--wifi-country", "DE"]
    for _ in range(2):
        code, printed = flash(*argv)
        assert code == 0, printed
        text = (boot / "cmdline.txt").read_text()
        assert text.count("\n") == 1 and text.endswith("\n")
        assert text == CMDLINE.rstrip("\n") + " " + " ".join(HOOK) + (
            " cfg80211.ieee80211_regdom=DE\n"
        )  # fmt: skip
    assert "kept command key" in printed  # the second flash: the same device, the same key
    firstrun = (boot / "firstrun.sh").read_text()
    assert card.is_ours(firstrun) and firstrun == (DEPLOY / "firstrun.sh").read_text()
    assert not (boot / "user-data").exists() and not (boot / "edgeline" / APPEND_NAME).exists()


APPEND_NAME = "cmdline.txt.append"


def test_an_imager_firstrun_is_chained_not_lost(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = bookworm_card(tmp_path / "boot", imager=True)
    code, printed = flash("--boot", boot, "--id", "pi-01", "--bundle", inputs["bundle"])
    assert code == 0 and "chained the card's own firstrun.sh" in printed, printed
    kept = (boot / "edgeline" / "imager-firstrun.sh").read_text()
    # Everything but its clean-up, which would remove our hook and script midway.
    assert kept == IMAGER_FIRSTRUN.split("rm -f /boot/firstrun.sh")[0]
    assert "userconf 'alice'" in kept
    text = (boot / "cmdline.txt").read_text()
    assert text.count("systemd.run=") == 1 and "systemd.run=/boot/firmware/firstrun.sh" in text
    assert "systemd.run=/boot/firstrun.sh" not in text  # so imager_fixup leaves the card alone
    ours = (boot / "firstrun.sh").read_text()
    assert card.is_ours(ours) and ours.index("imager-firstrun.sh") < ours.index("firstboot.sh")

    code, printed = flash("--boot", boot, "--id", "pi-01", "--bundle", inputs["bundle"])
    assert code == 0 and "kept the chained edgeline/imager-firstrun.sh" in printed, printed
    assert (boot / "edgeline" / "imager-firstrun.sh").read_text() == kept


def test_a_card_that_runs_something_else_at_boot_is_left_alone(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel runs one systemd.run: edge flash chains Imager's firstrun.sh, nothing else.
    monkeypatch.chdir(tmp_path)
    boot = bookworm_card(tmp_path / "boot")
    line = CMDLINE.rstrip("\n") + " systemd.run=/boot/firmware/provision.sh\n"
    (boot / "cmdline.txt").write_text(line)
    code, printed = flash("--boot", boot, "--id", "pi-01", "--bundle", inputs["bundle"])
    assert code == 2 and "already runs '/boot/firmware/provision.sh'" in printed, printed
    assert (boot / "cmdline.txt").read_text() == line
    assert sorted(p.name for p in boot.iterdir()) == ["cmdline.txt", "config.txt"]
    assert not (tmp_path / "edgeline-keys").exists()


def test_bookworm_first_boot_sets_the_machine_up_and_cleans_the_card(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = bookworm_card(tmp_path / "boot", imager=True)
    code, printed = flash(
        "--boot", boot, "--id", "pi-01", "--bundle", inputs["bundle"], "--wifi-ssid", "Café;1",
        "--wifi-psk-file", inputs["psk"], "--wifi-country", "FR", "--ssh-key", inputs["ssh"],
    )  # fmt: skip
    assert code == 0, printed
    assert mode(tmp_path / "edgeline-keys" / "pi-01.key") == 0o600
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("raspberrypi\n")
    (root / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")

    run = subprocess.run(
        ["sh", str(boot / "firstrun.sh"), "--boot", str(boot), "--root", str(root)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "skipped (--root): the Imager's firstrun.sh" in run.stdout
    assert (root / "etc/hostname").read_text() == "pi-01\n"
    assert "127.0.1.1\tpi-01" in (root / "etc/hosts").read_text()
    assert (root / "home/pi/.ssh/authorized_keys").read_text() == inputs["ssh"].read_text()
    wifi = root / "etc/NetworkManager/system-connections/edgeline-wifi.nmconnection"
    assert mode(wifi) == 0o600
    text = wifi.read_text()
    # An SSID with ';' or non-ASCII is written as its bytes; the key as wpa_passphrase makes it.
    assert f"ssid={''.join(f'{b};' for b in 'Café;1'.encode())}\n" in text
    assert f"psk={wpa_psk(PASSPHRASE, 'Café;1')}\n" in text and PASSPHRASE not in text
    assert (root / "etc/edgeline/command.key").read_text() == (
        tmp_path / "edgeline-keys" / "pi-01.key"
    ).read_text()
    assert mode(root / "etc/edgeline/command.key") == 0o600
    assert 'id = "pi-01"' in (root / "etc/edgeline/edge.toml").read_text()
    assert (root / "stub-install.log").read_text() == f"--no-start --root {root}\n"
    # The card afterwards: no hook, no firstrun.sh, no secret, the rest of the line kept.
    assert (boot / "cmdline.txt").read_text() == CMDLINE.rstrip("\n") + (
        " cfg80211.ieee80211_regdom=FR\n"
    )
    assert not (boot / "firstrun.sh").exists()
    for secret in ("command.key", "wifi.nmconnection", "edgeline.tar.gz"):
        assert not (boot / "edgeline" / secret).exists(), secret
    assert (boot / "edgeline" / "installed").read_text().startswith("edgeline 0.1.0 installed")
    assert "deleted edgeline/command.key" in (boot / "edgeline/firstboot.log").read_text()


def test_the_first_boot_script_runs_once_from_cloud_init(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = trixie_card(tmp_path / "boot")
    code, printed = flash(
        "--boot", boot, "--id", "pi-02", "--bundle", inputs["bundle313"], "--wifi-ssid", "Lab",
        "--wifi-psk-file", inputs["psk"],
    )  # fmt: skip
    assert code == 0, printed
    root = tmp_path / "root"
    command = runcmd_for(boot, root)
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "stub install.sh --no-start --root" in first.stdout
    assert not (boot / "edgeline" / "command.key").exists()
    network = (boot / "network-config").read_text()
    assert "wifis" not in network and wpa_psk(PASSPHRASE, "Lab") not in network
    assert yaml.safe_load(network)["network"]["ethernets"]["eth0"]["dhcp4"] is True
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0 and "nothing to do" in second.stdout, second.stdout
    assert (root / "stub-install.log").read_text().count("\n") == 1  # install.sh ran once


def runcmd_for(boot: Path, root: Path) -> list[str]:
    """user-data's runcmd entry for the first boot, pointed at ``boot``, with ``--root``."""
    (entry,) = [c for c in yaml.safe_load((boot / "user-data").read_text())["runcmd"]
                if "firstboot.sh" in " ".join(c)]  # fmt: skip
    return [word.replace("/boot/firmware", str(boot)) for word in entry] + ["--root", str(root)]


def test_a_damaged_bundle_stops_the_first_boot_and_keeps_the_secrets(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = trixie_card(tmp_path / "boot")
    assert flash("--boot", boot, "--id", "pi-03", "--bundle", inputs["bundle313"])[0] == 0
    with open(boot / "edgeline" / "edgeline.tar.gz", "ab") as handle:
        handle.write(b"\0")
    run = subprocess.run(runcmd_for(boot, tmp_path / "root"), capture_output=True, text=True)
    assert run.returncode == 1 and "is damaged" in run.stderr, run.stderr
    assert (boot / "edgeline" / "command.key").exists()
    assert not (boot / "edgeline" / "installed").exists()


def test_shell_scripts_are_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian's shellcheck; tools/setup dev adds it)")
    for script in ("firstboot.sh", "firstrun.sh"):
        done = subprocess.run([shellcheck, str(DEPLOY / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


@pytest.fixture
def bad(tmp_path: Path, inputs: dict[str, Path]) -> dict[str, Path]:
    made = {"trixie": trixie_card(tmp_path / "trixie"), "empty": tmp_path / "empty"}
    made["empty"].mkdir()
    for name, data, file_mode in [
        ("short.psk", b"short\n", 0o600),
        ("long.psk", b"x" * 64 + b"\n", 0o600),
        ("open.psk", PASSPHRASE.encode(), 0o644),
        ("private.key", b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbg==\n", 0o600),
        ("garbage.pub", b"ssh-ed25519 AAAAnotakey me\n", 0o644),
        ("junk.tar.gz", b"not a tar", 0o644),
        ("mqtt.toml", b'[device]\nid = "x"\n[uplink]\nbroker = "mqtt://b:1883"\n', 0o644),
    ]:
        (tmp_path / name).write_bytes(data)
        (tmp_path / name).chmod(file_mode)
        made[name.split(".")[0]] = tmp_path / name
    return {**inputs, **made}


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{missing}"], "--bundle: "),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{junk}"],
         "not an edgeline bundle"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle}"],
         "is for Python 3.11 and Raspberry Pi OS trixie has 3.13"),
        (["--boot", "{empty}", "--id", "pi", "--bundle", "{bundle}"],
         "not a Raspberry Pi OS boot partition"),
        (["--boot", "{missing}", "--id", "pi", "--bundle", "{bundle}"], "is not a directory"),
        (["--boot", "{trixie}", "--id", "a/b", "--bundle", "{bundle313}"], "--id: expected"),
        (["--boot", "{trixie}", "--id", "..", "--bundle", "{bundle313}"], "usable as a file"),
        (["--boot", "{trixie}", "--id", "pi_1", "--bundle", "{bundle313}"],
         "--hostname: expected a host name"),
        (["--boot", "{trixie}", "--id", "pi", "--hostname=-x", "--bundle", "{bundle313}"],
         "--hostname: expected a host name"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--wifi-ssid", "n"],
         "--wifi-ssid needs --wifi-psk-file"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--wifi-ssid", "n",
          "--wifi-psk-file", "{short}"], "8 to 63 printable ASCII characters"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--wifi-ssid", "n",
          "--wifi-psk-file", "{long}"], "found 64 bytes that are not"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--wifi-ssid", "n",
          "--wifi-psk-file", "{open}"], "chmod 600"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--wifi-ssid", "n",
          "--wifi-psk-file", "{missing}"], "--wifi-psk-file: cannot read"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}",
          "--wifi-psk-file", "{psk}"], "--wifi-psk-file needs --wifi-ssid"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--ssh-key",
          "{private}"], "is a private key"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--ssh-key",
          "{garbage}"], "is not an ssh public key"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--wifi-country",
          "GBR"], "two-letter country code"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--user", "Root!"],
         "--user: expected"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--ca", "{psk}"],
         "--ca and --ca-key go together"),
        (["--boot", "{trixie}", "--id", "pi", "--bundle", "{bundle313}", "--config",
          "{junk}"], "invalid TOML"),
        (["--boot", "{empty}", "--id", "pi", "--bundle", "{bundle}", "--os", "bookworm"],
         "has no cmdline.txt"),
        (["--boot", "{trixie}", "--bundle", "{bundle313}"], "give --boot DIR --id DEVICE_ID"),
        (["--fleet", "{psk}", "--out", "{empty}", "--bundle", "{bundle313}"], "needs --os"),
        (["--boot", "{trixie}", "--from", "{empty}"], "not a directory edge flash prepared"),
        (["--boot", "{trixie}", "--from", "{empty}", "--id", "x"], "--from takes a prepared"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_in_one_line_and_writes_nothing(
    argv: list[str], reason: str, bad: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    names = {**{k: str(v) for k, v in bad.items()}, "missing": str(tmp_path / "missing")}
    before = sorted(p.name for p in bad["trixie"].iterdir())
    code, printed = flash(*(arg.format(**names) for arg in argv))
    assert code == 2 and reason in printed and printed.count("\n") == 1, printed
    assert PASSPHRASE not in printed
    assert sorted(p.name for p in bad["trixie"].iterdir()) == before
    assert not (tmp_path / "edgeline-keys").exists()


def test_a_config_that_edgeline_refuses_is_refused_before_the_card_is_touched(
    tmp_path: Path, bad: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # TLS settings with an mqtt:// broker: edgeline's own loader says why, in one line.
    monkeypatch.chdir(tmp_path)
    ca = make_ca(tmp_path)
    code, printed = flash(
        "--boot", bad["trixie"], "--id", "pi", "--bundle", bad["bundle313"], "--config",
        bad["mqtt"], "--ca", ca["cert"], "--ca-key", ca["key"],
    )  # fmt: skip
    assert code == 2 and printed.count("\n") == 1, printed
    assert "(for device 'pi')" in printed and "expected an mqtts:// broker" in printed
    assert not (bad["trixie"] / "edgeline").exists()


# --- fleets -------------------------------------------------------------------------------

MQTTS_CONFIG = """# the fleet's config
[device]
id = "template"

[uplink]
broker = "mqtts://broker.example.com:8883"  # our broker
"""


def make_ca(tmp_path: Path) -> dict[str, Path]:
    import trustme

    authority = trustme.CA(organization_name="edgeline test fleet")
    cert, key = tmp_path / "ca.pem", tmp_path / "ca.key"
    authority.cert_pem.write_to_path(str(cert))
    authority.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return {"cert": cert, "key": key}


def test_a_fleet_gets_a_directory_each_with_its_own_keys_and_a_manifest(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    ca = make_ca(tmp_path)
    config = tmp_path / "fleet.toml"
    config.write_text(MQTTS_CONFIG)
    csv = tmp_path / "devices.csv"
    csv.write_text("id,hostname,wifi_ssid\npress-1,,\npress-2,press-two,Annex\npress-3,,\n")
    out = tmp_path / "out"
    argv = ["--fleet", csv, "--out", out, "--os", "trixie", "--bundle", inputs["bundle313"],
            "--config", config, "--ca", ca["cert"], "--ca-key", ca["key"], "--wifi-ssid",
            "Shop", "--wifi-psk-file", inputs["psk"], "--ssh-key", inputs["ssh"]]  # fmt: skip
    code, printed = flash(*argv)
    assert code == 0 and "3 devices prepared" in printed, printed

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["bundle"]["version"] == "0.1.0"
    assert manifest["bundle"]["sha256"] == flash_sha256(inputs["bundle313"])
    assert set(manifest["devices"]) == {"press-1", "press-2", "press-3"}
    authority = x509.load_pem_x509_certificate(ca["cert"].read_bytes())
    keys = set()
    for device_id, entry in manifest["devices"].items():
        directory = out / device_id
        assert sorted(p.name for p in directory.iterdir()) == [
            "edgeline", "meta-data", "network-config", "user-data"
        ]  # fmt: skip
        assert mode(directory) == 0o700 and mode(directory / "edgeline") == 0o700
        cert = x509.load_pem_x509_certificate((out / entry["files"]["cert"]).read_bytes())
        cert.verify_directly_issued_by(authority)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == device_id
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert cert.fingerprint(cert.signature_hash_algorithm).hex() == entry["cert"]["sha256"]
        assert f"{cert.serial_number:x}" == entry["cert"]["serial"]
        assert cert.not_valid_after_utc.isoformat() == entry["cert"]["not_after"]
        key_pem = (out / entry["files"]["key"]).read_bytes()
        private = serialization.load_pem_private_key(key_pem, None)
        assert private.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
        for secret in (entry["files"]["key"], entry["files"]["command_key"], entry["command_key"],
                       f"{device_id}/network-config"):  # fmt: skip
            assert mode(out / secret) == 0o600, secret
        command_key = read_key_file(out / entry["command_key"])
        assert (out / entry["files"]["command_key"]).read_text() == command_key.hex() + "\n"
        keys.add(command_key)
        toml = (directory / "edgeline" / "edge.toml").read_text()
        assert toml.startswith("# the fleet's config") and f'id = "{device_id}"' in toml
        assert 'cert_file = "/etc/edgeline/tls/client.crt"' in toml
        assert 'ca_file = "/etc/edgeline/tls/ca.crt"' in toml
        ssid = yaml.safe_load((directory / "network-config").read_text())["network"]["wifis"]
        assert list(ssid["wlan0"]["access-points"]) == [entry["wifi_ssid"]]
    assert len(keys) == 3
    assert manifest["devices"]["press-2"]["hostname"] == "press-two"
    assert manifest["devices"]["press-2"]["wifi_ssid"] == "Annex"
    listing = (out / "manifest.json").read_text()
    assert all(key.hex() not in listing for key in keys) and "PRIVATE" not in listing
    assert all(key.hex() not in printed for key in keys)

    # Not over what is there, unless asked; then with new keys.
    again = flash(*argv)
    assert again[0] == 2 and "exists and is not empty (--force replaces it)" in again[1]
    assert read_key_file(out / "keys/press-1.key") in keys
    code, printed = flash(*argv, "--force")
    assert code == 0, printed
    assert read_key_file(out / "keys/press-1.key") not in keys

    # A prepared directory onto a card: the same files, and the secrets with it.
    boot = trixie_card(tmp_path / "boot")
    code, printed = flash("--boot", boot, "--from", out / "press-2")
    assert code == 0, printed
    for name in ("user-data", "network-config", "meta-data", "edgeline/tls/client.key"):
        assert (boot / name).read_bytes() == (out / "press-2" / name).read_bytes(), name
    code, printed = flash("--boot", bookworm_card(tmp_path / "bw"), "--from", out / "press-2")
    assert code == 2 and "is for Raspberry Pi OS trixie and the card" in printed, printed


def flash_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bookworm_fleet_directory_applies_with_its_cmdline_words(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    csv = tmp_path / "devices.csv"
    csv.write_text("id\npi-a\n")
    out = tmp_path / "out"
    code, printed = flash("--fleet", csv, "--out", out, "--os", "bookworm", "--bundle",
                          inputs["bundle"], "--wifi-country", "NL")  # fmt: skip
    assert code == 0, printed
    assert (out / "pi-a" / APPEND_NAME).read_text() == " ".join(HOOK) + (
        " cfg80211.ieee80211_regdom=NL\n"
    )
    boot = bookworm_card(tmp_path / "boot", imager=True)
    code, printed = flash("--boot", boot, "--from", out / "pi-a")
    assert code == 0 and "chained" in printed, printed
    assert (boot / "cmdline.txt").read_text().count("systemd.run=") == 1
    assert not (boot / APPEND_NAME).exists() and (boot / "firstrun.sh").is_file()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("name\npi\n", "row 1: unknown column 'name'"),
        ("hostname\npi\n", "row 1: no id column"),
        ("id,id\npi,pi\n", "column 'id' appears twice"),
        ("id\npi-1\npi-2\npi-1\n", "row 4, column id: 'pi-1' again (first in row 2)"),
        ("id\npi-1\n\npi/2\n", "row 4, column id: expected 1-64 characters"),
        ("id,hostname\npi-1,bad_host\n", "row 2, column hostname: expected a host name"),
        ("id\npi_1\n", "row 2, column hostname: expected a host name (RFC 1123"),
        ("id,wifi_ssid\npi-1," + "x" * 33 + "\n", "row 2, column wifi_ssid: expected an SSID"),
        ("id,wifi_ssid\npi-1,home\n", "row 2, column wifi_ssid: needs --wifi-psk-file"),
        ("id\npi-1,extra\n", "row 2: 2 values for 1 columns"),
        ("id\npi-1\nmanifest.json\n", "row 3, column id: 'manifest.json' is the name of the"),
        ("id\nkeys\n", "row 2, column id: 'keys' is the name of the fleet's command keys'"),
        ("id\n", "no devices"),
        ("", "no header row"),
    ],
)  # fmt: skip
def test_a_bad_fleet_file_exits_2_naming_row_and_column(
    text: str, reason: str, tmp_path: Path, inputs: dict[str, Path]
) -> None:
    csv = tmp_path / "devices.csv"
    csv.write_text(text)
    out = tmp_path / "out"
    code, printed = flash(
        "--fleet", csv, "--out", out, "--os", "trixie", "--bundle", inputs["bundle313"]
    )
    assert code == 2 and reason in printed and printed.count("\n") == 1, printed
    assert not out.exists()


# --- properties -----------------------------------------------------------------------------

WORD = st.text(
    alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Zs", "Zl", "Zp"]), min_size=1,
    max_size=12,
)  # fmt: skip
HOOKISH = st.sampled_from([
    "systemd.run=/boot/firstrun.sh", "systemd.run=/boot/firmware/firstrun.sh",
    "systemd.run_success_action=reboot", "systemd.run_failure_action=none",
    "systemd.unit=kernel-command-line.target", "cfg80211.ieee80211_regdom=GB", "quiet",
    "systemd.unit=multi-user.target",
])  # fmt: skip


@given(
    words=st.lists(st.one_of(WORD, HOOKISH), max_size=12),
    spaces=st.sampled_from([" ", "  ", "\t", " \r"]),
    tail=st.sampled_from(["", "\n", "\r\n", "\nsecond line\n"]),
    country=st.sampled_from(["", "DE"]),
)
@example(words=["quiet"], spaces=" ", tail="", country="")
def test_the_cmdline_hook_is_added_once_and_the_rest_kept(
    words: list[str], spaces: str, tail: str, country: str
) -> None:
    text = spaces.join(words) + tail
    added = (*HOOK, f"cfg80211.ieee80211_regdom={country}") if country else HOOK
    try:
        once = with_words(text, added)
    except UsageError as exc:  # a hook running something other than a firstrun.sh
        assert any(w.startswith("systemd.run=") and "firstrun" not in w for w in words), exc
        return
    assert with_words(once, added) == once  # idempotent
    first, _, rest = once.partition("\n")
    assert rest == tail.partition("\n")[2]  # the lines after the first, untouched
    line = first.split()
    assert line[-len(added) :] == list(added)
    assert sum(w.startswith("systemd.run=") for w in line) == 1
    assert sum(w.startswith("systemd.run_success_action=") for w in line) == 1
    assert "systemd.run_failure_action=none" not in line
    if country:
        assert sum(w.startswith("cfg80211.ieee80211_regdom=") for w in line) == 1
    others = [w for w in first.split() if w not in added]
    expected = [w for w in " ".join(text.partition("\n")[0].split()).split() if w not in added]
    expected = [w for w in expected if not card._hook_word(w)]
    if country:
        expected = [w for w in expected if not w.startswith("cfg80211.ieee80211_regdom=")]
    assert others == expected  # nothing else lost, added or reordered


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(labels=st.lists(LABEL, min_size=1, max_size=4))
def test_rfc_1123_host_names_pass(labels: list[str]) -> None:
    assert hostname_problem(".".join(labels)) is None


@given(text=st.text(max_size=70))
@example(text="a" * 64)
@example(text="-a")
@example(text="a..b")
def test_a_host_name_check_agrees_with_the_rfc(text: str) -> None:
    import re

    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    valid = len(text) <= 253 and re.fullmatch(rf"{label}(\.{label})*", text, re.ASCII)
    assert (hostname_problem(text) is None) == bool(valid)


ROW = st.fixed_dictionaries({
    "id": st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True), st.text(max_size=8)),
    "hostname": st.one_of(st.just(""), LABEL, st.text(max_size=8)),
})  # fmt: skip


@given(rows=st.lists(ROW, max_size=6), junk=st.one_of(st.just(""), st.text(max_size=20)))
@example(rows=[{"id": "a", "hostname": ""}, {"id": "a", "hostname": ""}], junk="")
def test_a_fleet_file_is_all_valid_rows_or_one_refusal(
    rows: list[dict[str, str]], junk: str
) -> None:
    import csv as csvlib

    buffer = io.StringIO()
    writer = csvlib.writer(buffer)
    writer.writerow(["id", "hostname"])
    for row in rows:
        writer.writerow([row["id"], row["hostname"]])
    text = buffer.getvalue() + junk
    try:
        devices = parse_fleet(text, "devices.csv")
    except UsageError as exc:
        assert "devices.csv" in str(exc)
        return
    ids = [d.id for d in devices]
    assert len(ids) == len(set(ids)) and ids
    for device in devices:
        assert hostname_problem(device.hostname) is None
        assert "/" not in device.id and device.id not in (".", "..")
    if not junk.strip():
        assert ids == [r["id"].strip() for r in rows if r["id"].strip() or r["hostname"].strip()]


# --- the first boot, for real: a bundle built from this checkout -----------------------------


def installed_in(root: Path, device_id: str) -> None:
    """What the first boot leaves in ``root``: the release, the unit, this device's config,
    which the installed edge itself accepts."""
    edge = root / "opt/edgeline/current/bin/edge"
    assert edge.is_file()
    assert (root / "etc/systemd/system/edgeline.service").is_file()
    config = root / "etc/edgeline/edge.toml"
    assert f'id = "{device_id}"' in config.read_text()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root)}
    checked = subprocess.run([str(edge), "check-config", str(config)],
                             capture_output=True, text=True, env=env, cwd=root)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"device '{device_id}'" in checked.stdout
    assert mode(root / "etc/edgeline/command.key") == 0o600


@pytest.mark.slow
def test_done_when_bookworm_first_boot_installs_the_bundle_offline(
    tmp_path: Path, native_bundle: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = bookworm_card(tmp_path / "boot", imager=True)
    code, printed = flash("--boot", boot, "--id", "line-4", "--bundle", native_bundle,
                          "--wifi-ssid", "Shop", "--wifi-psk-file", inputs["psk"],
                          "--ssh-key", inputs["ssh"], "--os", "bookworm")  # fmt: skip
    assert code == 0, printed
    root = tmp_path / "root"
    firstrun = no_network(["sh", str(boot / "firstrun.sh"), "--boot", str(boot), "--root",
                           str(root)])  # fmt: skip
    run = subprocess.run(firstrun, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "edgeline firstboot: done: edgeline" in run.stdout, run.stdout + run.stderr
    installed_in(root, "line-4")
    assert not any((boot / "edgeline" / n).exists() for n in ("command.key", "wifi.nmconnection"))
    assert "systemd.run" not in (boot / "cmdline.txt").read_text()
    assert not (boot / "firstrun.sh").exists()
    again = subprocess.run(
        no_network(["sh", str(boot / "edgeline" / "firstboot.sh"), "--boot", str(boot),
                    "--root", str(root)]), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout


@pytest.mark.slow
def test_done_when_trixie_cloud_init_runcmd_installs_the_bundle_offline(
    tmp_path: Path, native_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    boot = trixie_card(tmp_path / "boot")
    ca = make_ca(tmp_path)
    config = tmp_path / "fleet.toml"
    config.write_text(MQTTS_CONFIG)
    code, printed = flash("--boot", boot, "--id", "line-5", "--bundle", native_bundle, "--config",
                          config, "--ca", ca["cert"], "--ca-key", ca["key"])  # fmt: skip
    assert code == 0, printed
    root = tmp_path / "root"
    run = subprocess.run(no_network(runcmd_for(boot, root)), capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    installed_in(root, "line-5")
    assert mode(root / "etc/edgeline/tls/client.key") == 0o600
    assert (root / "etc/edgeline/tls/client.crt").read_bytes() == (
        boot / "edgeline/tls/client.crt"
    ).read_bytes()
    assert not (boot / "edgeline" / "tls" / "client.key").exists()
    assert not (boot / "edgeline" / "edgeline.tar.gz").exists()
    again = subprocess.run(no_network(runcmd_for(boot, root)), capture_output=True, text=True)
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout


def test_flash_imports_cryptography_and_tomlkit_only_when_it_uses_them() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import edge.cli, edge.deploy.flash, sys;"
         " print('cryptography' in sys.modules, 'tomlkit' in sys.modules)"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert done.stdout.split() == ["False", "False"], done.stdout + done.stderr
