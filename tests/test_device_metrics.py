"""The device's metrics: the text format read back by prometheus-client's own parser, the
names and types docs/integrations.md documents, the ``[metrics]`` and heartbeat keys'
validation, and a device that never asks for the port never loading prometheus-client.

The end-to-end scrape of a running device (textfile and port, against a real Mosquitto) is
in tests/test_heartbeat.py.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from edge.bench.mosquitto import free_port
from edge.clock import VirtualClock
from edge.config import metrics as metrics_config
from edge.config.device import parse
from edge.errors import ConfigError
from edge.outbox.stats import OutboxStats
from edge.runtime.health import Figures, SensorFigures
from edge.runtime.metrics import Family, Sample, exposition, families
from edge.runtime.runtime import Runtime
from edge.sim.console import Console
from edge.sim.hardware import SimulatedHardware
from edge.sim.scenario import parse_scenario
from edge.sim.simulator import for_device
from edge.uplink.link import UplinkStats

ROOT = Path(__file__).resolve().parent.parent
BASE = '[device]\nid = "m-01"\n\n[uplink]\nbroker = "mqtt://127.0.0.1:1"\n'


def figures(**changes: object) -> Figures:
    stats = OutboxStats(stream="abc", device="m-01", last_seq=12, pending=3,
                        pending_by_priority={3: 3}, delivered=9, evicted=0,
                        oldest_age_s=4.5)  # fmt: skip
    values: dict[str, object] = dict(
        taken=1060.0, uptime_s=60.0, polls=600, skipped_polls=0, lateness_p99_s=0.0004,
        lateness_sum_s=0.1, sensors={"temp": SensorFigures(600, 2, False),
                                     'odd"name\\': SensorFigures(0, 5, True)},
        outbox=stats, queued=1, link=UplinkStats(state="online", connects=1, acked=9),
        cpu_seconds=1.25, rss_bytes=38_000_000, written_bytes=1_000_000,
        card_bytes=32_000_000_000, card_tbw_per_gb=0.1,
    )  # fmt: skip
    values.update(changes)
    return Figures(**values)  # type: ignore[arg-type]


def parsed(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


# --- names, types and the documented table ---------------------------------------------------


def documented() -> dict[str, str]:
    """Exposed name -> type, from the table under ## Prometheus in docs/integrations.md."""
    text = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
    section = text.split("## Prometheus", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(edgeline_[a-z_]+)(?:\{[^`]*\})?` \| (\w+) \|", section, re.M)
    return dict(rows)


def test_every_metric_is_documented_with_its_name_and_type() -> None:
    exposed = {family.exposed: family.kind for family in families(figures(), device="m-01",
                                                                    version="1.0")}  # fmt: skip
    assert exposed == documented()


def test_names_follow_prometheus_conventions() -> None:
    text = exposition(families(figures(), device="m-01", version="1.0"))
    for family in text_string_to_metric_families(text):
        assert re.fullmatch(r"edgeline_[a-z0-9_]+", family.name), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name == f"{family.name}_total"
            else:
                assert not sample.name.endswith("_total"), sample.name
        # Units, in base units, in the names: seconds and bytes, never ms, days or MB.
        assert not re.search(r"_(ms|milliseconds|minutes|hours|days|kb|mb|kib|mib)(_|$)",
                             family.name)  # fmt: skip
    found = parsed(text)
    assert found["edgeline_poll_lateness_seconds"] == "summary"
    assert found["edgeline_process_cpu_seconds"] == "counter"  # the parser drops _total
    assert found["edgeline_process_resident_memory_bytes"] == "gauge"


def test_unknown_figures_are_absent_not_zero() -> None:
    """No procfs, no card size: those series are missing (Prometheus' "unknown"), and the
    card's life needs both a size and a write rate."""
    text = exposition(families(figures(rss_bytes=None, written_bytes=None, card_bytes=None),
                               device="m-01", version="1.0"))  # fmt: skip
    names = parsed(text)
    for gone in ("edgeline_process_resident_memory_bytes", "edgeline_disk_written_bytes",
                 "edgeline_card_size_bytes", "edgeline_card_life_estimate_seconds"):  # fmt: skip
        assert gone not in names
    assert figures(written_bytes=0).card_life_days is None  # nothing written: no rate
    life = figures().card_life_days
    assert life is not None
    # 1 MB in 60 s is 1.44 GB a day; 32 GB x 0.1 TB/GB = 3.2 TB lasts 2,222 days.
    assert math.isclose(life, 32e9 * 0.1 * 1000 / (1e6 / 60 * 86_400))


# --- the text format, read back by prometheus-client's parser --------------------------------

label_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
numbers = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=True, allow_infinity=True),
)


@given(
    values=st.dictionaries(label_text, numbers, min_size=1, max_size=5),
    # Help texts are ours (constants): words, backslashes, a line break to escape.
    help_text=st.from_regex(r"[ -~\n]{0,60}", fullmatch=True).map(str.strip),
    kind=st.sampled_from(["counter", "gauge"]),
)
def test_any_label_value_and_number_reads_back_unchanged(
    values: dict[str, float], help_text: str, kind: str
) -> None:
    suffix = "_total" if kind == "counter" else ""
    samples = tuple(Sample(suffix, (("sensor", k),), v) for k, v in values.items())
    family = Family("edgeline_x", kind, help_text, samples)  # type: ignore[arg-type]
    [read] = list(text_string_to_metric_families(exposition([family])))
    assert (read.name, read.type, read.documentation) == ("edgeline_x", kind, help_text)
    got = {s.labels["sensor"]: s.value for s in read.samples}
    assert got.keys() == values.keys()
    for key, number in values.items():
        assert got[key] == float(number) or (math.isnan(got[key]) and math.isnan(number))


# --- config: [metrics], heartbeat, the card ---------------------------------------------------

# (TOML before the [device] table, TOML after the [uplink] table, the problem)
BAD = [
    ("", "heartbeat = 0.5", "uplink.heartbeat: expected 0 (no heartbeat) or a number of"
     " seconds from 1 to 86400, found number 0.5"),
    ("", "heartbeat = -60", "uplink.heartbeat: expected 0 (no heartbeat)"),
    ("", "heartbeat = inf", "uplink.heartbeat: expected 0 (no heartbeat)"),
    ("", "heartbeat = '60'", "uplink.heartbeat: expected a number, found string '60'"),
    ("", "[storage]\ncard_bytes = 32", "storage.card_bytes: expected the card's size in"
     " bytes, at least 67108864 (a 32 GB card: 32_000_000_000), found integer 32"),
    ("", "[storage]\ncard_bytes = 3.2e10", "storage.card_bytes: expected an integer"),
    ("", "[storage]\ncard_tbw_per_gb = 0",
     "storage.card_tbw_per_gb: expected a number from 0.001"),
    ("", "[metrics]\ntextfile = 'edgeline.prom'", "metrics.textfile: expected an absolute path"
     " ending in .prom (node_exporter reads only *.prom files), found string 'edgeline.prom'"),
    ("", "[metrics]\ntextfile = '/var/lib/node_exporter/edgeline.txt'",
     "metrics.textfile: expected an absolute path ending in .prom"),
    ("", "[metrics]\ntextfile = '/x.prom'\ninterval = 0.5",
     "metrics.interval: expected a number from 1.0 to 3600, found number 0.5"),
    ("", "[metrics]\ninterval = 30", "metrics.interval: expected textfile to be set too"),
    ("", "[metrics]\nport = 0",
     "metrics.port: expected an integer from 1 to 65535, found integer 0"),
    ("", "[metrics]\nport = 70000", "metrics.port: expected an integer from 1 to 65535"),
    ("", "[metrics]\nport = '9108'", "metrics.port: expected an integer from 1 to 65535,"
     " found string '9108'"),
    ("", "[metrics]\nhost = '0.0.0.0'", "metrics.host: expected port to be set too"),
    ("", "[metrics]\nport = 9108\nhost = 'my host'", "metrics.host: expected an IP address"
     " or a host name to listen on (127.0.0.1: this device only), found string 'my host'"),
    ("", "[metrics]\nprot = 9108", "metrics.prot: unknown key; did you mean 'port'?"),
    ("metrics = 9108", "", "metrics: expected a table, found integer 9108"),
]  # fmt: skip


@pytest.mark.parametrize(("top", "tail", "problem"), BAD, ids=[p for _, _, p in BAD])
def test_bad_values_are_refused_with_the_key_and_what_was_expected(
    top: str, tail: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse(f"{top}\n{BASE}{tail}\n", "m.toml")
    found = info.value.problems
    assert any(p.startswith(f"m.toml: {problem}") for p in found), found


def test_good_values_and_defaults() -> None:
    config = parse(BASE)
    assert config.uplink.heartbeat == 60.0 and not config.metrics.enabled
    assert config.storage.card_bytes is None and config.storage.card_tbw_per_gb == 0.1
    config = parse(BASE + "heartbeat = 0\n[storage]\ncard_bytes = 32_000_000_000\n"
                   "[metrics]\ntextfile = '/var/lib/node_exporter/edgeline.prom'\n"
                   "port = 9108\n")  # fmt: skip
    assert config.uplink.heartbeat == 0 and config.storage.card_bytes == 32_000_000_000
    assert config.metrics.every == 60.0 and config.metrics.listen == "127.0.0.1"
    assert config.summary().endswith(
        " Health: no heartbeat; metrics in /var/lib/node_exporter/edgeline.prom every 60 s;"
        " metrics at http://127.0.0.1:9108/metrics."
    )
    assert parse(BASE + "[metrics]\nport = 9108\nhost = '::'\n").metrics.listen == "::"


def test_a_port_without_prometheus_client_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics_config, "prometheus_client_installed", lambda: False)
    with pytest.raises(ConfigError) as info:
        parse(BASE + "[metrics]\nport = 9108\n", "m.toml")
    assert info.value.problems == [
        "m.toml: metrics.port: needs the prometheus-client package, which is not installed:"
        " pip install 'edgeline[metrics]'"
    ]
    parse(BASE + "[metrics]\ntextfile = '/x/edgeline.prom'\n")  # the textfile needs nothing


@given(st.floats(allow_nan=False) | st.integers(min_value=-(10**6), max_value=10**6))
def test_heartbeat_is_accepted_iff_off_or_from_1_to_86400(period: float) -> None:
    text = BASE + f"heartbeat = {period!r}\n"
    ok = period == 0 or 1 <= period <= 86_400
    try:
        config = parse(text)
    except ConfigError as exc:
        assert not ok, exc.problems
        assert exc.problems[0].startswith("<config>: uplink.heartbeat: expected 0 (no heartbeat)")
    else:
        assert ok and config.uplink.heartbeat == period


@given(st.text(max_size=80))
def test_any_host_text_is_accepted_or_refused_with_one_clear_line(host: str) -> None:
    escaped = host.replace("\\", "\\\\").replace('"', '\\"')
    escaped = "".join(c if c.isprintable() else f"\\U{ord(c):08x}" for c in escaped)
    try:
        config = parse(BASE + f'[metrics]\nport = 9108\nhost = "{escaped}"\n')
    except ConfigError as exc:
        [problem] = exc.problems
        assert problem.startswith("<config>: metrics.host: expected an IP address or a host name")
    else:
        assert config.metrics.listen == host and "\n" not in host and host.strip() == host


# --- the runtime: a missing directory, a taken port, the device path stays lean ---------------


def runtime_with(tmp_path: Path, metrics: str) -> Runtime:
    text = (BASE.replace("mqtt://127.0.0.1:1", f"mqtt://127.0.0.1:{free_port()}")
            + f'[storage]\nstate_dir = "{tmp_path / "state"}"\n[metrics]\n{metrics}\n'
            + '[[sensors]]\nid = "t"\ntype = "i2c.tmp102"\ninterval = 1.0\n'
            + "[simulation]\nduration = 10.0\n")  # fmt: skip
    scenario = parse_scenario(text, str(tmp_path / "m.toml"), overrides={})
    clock = VirtualClock()
    hardware = SimulatedHardware(scenario, clock)
    return Runtime(scenario.config, hardware=hardware.hardware, clock=clock)


def test_a_textfile_directory_that_is_missing_is_a_config_error_at_start(tmp_path: Path) -> None:
    missing = tmp_path / "node_exporter" / "edgeline.prom"
    with pytest.raises(ConfigError) as info:
        runtime_with(tmp_path, f'textfile = "{missing}"')
    [problem] = info.value.problems
    assert problem.startswith(
        f"{tmp_path / 'm.toml'}: metrics.textfile: expected a directory this user may write in,"
        f" found '{missing.parent}' missing (create it, writable by the service's user"
    )


def test_a_taken_port_is_a_config_error_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            runtime_with(tmp_path, f"port = {port}")
    [problem] = info.value.problems
    assert problem == (
        f"{tmp_path / 'm.toml'}: metrics.port: cannot listen on 127.0.0.1:{port}:"
        " Address already in use"
    )
    # Nothing was left open: the same config starts once the port is free.
    device = runtime_with(tmp_path, f"port = {port}")
    device.close()


def test_only_a_port_loads_prometheus_client(tmp_path: Path) -> None:
    """In a fresh interpreter (this one has the parser loaded): a runtime with a textfile
    never imports prometheus-client; one with a port does."""
    (tmp_path / "node_exporter").mkdir()
    textfile = f'textfile = "{tmp_path / "node_exporter" / "edgeline.prom"}"'
    for metrics, loads in ((textfile, False), (f"port = {free_port()}", True)):
        text = (
            BASE.replace("mqtt://127.0.0.1:1", f"mqtt://127.0.0.1:{free_port()}")
            + f'[storage]\nstate_dir = "{tmp_path / "state"}"\n[metrics]\n{metrics}\n'
        )
        code = (
            "import sys\n"
            "from edge.clock import VirtualClock\n"
            "from edge.config.device import parse\n"
            "from edge.runtime.runtime import Runtime\n"
            f"config = parse({text!r})\n"
            "Runtime(config, hardware=None, clock=VirtualClock()).close()\n"
            "print('prometheus_client' in sys.modules)\n"
        )  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, check=True)  # fmt: skip
        assert done.stdout.strip() == str(loads)


def test_a_read_only_textfile_directory_names_the_systemd_drop_in(tmp_path: Path) -> None:
    """edgeline.service's ProtectSystem=strict mounts all but its own directories read-only:
    the same read-only bind mount here, in a mount namespace of our own (unshare)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    directory = tmp_path / "node_exporter"
    directory.mkdir()
    text = (BASE + f'[storage]\nstate_dir = "{tmp_path / "state"}"\n'
            + f'[metrics]\ntextfile = "{directory / "edgeline.prom"}"\n')  # fmt: skip
    code = (
        "from edge.clock import VirtualClock\n"
        "from edge.config.device import parse\n"
        "from edge.errors import ConfigError\n"
        "from edge.runtime.runtime import Runtime\n"
        "try:\n"
        f"    Runtime(parse({text!r}, 'm.toml'), hardware=None, clock=VirtualClock()).close()\n"
        "except ConfigError as exc:\n"
        "    print(exc.problems[0])\n"
    )
    mount = (
        f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory}"
        f' && exec {sys.executable} -c "$0"'
    )
    done = subprocess.run([unshare, "-rm", "sh", "-c", mount, code], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0 and done.stderr.startswith(("unshare:", "mount:")):
        pytest.skip(f"no mount namespace here: {done.stderr.strip()}")
    assert done.stdout.strip() == (
        f"m.toml: metrics.textfile: expected a directory this user may write in, found"
        f" '{directory}' read-only here (under edgeline.service's ProtectSystem=strict, allow"
        f" it with a drop-in: ReadWritePaths={directory})"
    ), done.stderr


# --- the simulator: its console, and several devices' metrics ---------------------------------


def test_the_console_prints_births_and_wills_not_heartbeats() -> None:
    out = io.StringIO()
    console = Console(0.0, out=out)
    birth = {"state": "online", "device": "m-01", "stream": "abc"}
    console.status("edgeline/m-01/status", birth)
    console.status("edgeline/m-01/status", {**birth, "health": {"outbox_pending": 0}})
    console.status("edgeline/m-01/status", {"state": "offline", "device": "m-01"})
    console.close()
    assert [line.split()[-1] for line in out.getvalue().splitlines()] == ["online", "offline"]


def test_several_simulated_devices_get_a_textfile_and_a_port_each(tmp_path: Path) -> None:
    text = (BASE + "[metrics]\ntextfile = '/var/lib/node_exporter/edgeline.prom'\nport = 9108\n"
            + "[simulation]\nduration = 10.0\n")  # fmt: skip
    scenario = parse_scenario(text, "m.toml", overrides={})
    configs = [for_device(scenario, i, 3, tmp_path).config for i in range(3)]
    assert [(c.metrics.textfile, c.metrics.port) for c in configs] == [
        (f"/var/lib/node_exporter/edgeline-m-01-00{i + 1}.prom", 9108 + i) for i in range(3)
    ]
    assert for_device(scenario, 0, 1, tmp_path).config.metrics == scenario.config.metrics
