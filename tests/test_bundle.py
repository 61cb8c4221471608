"""`edge bundle` and install.sh: a bundle built here installs with no network into a root,
and what it installs runs; bundles for the Pis carry wheels that run on a Pi."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from edge.bench.mosquitto import Mosquitto
from edge.cli import main
from edge.deploy.bundle import (
    TARGETS,
    NoBinaryWheel,
    _pip_download,
    target_requirements,
    wheel_fits,
)
from edge.deploy.install import unpack
from tests.bundles import EDGE, REPO, bundle, need_index, no_network

INSTALL_SH = REPO / "edge" / "deploy" / "install.sh"


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def wheel_with(tmp_path: Path, requires: list[str]) -> Path:
    wheel = tmp_path / "edgeline-9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
        archive.writestr("edgeline-9.9.dist-info/METADATA", f"Name: edgeline\n{meta}")
    return wheel


def test_requirements_follow_the_target_not_the_machine_building_the_bundle(
    tmp_path: Path,
) -> None:
    # pip evaluates markers for the interpreter it runs in (x86_64 here): asked for armv7l
    # it would try onnxruntime, which has no armv7l wheel, and refuse the whole bundle.
    wheel = wheel_with(
        tmp_path,
        [
            "paho-mqtt<3,>=2.1",
            "onnxruntime>=1.16; platform_machine == 'x86_64' or platform_machine == 'aarch64'",
            "amqtt>=0.11; extra == 'sim'",
        ],
    )
    arm = target_requirements(wheel, TARGETS["linux_armv7l"], "3.11")
    aarch64 = target_requirements(wheel, TARGETS["linux_aarch64"], "3.13")
    assert [r.split("<")[0].split(">")[0] for r in arm] == ["paho-mqtt"]
    assert any(r.startswith("onnxruntime") for r in aarch64)
    assert not any("amqtt" in r or ";" in r for r in arm + aarch64)


@pytest.mark.parametrize(
    ("wheel", "target", "python", "fits"),
    [
        ("numpy-2.4.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
         "linux_aarch64", "3.11", True),
        ("numpy-2.4.6-cp311-cp311-manylinux_2_17_aarch64.whl", "linux_aarch64", "3.13", False),
        ("numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl", "linux_aarch64", "3.11", False),
        ("protobuf-7.3-cp310-abi3-manylinux2014_aarch64.whl", "linux_aarch64", "3.13", True),
        ("smbus2-0.6.1-py2.py3-none-any.whl", "linux_armv7l", "3.11", True),
        ("numpy-2.4.6-cp311-cp311-musllinux_1_2_armv7l.whl", "linux_armv7l", "3.11", False),
        ("garbage.whl", "linux_armv7l", "3.11", False),
    ],
)  # fmt: skip
def test_wheel_tags_decide_what_runs_on_a_target(
    wheel: str, target: str, python: str, fits: bool
) -> None:
    assert wheel_fits(wheel, TARGETS[target], python) is fits


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--target", "linux_mips", "--out", "x.tar.gz"], "--target: expected one of"),
        (["--target", "linux_aarch64", "--python", "3.9", "--out", "x.tar.gz"], "--python"),
        (["--target", "linux_aarch64", "--out", "x.zip"], "--out: expected a FILE.tar.gz"),
        (["--target", "linux_aarch64", "--out", "/nonexistent/x.tar.gz"], "is not a directory"),
        (["--target", "linux_armv7l", "--out", "x.tar.gz", "--models", "/nonexistent"],
         "--models: expected a directory"),
    ],
)  # fmt: skip
def test_bad_bundle_arguments_exit_2_in_one_line(
    argv: list[str], reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli("bundle", *argv)
    assert code == 2 and reason in err and len(err.splitlines()) == 1, err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


def test_a_config_that_is_not_toml_is_named(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("[device\nid = 1\n")
    code, _, err = run_cli(
        "bundle", "--target", "linux_aarch64", "--out", str(tmp_path / "b.tar.gz"),
        "--config", str(config),
    )  # fmt: skip
    assert code == 2 and f"--config: {config}: expected a TOML file" in err, err


def test_install_refuses_what_is_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tar")
    code, _, err = run_cli("install", "--bundle", str(junk), "--root", str(tmp_path / "r"))
    assert code == 2 and "not an edgeline bundle" in err and "Traceback" not in err
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        info = tarfile.TarInfo("top/README")
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match=r"no install\.sh at its top"):
        unpack(empty, tmp_path / "u")
    escaping = tmp_path / "escaping.tar.gz"
    with tarfile.open(escaping, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("top/../../x"), io.BytesIO(b""))
    with pytest.raises(ValueError, match=r"it holds 'top/\.\./\.\./x'"):
        unpack(escaping, tmp_path / "v")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("script", ["install.sh", "remote.sh"])
def test_the_device_scripts_are_shellcheck_clean(script: str) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (Debian's shellcheck; tools/setup dev adds it)")
    done = subprocess.run([shellcheck, str(INSTALL_SH.with_name(script))], capture_output=True,
                          text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout


def test_install_sh_refuses_unknown_arguments(tmp_path: Path) -> None:
    bad = subprocess.run(["sh", str(INSTALL_SH), "--rot", str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "unknown argument: --rot" in bad.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_bundle_installs_offline_into_a_root_and_runs_from_there(
    tmp_path: Path, mosquitto: Mosquitto, native_bundle: Path
) -> None:
    built = native_bundle
    top = unpack(built, tmp_path / "unpacked")
    manifest = json.loads((top / "manifest.json").read_text())
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert manifest["target"] == f"linux_{os.uname().machine}" and manifest["python"] == python
    root = tmp_path / "root"
    install = no_network(["sh", str(top / "install.sh"), "--root", str(root)])

    first = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert "skipped (--root" in first.stdout and "creating the system user" in first.stdout
    version = manifest["version"]
    assert os.readlink(root / "opt/edgeline/current") == f"releases/{version}"
    edge = root / "opt/edgeline/current/bin/edge"
    assert stat.S_IMODE((root / "var/lib/edgeline").stat().st_mode) == 0o700
    config = root / "etc/edgeline/edge.toml"
    assert config.read_bytes() == (REPO / "examples/every-sensor.toml").read_bytes()
    assert (root / "etc/edgeline/models/vibration.onnx").is_file()
    unit = (root / "etc/systemd/system/edgeline.service").read_text()
    assert "ExecStart=/opt/edgeline/current/bin/edge run --config /etc/edgeline/edge.toml" in unit

    # Idempotent, and a config the operator edited is never overwritten.
    config.write_text(config.read_text() + "\n# edited on the device\n")
    # The second time through `edge install`, which unpacks the bundle and runs the same.
    again = subprocess.run([*EDGE, "install", "--bundle", str(built), "--root", str(root)],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout and "kept" in again.stdout, again.stdout
    assert config.read_text().endswith("# edited on the device\n")

    # What got installed runs on its own: nothing from this checkout or its venv.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    checked = subprocess.run([str(edge), "check-config", str(config)],
                             capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    assert checked.returncode == 0 and "device 'bench-01'" in checked.stdout, checked.stderr
    simulated = subprocess.run(
        [str(edge), "simulate", "--config", str(config), "--speed", "max", "--duration", "60",
         "--broker", mosquitto.url, "--state-dir", str(tmp_path / "state"), "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert simulated.returncode == 0, simulated.stderr
    assert "0 missing" in simulated.stdout, simulated.stdout
    where = subprocess.run([str(edge.parent / "python"), "-c", "import edge; print(edge.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)  # fmt: skip
    installed = Path(where.stdout.strip()).resolve()
    assert installed.is_relative_to(root / "opt/edgeline/releases" / version), where.stdout


@pytest.mark.slow
def test_bundles_for_the_pis_carry_wheels_that_run_there(tmp_path: Path) -> None:
    need_index()
    for target in ("linux_aarch64", "linux_armv7l"):
        top = unpack(bundle(tmp_path, target), tmp_path / target)
        manifest = json.loads((top / "manifest.json").read_text())
        wheels = sorted(p.name for p in (top / "wheels").iterdir())
        assert all(wheel_fits(w, TARGETS[target], "3.11") for w in wheels), wheels
        names = {w.split("-")[0].lower() for w in wheels}
        assert {"edgeline", "paho_mqtt", "gpiozero", "smbus2"} <= names
        for name, digest in manifest["files"].items():
            assert hashlib.sha256((top / name).read_bytes()).hexdigest() == digest, name
        if target == "linux_aarch64":
            assert {"numpy", "onnxruntime"} <= names
            assert manifest["system_packages"] == [] and not manifest["system_site_packages"]
            assert manifest["left_out"] == []
        else:  # PyPI has no 32-bit ARM numpy: Debian's stands in, onnxruntime is left out
            assert not {"numpy", "onnxruntime"} & names
            assert manifest["system_packages"] == ["python3-numpy"]
            assert manifest["left_out"] == ["onnxruntime"]
            assert "SYSTEM_SITE_PACKAGES=1" in (top / "bundle.env").read_text()


def test_a_package_without_a_binary_wheel_is_refused_by_name(tmp_path: Path) -> None:
    need_index()
    # docopt has only ever been published as a source distribution.
    with pytest.raises(NoBinaryWheel, match="no binary wheel for linux_aarch64") as refused:
        _pip_download(["smbus2", "docopt==0.6.2"], TARGETS["linux_aarch64"], "3.11", tmp_path)
    assert refused.value.packages == ("docopt",)


AS_ROOT = """
set -eu
mount --make-rprivate /
mount -t tmpfs tmpfs "$1"
for d in etc opt var/lib; do  # writes land in the tmpfs, never in this machine's /etc
    n=$(echo "$d" | tr / _); mkdir -p "$1/$n.up" "$1/$n.wk"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$1/$n.up,workdir=$1/$n.wk" "/$d"
