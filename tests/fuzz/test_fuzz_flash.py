"""Fuzz: ``edge flash`` arguments and fleet files, in-process.

Hostile device ids, host names, SSIDs, countries, users and Wi-Fi key files for one card,
and hostile CSV bytes for a fleet: exit 0 or 2, never a traceback, never the Wi-Fi key in
what is printed, and on exit 2 nothing written (no card file, no key, no fleet directory).
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.oracles import has_traceback, run_cli

pytestmark = pytest.mark.fuzz

HOSTILE = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40)
ARG = st.one_of(
    HOSTILE,
    st.sampled_from(["", "-", "--", ".", "..", "a/b", "pi-01", "x" * 70, "Ünïcode", "GB"]),
)
SECRET = "Fuzz-Passphrase-42"


def write_bundle(path: Path) -> None:
    top = "edgeline-0.1.0-linux_aarch64-py3.13"
    members = {
        "install.sh": "#!/bin/sh\n",
        "manifest.json": json.dumps(
            {"name": "edgeline", "version": "0.1.0", "target": "linux_aarch64", "python": "3.13"}
        ),
        "edge.toml.example": '[device]\nid = "x"\n[uplink]\nbroker = "mqtt://localhost:1883"\n',
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-flash-") as directory:
        path = Path(directory)
        write_bundle(path / "bundle.tar.gz")
        yield path


def fresh_card(scratch: Path) -> Path:
    boot = scratch / "boot"
    shutil.rmtree(boot, ignore_errors=True)
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=tty1 root=PARTUUID=1-02 rootwait\n")
    (boot / "user-data").write_text("#cloud-config\n")
    return boot


def no_surrogates(argv: list[str]) -> list[str]:
    return [arg.encode("utf-8", "backslashreplace").decode("utf-8") for arg in argv]


@given(
    device_id=ARG,
    hostname=st.one_of(st.none(), ARG),
    ssid=st.one_of(st.none(), ARG),
    psk=st.one_of(st.none(), st.binary(max_size=80), st.just(SECRET.encode() + b"\n")),
    country=st.one_of(st.none(), ARG),
    user=st.one_of(st.none(), ARG),
)
@example(device_id="pi-01", hostname=None, ssid="net", psk=SECRET.encode(), country="GB",
         user=None)  # fmt: skip
@example(device_id="..", hostname=None, ssid=None, psk=None, country=None, user=None)
def test_flash_arguments_exit_0_or_2_without_a_traceback_or_the_key(
    scratch: Path,
    device_id: str,
    hostname: str | None,
    ssid: str | None,
    psk: bytes | None,
    country: str | None,
    user: str | None,
) -> None:
    boot = fresh_card(scratch)
    keys = scratch / "keys"
    shutil.rmtree(keys, ignore_errors=True)
    argv = ["flash", f"--boot={boot}", f"--id={device_id}", f"--keys={keys}",
            f"--bundle={scratch / 'bundle.tar.gz'}"]  # fmt: skip
    if hostname is not None:
        argv.append(f"--hostname={hostname}")
    if ssid is not None:
        argv.append(f"--wifi-ssid={ssid}")
    if psk is not None:
        (scratch / "psk").write_bytes(psk)
        (scratch / "psk").chmod(0o600)
        argv.append(f"--wifi-psk-file={scratch / 'psk'}")
    if country is not None:
        argv.append(f"--wifi-country={country}")
    if user is not None:
        argv.append(f"--user={user}")
    code, printed = run_cli(no_surrogates(argv))
    assert code in (0, 2), printed
    assert not has_traceback(printed) and printed.count("\n") == 1, printed
    assert SECRET not in printed
    if code == 2:
        assert sorted(p.name for p in boot.iterdir()) == ["cmdline.txt", "user-data"]
        assert not keys.exists()


@given(
    text=st.one_of(st.binary(max_size=300), HOSTILE.map(lambda t: ("id,hostname\n" + t).encode()))
)
@example(text=b"id\n\x00\n")
@example(text=b"\xef\xbb\xbfid\npi-1\n")
def test_fleet_files_exit_0_or_2_and_write_nothing_when_refused(scratch: Path, text: bytes) -> None:
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    (scratch / "devices.csv").write_bytes(text)
    code, printed = run_cli(["flash", f"--fleet={scratch / 'devices.csv'}", f"--out={out}",
                             "--os=trixie", f"--bundle={scratch / 'bundle.tar.gz'}"])  # fmt: skip
    assert code in (0, 2), printed
    assert not has_traceback(printed) and printed.count("\n") == 1, printed
    assert out.exists() == (code == 0)
