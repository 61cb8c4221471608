"""`edge deploy`: a release goes live over SSH only once the device says it is healthy.

End to end against a real OpenSSH server on loopback with a throwaway key, the device being
a directory on this machine (``--root``) whose service really runs, a real Mosquitto as its
broker, and gpiozero's mock pins as its hardware: a good release goes live; a release that
never turns healthy is rolled back and the release before runs again; ``--rollback`` by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import __version__
from edge.bench.mosquitto import Mosquitto, free_port
from edge.deploy.deploy import Health, bundle_version
from edge.deploy.ssh import Host, check_host, parse_lines
from edge.errors import UsageError
from tests.bundles import need_index
from tests.oracles import has_traceback
from tests.sshd import Sshd, find_sshd
from tests.test_bundle import run_cli
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
EDGE = [sys.executable, "-m", "edge.cli"]
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def healthy_status(version: str = "1.0", pid: int = 42) -> dict[str, object]:
    return {"state": "running", "fresh": True, "age_s": 0.4, "version": version, "pid": pid,
            "sensors": {"door": {"state": "ok"}}, "link": {"state": "online"},
            "outbox": {"pending": 0}, "readings": 10}  # fmt: skip


# --- what the device says, read ------------------------------------------------------------


def test_a_healthy_device_has_no_problems() -> None:
    assert Health("active", "42", healthy_status()).problems("1.0") == []


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        (Health("failed", "", None), "the service is failed"),
        (Health("active", "42", None), "no status file yet"),
        (Health("active", "43", healthy_status()), "not the running process's"),
        (Health("active", "42", {**healthy_status(), "fresh": False}), "s old"),
        (Health("active", "42", healthy_status("0.9")), "runs edgeline 0.9, not 1.0"),
        (Health("active", "42", {**healthy_status(), "sensors": {"door": {"state": "degraded"}}}),
         "sensors not ok: door"),
        (Health("active", "42", {**healthy_status(), "link": {"state": "connecting",
                                                              "last_error": "refused"}}),
         "the link is connecting (refused)"),
    ],
)  # fmt: skip
def test_each_way_of_being_unhealthy_is_named(health: Health, expected: str) -> None:
    problems = health.problems("1.0")
    assert problems and expected in "; ".join(problems)


scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    status=st.dictionaries(
        st.sampled_from(["state", "fresh", "version", "pid", "sensors", "link", "outbox"]),
        json_values,
    ),
    active=st.sampled_from(["active", "inactive", "failed", ""]),
)
def test_any_status_file_reads_as_healthy_or_names_why_not(
    status: dict[str, object], active: str
) -> None:
    health = Health.parse({"active": active, "pid": "42"}, json.dumps(status))
    problems = health.problems("1.0")
    link = status.get("link")
    healthy = (
        active == "active" and status.get("pid") == 42 and bool(status.get("fresh"))
        and status.get("version") == "1.0"
        and isinstance(link, dict) and link.get("state") == "online"
    )  # fmt: skip
    if not healthy:
        assert problems and all(isinstance(p, str) and p for p in problems)


@given(
    facts=st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True),
        st.text(st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=20),
    ),
    rest=st.text(max_size=40),
)  # fmt: skip
def test_the_lines_remote_sh_prints_read_back(facts: dict[str, str], rest: str) -> None:
    text = "".join(f"{key}={value}\n" for key, value in facts.items()) + "status:\n" + rest
    assert parse_lines(text) == (facts, rest)


# --- what is refused before anything is sent -------------------------------------------------


@given(st.text(min_size=1, max_size=40))
def test_no_host_can_smuggle_an_ssh_option_or_a_shell_word(destination: str) -> None:
    try:
        check_host(Host(destination))
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert not destination.startswith("-")
    assert set(destination) <= set(string.ascii_letters + string.digits + "._-@[]:")


@pytest.mark.parametrize(
    "option",
    ["ProxyCommand=sh -c 'touch /tmp/x'", "proxycommand=nc %h %p", "LocalCommand=id",
     "PermitLocalCommand=yes", "KnownHostsCommand=/bin/true", "NoEquals", "Port="],
)  # fmt: skip
def test_ssh_options_that_run_programs_here_are_refused(option: str) -> None:
    with pytest.raises(UsageError, match="--ssh-option"):
        check_host(Host("pi@raspberrypi.local", options=(option,)))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--host", "-oProxyCommand=touch /tmp/owned"], "--host: expected user@host"),
        (["--host", "pi@pi", "--port", "0"], "--port"),
        (["--host", "pi@pi", "--root", "relative/dir"], "--root"),
        (["--host", "pi@pi", "--timeout", "0"], "--timeout"),
        (["--host", "pi@pi", "--bundle", "/nonexistent.tar.gz"], "no such file"),
        (["--host", "pi@pi", "--rollback", "--bundle", __file__], "--rollback"),
        (["--host", "pi@pi", "--identity", "/nonexistent/key"], "--identity"),
    ],
)  # fmt: skip
def test_bad_deploy_arguments_exit_2_in_one_line(argv: list[str], expected: str) -> None:
    code, _, err = run_cli("deploy", *argv)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not has_traceback(err)


def test_a_file_that_is_not_a_bundle_is_named(tmp_path: Path) -> None:
    not_bundle = tmp_path / "x.tar.gz"
    not_bundle.write_bytes(b"not a tar file")
    with pytest.raises(UsageError, match="not an edgeline bundle"):
        bundle_version(not_bundle)


def test_a_device_that_does_not_answer_is_a_failure_in_one_line(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    code, out, err = run_cli("deploy", "--host", "pi@127.0.0.1", "--port", str(free_port()),
                             "--identity", str(key), "--timeout", "5")  # fmt: skip
    assert code == 1 and "cannot reach pi@127.0.0.1" in err, (out, err)
    assert len(err.strip().splitlines()) == 1 and not has_traceback(err)


# --- end to end ------------------------------------------------------------------------------


def release_source(into: Path, version: str, broken: bool = False) -> Path:
    """A copy of this checkout as edgeline ``version``; ``broken``: one whose runtime dies
    as it starts (as a release with a bad import would)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, into / name)
    for package in ("edge", "sensors", "models", "firmware_bridge"):
        shutil.copytree(REPO / package, into / package, ignore=ignore)
    for path, line in ((into / "pyproject.toml", 'version = "{}"'),
                       (into / "edge" / "__init__.py", '__version__ = "{}"')):  # fmt: skip
        text = path.read_text()
        assert line.format(__version__) in text
        path.write_text(text.replace(line.format(__version__), line.format(version), 1))
    if broken:
        with (into / "edge" / "runtime" / "runtime.py").open("a") as runtime:
            runtime.write('\nraise RuntimeError("this release is broken on purpose")\n')
    return into


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two bundles for this machine: a good next release, and a broken one after it (the
    first release is built by ``edge deploy`` itself, from this checkout)."""
    need_index()
    from edge.deploy.bundle import build_bundle

    tmp = tmp_path_factory.mktemp("releases")
    target = f"linux_{os.uname().machine}"
    built = {}
    for version, broken in (("99.0.1", False), ("99.0.2", True)):
        source = tmp / f"src-{version}"
        source.mkdir()
        release_source(source, version, broken)
        out = tmp / f"edgeline-{version}.tar.gz"
        built[version] = build_bundle(target, out, PYTHON, source=source).path
    return built


@pytest.fixture
def device(tmp_path: Path) -> Sshd:
    executable = find_sshd()
    if executable is None:
        pytest.fail("no sshd: tools/setup dev installs Debian's openssh-server")
    # The device's environment: its Python, and gpiozero's mock pins as its hardware.
    env = {"PYTHON": sys._base_executable, "GPIOZERO_PIN_FACTORY": "mock"}
    return Sshd(tmp_path / "sshd", executable, env)


def status_of(root: Path) -> dict[str, object]:
    from edge.runtime.status_file import read_status

    return read_status(root / "var/lib/edgeline")


def service_pid(root: Path) -> int:
    return int((root / "run/edgeline.pid").read_text())


def alive(pid: int) -> bool:
    """Running, not a zombie that nobody has reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.slow