done
getent group gpio >/dev/null || groupadd --system gpio
sh "$2/install.sh"
id -nG edgeline
stat -c '%U:%G %a' /var/lib/edgeline /etc/edgeline/edge.toml
readlink /opt/edgeline/current
sh "$2/install.sh"
"""


@pytest.mark.slow
def test_as_root_the_installer_makes_the_user_and_owns_the_state_to_it(
    tmp_path: Path, native_bundle: Path
) -> None:
    # The real thing, not --root: in a mount namespace whose /etc, /opt and /var/lib are
    # overlays on a tmpfs, with no network, so this machine keeps no user and no file.
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a mount namespace with overlays)")
    top = unpack(native_bundle, tmp_path / "unpacked")
    (tmp_path / "overlay").mkdir()
    script = tmp_path / "as-root.sh"
    script.write_text(AS_ROOT)
    done = subprocess.run(
        ["unshare", "-m", "-n", "sh", str(script), str(tmp_path / "overlay"), str(top)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if "overlay" in done.stderr and "mount" in done.stderr:
        pytest.skip(f"overlay mounts do not work here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "edgeline: created the system user edgeline" in lines
    groups = next(line for line in lines if line.startswith("edgeline "))
    assert {"edgeline", "gpio", "dialout"} <= set(groups.split()), groups
    assert "edgeline:edgeline 700" in lines and "root:edgeline 640" in lines
    assert "releases/" + json.loads((top / "manifest.json").read_text())["version"] in lines
    assert "edgeline: installed /etc/systemd/system/edgeline.service" in lines
    assert lines[-1].startswith("edgeline: nothing changed"), done.stdout
    assert subprocess.run(["id", "edgeline"], capture_output=True).returncode != 0