def test_a_good_release_goes_live_and_a_bad_one_is_rolled_back(
    tmp_path: Path, mosquitto: Mosquitto, device: Sshd, releases: dict[str, Path]
) -> None:
    root = tmp_path / "device"
    root.mkdir()
    (root / "etc/edgeline").mkdir(parents=True)
    (root / "etc/edgeline/edge.toml").write_text(
        f'[device]\nid = "pi-deploy"\n'
        f'[storage]\nstate_dir = "{root / "var/lib/edgeline"}"\nstatus_interval = 0.5\n'
        f'[uplink]\nbroker = "{mosquitto.url}"\n'
        '[[sensors]]\nid = "door"\ntype = "gpio.input"\npin = 27\ninterval = 0.1\n'
    )

    def deploy(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EDGE, "deploy", *device.ssh_args(), "--root", str(root), *argv],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    opt = root / "opt/edgeline"
    with device:
        try:
            # The first release, built for what the device says it is (this machine, its
            # Python) from this checkout, on a device with nothing installed: it goes live.
            first = deploy("--timeout", "60")
            assert first.returncode == 0, (first.stdout, first.stderr, device.log())
            machine = f"linux_{os.uname().machine}"
            assert f"building a bundle for {machine}, Python {PYTHON}" in first.stdout
            assert f"edgeline {__version__} is live" in first.stdout
            assert os.readlink(opt / "current") == f"releases/{__version__}"
            running = status_of(root)
            assert running["version"] == __version__ and running["pid"] == service_pid(root)

            # The next good release replaces it; the one before is kept to go back to.
            second = deploy("--bundle", str(releases["99.0.1"]), "--timeout", "60")
            assert second.returncode == 0, (second.stdout, second.stderr)
            assert "edgeline 99.0.1 is live" in second.stdout
            assert os.readlink(opt / "current") == "releases/99.0.1"
            assert os.readlink(opt / "previous") == f"releases/{__version__}"
            assert not alive(running["pid"])  # type: ignore[arg-type]
            good = status_of(root)
            assert good["version"] == "99.0.1" and good["fresh"]

            # A release whose runtime dies at start never turns healthy: rolled back.
            bad = deploy("--bundle", str(releases["99.0.2"]), "--timeout", "15")
            assert bad.returncode == 1, (bad.stdout, bad.stderr)
            assert "edgeline 99.0.2 not healthy" in bad.stdout, bad.stdout
            assert "RuntimeError: this release is broken on purpose" in bad.stdout  # its log
            assert "rolling back to 99.0.1" in bad.stdout
            assert "edgeline 99.0.1 is live" in bad.stdout
            assert os.readlink(opt / "current") == "releases/99.0.1"
            assert os.readlink(opt / "previous") == f"releases/{__version__}"
            assert sorted(p.name for p in (opt / "releases").iterdir()) == [__version__, "99.0.1"]
            again = status_of(root)
            assert again["version"] == "99.0.1" and again["fresh"]
            assert again["pid"] == service_pid(root) and alive(service_pid(root))
            assert again["pid"] != good["pid"]  # restarted on the release before
            log = (root / "var/log/edgeline.log").read_text()
            assert "broken on purpose" in log

            # By hand: back to the first release.
            by_hand = deploy("--rollback", "--timeout", "60")
            assert by_hand.returncode == 0, (by_hand.stdout, by_hand.stderr)
            assert f"rolling back from 99.0.1 to {__version__}" in by_hand.stdout
            assert os.readlink(opt / "current") == f"releases/{__version__}"
            assert os.readlink(opt / "previous") == "releases/99.0.1"
            wait_until(lambda: status_of(root)["version"] == __version__, timeout=30)
        finally:
            pidfile = root / "run/edgeline.pid"
            if pidfile.exists() and alive(service_pid(root)):
                os.kill(service_pid(root), signal.SIGTERM)
                wait_until(lambda: not alive(service_pid(root)), timeout=30)
