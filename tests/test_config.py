"""The config contract: one TOML file, validated at load into frozen typed objects, and every
problem reported as ``file: key.path: expected ..., found ...``."""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge.config.device import (
    Config,
    DetectorConfig,
    DeviceConfig,
    SensorConfig,
    StorageConfig,
    UplinkConfig,
    load,
    parse,
    validate,
)
from edge.errors import ConfigError, EdgelineError
from models import ThresholdParams
from sensors import SENSOR_TYPES, ads1115, bh1750, bme280, ina219, mpu6050, registers, sht3x
from sensors import tmp102 as tmp102_driver
from sensors.types import GpioEdgeParams, GpioInputParams, TMP102Params

FULL = """\
[device]
id = "pump-house-3"
rtc = true

[storage]
state_dir = "/data/edgeline"
durability = "normal"
commit_window_ms = 250

[uplink]
broker = "mqtts://broker.example.net:8884"
client_id = "edge-pump-3"
topic_prefix = "plant/north"
qos = 2
keepalive = 60
inflight = 5
protocol = "5"
username = "pump3"
password_file = "/etc/edgeline/password"
backoff_min = 1
backoff_max = 30.5

[[sensors]]
id = "water-temp"
type = "i2c.tmp102"
interval = 2
telemetry = true
bus = 3
address = 0x49

[[sensors]]
id = "door"
type = "gpio.input"
interval = 0.5
pin = 22
pull = "down"
active_low = false

[[sensors]]
id = "button"
type = "gpio.edge"
pin = 17

[[detectors]]
sensor = "water-temp"
type = "threshold"
above = 30.0
below = 2
hysteresis = 0.5
min_duration = 4
severity = "critical"

[[detectors]]
id = "door-open"
sensor = "door"
type = "threshold"
above = 0.5
"""

MINIMAL = """\
[device]
id = "d1"

[uplink]
broker = "mqtt://localhost"
"""


def problems_of(tmp_path: Path, text: str, name: str = "edge.toml") -> tuple[str, list[str]]:
    """Write ``text`` to a file, load it, and return (file name, problems); it must fail."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.problems, "a ConfigError must list at least one problem"
    return str(path), info.value.problems


def only_problem(tmp_path: Path, text: str) -> tuple[str, str]:
    source, problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    return source, problems[0]


TLS = MINIMAL.replace("mqtt://", "mqtts://")  # where a password may go


def with_sensor(sensor: str, detectors: str = "") -> str:
    return f"{MINIMAL}\n[[sensors]]\n{sensor}\n{detectors}"


TMP102 = 'id = "t"\ntype = "i2c.tmp102"\ninterval = 1'


# --- a good file ------------------------------------------------------------------------------


def test_full_config_loads_into_typed_values(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load(path)

    assert isinstance(config, Config)
    assert config.source == str(path)
    assert config.device == DeviceConfig(id="pump-house-3", rtc=True)
    assert config.storage == StorageConfig(
        state_dir="/data/edgeline", durability="normal", commit_window_ms=250
    )
    uplink = config.uplink
    assert isinstance(uplink, UplinkConfig)
    assert uplink.broker == "mqtts://broker.example.net:8884"
    assert (uplink.host, uplink.port, uplink.tls) == ("broker.example.net", 8884, True)
    assert uplink.client_id == "edge-pump-3"
    assert uplink.topic_prefix == "plant/north"
    assert (uplink.qos, uplink.keepalive, uplink.inflight) == (2, 60, 5)
    assert uplink.protocol == "5"
    assert uplink.username == "pump3"
    assert uplink.password_file == "/etc/edgeline/password"
    assert uplink.password_env is None
    # Integers given for float fields are coerced to float.
    assert uplink.backoff_min == 1.0 and type(uplink.backoff_min) is float
    assert uplink.backoff_max == 30.5

    assert isinstance(config.sensors, tuple)
    assert [s.id for s in config.sensors] == ["water-temp", "door", "button"]
    temp, door, button = config.sensors
    assert temp == SensorConfig("water-temp", "i2c.tmp102", 2.0, True, TMP102Params(3, 0x49))
    assert type(temp.interval) is float
    assert door == SensorConfig(
        "door", "gpio.input", 0.5, False, GpioInputParams(pin=22, pull="down", active_low=False)
    )
    # gpio.edge is interrupt-driven: no interval; params take their defaults.
    assert button == SensorConfig("button", "gpio.edge", None, False, GpioEdgeParams(pin=17))
    assert button.params.debounce == 0.05 and button.params.pull == "up"

    assert isinstance(config.detectors, tuple)
    first, second = config.detectors
    assert first == DetectorConfig(
        id="water-temp-threshold",  # default id: <sensor>-<type>
        sensor="water-temp",
        type="threshold",
        params=ThresholdParams(
            above=30.0, below=2.0, hysteresis=0.5, min_duration=4.0, severity="critical"
        ),
    )
    assert second.id == "door-open"
    assert second.params == ThresholdParams(above=0.5)
    assert second.params.severity == "warning"


def test_defaults_applied_to_a_minimal_config(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    config = load(path)
    assert config.device == DeviceConfig(id="d1", rtc=False)
    assert config.storage == StorageConfig("/var/lib/edgeline", "full", 100)
    uplink = config.uplink
    assert uplink == UplinkConfig(broker="mqtt://localhost")
    assert uplink.client_id is None
    assert uplink.topic_prefix == "edgeline"
    assert (uplink.qos, uplink.keepalive, uplink.inflight) == (1, 30, 20)
    assert uplink.protocol == "3.1.1"
    assert (uplink.backoff_min, uplink.backoff_max) == (0.5, 60.0)
    assert (uplink.host, uplink.port, uplink.tls) == ("localhost", 1883, False)
    assert uplink.password() is None
    assert config.sensors == () and config.detectors == ()


@pytest.mark.parametrize(
    ("target", "attribute"),
    [
        ("config", "source"),
        ("device", "id"),
        ("storage", "durability"),
        ("uplink", "qos"),
        ("sensor", "interval"),
        ("sensor params", "address"),
        ("detector", "sensor"),
        ("detector params", "above"),
    ],
)
def test_loaded_config_is_frozen(tmp_path: Path, target: str, attribute: str) -> None:
    path = tmp_path / "full.toml"
    path.write_text(FULL, encoding="utf-8")
    config = load(path)
    obj = {
        "config": config,
        "device": config.device,
        "storage": config.storage,
        "uplink": config.uplink,
        "sensor": config.sensors[0],
        "sensor params": config.sensors[0].params,
        "detector": config.detectors[0],
        "detector params": config.detectors[0].params,
    }[target]
    before = getattr(obj, attribute)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, attribute, "changed")
    assert getattr(obj, attribute) == before


def test_sensor_and_detector_collections_are_tuples(tmp_path: Path) -> None:
    config = parse(FULL, "full.toml")
    with pytest.raises(TypeError):
        config.sensors[0] = config.sensors[1]  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.detectors.append(config.detectors[0])  # type: ignore[attr-defined]


def test_summary_names_device_sensors_detectors_and_uplink() -> None:
    summary = parse(FULL, "full.toml").summary()
    assert "\n" not in summary
    assert summary.startswith("full.toml: device 'pump-house-3' polls 3 sensor(s)")
    # An I2C chip is named with its bus and its address, in hex as i2cdetect shows it.
    named = ("water-temp (i2c.tmp102 at 0x49 on bus 3)", "door (gpio.input)", "button (gpio.edge)")
    for text in named:
        assert text in summary
    assert "2 detector(s): water-temp-threshold on water-temp, door-open on door" in summary
    assert "mqtts://broker.example.net:8884" in summary
    assert "'plant/north/pump-house-3/'" in summary
    assert "QoS 2" in summary


def test_overrides_replace_keys(tmp_path: Path) -> None:
    path = tmp_path / "min.toml"
    path.write_text(MINIMAL, encoding="utf-8")
    config = load(
        path, overrides={"storage": {"state_dir": "/tmp/x"}, "uplink": {"broker": "mqtt://b:1"}}
    )
    assert config.storage.state_dir == "/tmp/x"
    assert (config.uplink.host, config.uplink.port) == ("b", 1)


# --- each class of problem: file, key path, expected, found --------------------------------


def test_wrong_type(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL + 'qos = "1"\n')
    assert problem == f"{source}: uplink.qos: expected an integer from 1 to 2, found string '1'"


def test_boolean_is_not_an_integer(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL + "keepalive = true\n")
    assert problem == (
        f"{source}: uplink.keepalive: expected an integer from 5 to 3600, found boolean True"
    )


def test_wrong_type_is_not_also_reported_missing(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL.replace('"d1"', "42"))
    assert problem == f"{source}: device.id: expected a string, found integer 42"


def test_out_of_range_tmp102_address(tmp_path: Path) -> None:
    text = with_sensor(TMP102) + '\n[[sensors]]\nid = "t2"\ntype = "i2c.tmp102"\n'
    text += "interval = 1\naddress = 0x50\n"
    source, problem = only_problem(tmp_path, text)
    assert problem == f"{source}: sensors[1].address: expected 0x48, 0x49, 0x4A or 0x4B, found 0x50"


def test_out_of_range_float(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, with_sensor(TMP102.replace("1", "0")))
    assert problem == (
        f"{source}: sensors[0].interval: expected a number from 0.001 to 86400, found integer 0"
    )


def test_literal_choice(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL + '[storage]\ndurability = "fast"\n')
    assert problem == (
        f"{source}: storage.durability: expected one of 'full', 'normal', found string 'fast'"
    )


def test_missing_required_keys(tmp_path: Path) -> None:
    source, problems = problems_of(tmp_path, '[[sensors]]\ntype = "gpio.input"\n')
    assert problems == [
        f"{source}: device.id: missing; expected a string",
        f"{source}: uplink.broker: missing; expected a string or a list of strings",
        f"{source}: sensors[0].id: missing; expected a string",
    ]


def test_missing_required_type_param(tmp_path: Path) -> None:
    source, problem = only_problem(
        tmp_path, with_sensor('id = "door"\ntype = "gpio.input"\ninterval = 1')
    )
    assert problem == f"{source}: sensors[0].pin: missing; expected an integer from 0 to 27"


def test_unknown_key_in_sensor_suggests_the_right_one(tmp_path: Path) -> None:
    text = with_sensor('id = "t"\ntype = "i2c.tmp102"\nintervall = 5')
    source, problems = problems_of(tmp_path, text)
    assert f"{source}: sensors[0].intervall: unknown key; did you mean 'interval'?" in problems
    # ... and the interval the user meant to give is then missing.
    assert f"{source}: sensors[0].interval: missing; expected seconds between polls" in problems
    assert len(problems) == 2


def test_unknown_section_suggests_the_right_one(tmp_path: Path) -> None:
    text = '[device]\nid = "d"\n[uplnk]\nbroker = "mqtt://h"\n'
    source, problems = problems_of(tmp_path, text)
    assert problems == [
        f"{source}: uplnk: unknown key; did you mean 'uplink'?",
        f"{source}: uplink.broker: missing; expected a string or a list of strings",
    ]


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL.replace('"d1"', '"d1"\nzzz = 1'))
    assert problem.startswith(f"{source}: device.zzz: unknown key (known keys: ")
    assert "id" in problem and "rtc" in problem


def test_unknown_sensor_type_with_suggestion(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, with_sensor(TMP102.replace("tmp102", "tmp012")))
    choices = ", ".join(sorted(SENSOR_TYPES))
    assert problem == (
        f"{source}: sensors[0].type: expected one of ({choices}), "
        "found 'i2c.tmp012'; did you mean 'i2c.tmp102'?"
    )


def test_unknown_detector_type_with_suggestion(tmp_path: Path) -> None:
    detector = '[[detectors]]\nsensor = "t"\ntype = "treshold"\nabove = 1\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, detector))
    assert problem.startswith(f"{source}: detectors[0].type: expected one of (")
    assert "found 'treshold'; did you mean 'threshold'?" in problem


def test_detector_on_missing_sensor(tmp_path: Path) -> None:
    detector = '[[detectors]]\nsensor = "tt"\ntype = "threshold"\nabove = 1\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, detector))
    assert problem == (
        f"{source}: detectors[0].sensor: expected a sensor id (t), found 'tt'; did you mean 't'?"
    )


def test_detector_on_a_declared_but_invalid_sensor_is_not_a_second_problem(tmp_path: Path) -> None:
    # The sensor's own problem is the one to fix; its detector must not add a misleading one.
    detector = '[[detectors]]\nsensor = "t"\ntype = "threshold"\nabove = 1\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102 + "\naddress = 0x50", detector))
    assert problem.startswith(f"{source}: sensors[0].address: ")


def test_detector_on_a_sensor_with_a_bad_common_key_is_not_a_second_problem(
    tmp_path: Path,
) -> None:
    detector = '[[detectors]]\nsensor = "t"\ntype = "threshold"\nabove = 1\n'
    sensor = TMP102.replace("interval = 1", 'interval = "1s"')
    source, problem = only_problem(tmp_path, with_sensor(sensor, detector))
    assert (
        problem == f"{source}: sensors[0].interval: expected a number from 0.001 to 86400, "
        "found string '1s'"
    )


def test_duplicate_sensor_ids(tmp_path: Path) -> None:
    text = with_sensor(TMP102) + "\n[[sensors]]\n" + TMP102 + "\n"
    source, problem = only_problem(tmp_path, text)
    assert problem == f"{source}: sensors[1].id: expected a unique id, found 't' again"


def test_duplicate_of_an_invalid_sensor_is_still_reported(tmp_path: Path) -> None:
    text = with_sensor(TMP102 + "\naddress = 0x50") + "\n[[sensors]]\n" + TMP102 + "\n"
    source, problems = problems_of(tmp_path, text)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{source}: sensors[0].address: ")
    assert problems[1] == f"{source}: sensors[1].id: expected a unique id, found 't' again"


def test_duplicate_detector_ids(tmp_path: Path) -> None:
    detector = '[[detectors]]\nsensor = "t"\ntype = "threshold"\nabove = 1\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, detector + detector))
    assert problem == (
        f"{source}: detectors[1].id: expected a unique id, found 't-threshold' again"
    )


def test_polled_sensor_without_interval(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, with_sensor('id = "t"\ntype = "i2c.tmp102"'))
    assert problem == f"{source}: sensors[0].interval: missing; expected seconds between polls"


def test_interrupt_driven_sensor_with_interval(tmp_path: Path) -> None:
    sensor = 'id = "b"\ntype = "gpio.edge"\npin = 17\ninterval = 1'
    source, problem = only_problem(tmp_path, with_sensor(sensor))
    assert problem.startswith(f"{source}: sensors[0].interval: not used by gpio.edge")


@pytest.mark.parametrize(
    "url",
    ["http://broker:1883", "tcp://broker", "ws://broker", "broker:1883", "mqtt://", "mqtt:///x"],
)
def test_bad_broker_url(tmp_path: Path, url: str) -> None:
    source, problem = only_problem(tmp_path, MINIMAL.replace("mqtt://localhost", url))
    assert problem == (
        f"{source}: uplink.broker: expected a URL such as mqtt://host:1883 or mqtts://host:8883, "
        f"found string {url!r}"
    )


@pytest.mark.parametrize("url", ["mqtt://host:99999", "mqtt://host:port"])
def test_bad_broker_port(tmp_path: Path, url: str) -> None:
    source, problem = only_problem(tmp_path, MINIMAL.replace("mqtt://localhost", url))
    assert problem.startswith(f"{source}: uplink.broker: expected a URL such as mqtt://")


def test_broker_url_with_a_path(tmp_path: Path) -> None:
    url = "mqtt://host/topic"
    source, problem = only_problem(tmp_path, MINIMAL.replace("mqtt://localhost", url))
    assert problem == (
        f"{source}: uplink.broker: expected a URL with no path, query or fragment, "
        f"found string {url!r}"
    )


@pytest.mark.parametrize("url", ["mqtt://user:s3cret@host", "mqtts://:s3cret@host:8883"])
def test_password_in_broker_url_is_rejected(tmp_path: Path, url: str) -> None:
    source, problem = only_problem(tmp_path, MINIMAL.replace("mqtt://localhost", url))
    assert problem.startswith(
        f"{source}: uplink.broker: expected a URL without a password "
        "(give it in password_file or password_env)"
    )


def test_user_name_without_password_in_url_is_accepted() -> None:
    config = parse(MINIMAL.replace("mqtt://localhost", "mqtt://user@host"), "x.toml")
    assert config.uplink.host == "host"


def test_password_comes_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(0o600)
    config = parse(TLS + f"password_file = {str(secret)!r}\n", "x.toml")
    assert config.uplink.password() == "s3cret"


def test_password_comes_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGELINE_TEST_PASSWORD", "fr0m-env")
    config = parse(TLS + 'password_env = "EDGELINE_TEST_PASSWORD"\n', "x.toml")
    assert config.uplink.password() == "fr0m-env"


def test_password_has_no_inline_key(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL + 'password = "s3cret"\n')
    assert problem.startswith(f"{source}: uplink.password: unknown key; did you mean 'password_")


def test_password_file_and_env_together(tmp_path: Path) -> None:
    text = MINIMAL + 'password_file = "/p"\npassword_env = "P"\n'
    source, problem = only_problem(tmp_path, text)
    assert problem == (
        f"{source}: uplink: give the password in password_file or password_env, not both"
    )


def test_threshold_below_not_less_than_above(tmp_path: Path) -> None:
    detector = '[[detectors]]\nsensor = "t"\ntype = "threshold"\nabove = 10\nbelow = 10\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, detector))
    assert problem == f"{source}: detectors[0]: below (10.0) must be less than above (10.0)"


def test_threshold_needs_a_limit(tmp_path: Path) -> None:
    detector = '[[detectors]]\nsensor = "t"\ntype = "threshold"\nseverity = "critical"\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, detector))
    assert problem == f"{source}: detectors[0]: threshold needs at least one of above and below"


def test_threshold_severity_choice(tmp_path: Path) -> None:
    detector = '[[detectors]]\nsensor = "t"\ntype = "threshold"\nabove = 1\nseverity = "info"\n'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, detector))
    assert problem == (
        f"{source}: detectors[0].severity: expected one of 'warning', 'critical', "
        "found string 'info'"
    )


def test_backoff_max_below_backoff_min(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL + "backoff_min = 5\nbackoff_max = 2\n")
    assert problem == f"{source}: uplink: backoff_max must not be below backoff_min"


def test_gpio_cross_field_rule(tmp_path: Path) -> None:
    sensor = 'id = "sda"\ntype = "gpio.input"\ninterval = 1\npin = 2\npull = "down"'
    source, problem = only_problem(tmp_path, with_sensor(sensor))
    assert problem.startswith(f"{source}: sensors[0]: pull must be 'up' for pin 2")


def test_invalid_toml_syntax(tmp_path: Path) -> None:
    source, problem = only_problem(tmp_path, MINIMAL + "qos = \n")
    assert problem.startswith(f"{source}: invalid TOML: ")
    assert "line 6" in problem


def test_sections_must_have_the_right_shape(tmp_path: Path) -> None:
    text = 'device = "d1"\nsensors = 3\n[uplink]\nbroker = "mqtt://h"\n'
    source, problems = problems_of(tmp_path, text)
    assert problems == [
        f"{source}: device: expected a table, found string 'd1'",
        f"{source}: sensors: expected an array of tables ([[sensors]]), found integer 3",
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load(missing)
    assert info.value.problems == [f"{missing}: cannot read: No such file or directory"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(MINIMAL.replace("d1", "d\xe91").encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load(path)
    [problem] = info.value.problems
    assert problem.startswith(f"{path}: cannot read: not UTF-8 text")


@pytest.mark.parametrize("digits", [400, 5000])
def test_huge_integers_are_problems_not_crashes(tmp_path: Path, digits: int) -> None:
    # 400 digits do not fit a float; 5000 pass Python's int-to-str limit inside tomllib.
    text = with_sensor('id = "t"\ntype = "i2c.tmp102"\ninterval = ' + "9" * digits)
    source, problem = only_problem(tmp_path, text)
    assert problem.startswith(f"{source}: ")


def test_config_error_is_a_value_error_and_an_edgeline_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse("", "empty.toml")
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, EdgelineError)
    assert str(info.value) == "\n".join(info.value.problems)


# --- every problem in one file --------------------------------------------------------------


def test_every_problem_in_a_file_is_reported(tmp_path: Path) -> None:
    text = """\
[device]
id = "pump/3"

[storage]
durability = "fast"
commit_window_ms = -1

[uplnk]

[uplink]
broker = "http://user:pw@host"
qos = 0

[[sensors]]
id = "t"
type = "i2c.tmp102"
intervall = 1

[[sensors]]
id = "t2"
type = "i2c.tmp102"
interval = 1
address = 0x50

[[sensors]]
id = "t2"
type = "gpio.imput"

[[detectors]]
sensor = "ghost"
type = "threshold"
above = 1
below = 5
"""
    source, problems = problems_of(tmp_path, text)
    paths = [
        "uplnk",
        "device.id",
        "storage.durability",
        "storage.commit_window_ms",
        "uplink.broker",
        "uplink.qos",
        "sensors[0].intervall",
        "sensors[0].interval",
        "sensors[1].address",
        "sensors[2].id",
        "detectors[0].sensor",
        "detectors[0]",
    ]
    assert len(problems) == len(paths), "\n".join(problems)
    prefix = f"{source}: "
    assert all(problem.startswith(prefix) for problem in problems), problems
    found = [problem[len(prefix) :].split(": ", 1)[0] for problem in problems]
    assert sorted(found) == sorted(paths)


# --- ids that become MQTT topic levels --------------------------------------------------------


def refused_by_brokers(c: str) -> bool:
    """What Mosquitto refuses in any MQTT string: controls, surrogates, non-characters."""
    code = ord(c)
    return (
        unicodedata.category(c) in ("Cc", "Cs")
        or 0xFDD0 <= code <= 0xFDEF
        or code & 0xFFFE == 0xFFFE
    )


def topic_level_ok(text: str) -> bool:
    """Reference predicate: 1-64 characters, none of '/', '+', '#', whitespace, nor
    anything a broker refuses."""
    return 1 <= len(text) <= 64 and not any(
        c in "/+#" or c.isspace() or refused_by_brokers(c) for c in text
    )


ids = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=st.sampled_from("ab-_./+# \t\n\x00\xa0\u2003\u3000\U0001f600"), max_size=70),
    st.text(
        alphabet=st.sampled_from("ab$\x01\x1f\x7f\x80\x85\x9f\ufdd0\ufdef\ufffe\uffff\U0010ffff"),
        max_size=70,
    ),
    st.text(alphabet="abc", min_size=60, max_size=70),
)


def base_data() -> dict[str, Any]:
    return {"device": {"id": "d1"}, "uplink": {"broker": "mqtt://h"}}


@given(ids)
def test_device_id_accepted_iff_a_valid_topic_level(device_id: str) -> None:
    data = base_data()
    data["device"]["id"] = device_id
    try:
        config = validate(data, "x.toml")
    except ConfigError as exc:
        assert not topic_level_ok(device_id), exc.problems
        [problem] = exc.problems
        assert problem.startswith("x.toml: device.id: expected 1-64 characters without '/'")
    else:
        assert topic_level_ok(device_id)
        assert config.device.id == device_id


@given(ids)
def test_sensor_id_accepted_iff_a_valid_topic_level(sensor_id: str) -> None:
    data = base_data()
    data["sensors"] = [{"id": sensor_id, "type": "gpio.edge", "pin": 5}]
    try:
        config = validate(data, "x.toml")
    except ConfigError as exc:
        assert not topic_level_ok(sensor_id), exc.problems
        [problem] = exc.problems
        assert problem.startswith("x.toml: sensors[0].id: expected 1-64 characters")
    else:
        assert topic_level_ok(sensor_id)
        assert [s.id for s in config.sensors] == [sensor_id]


@pytest.mark.parametrize("name", ["a b", "a/b", "a+", "#", "", "x" * 65, "tab\there"])
def test_detector_id_is_a_topic_level_too(name: str) -> None:
    data = base_data()
    data["sensors"] = [{"id": "s", "type": "gpio.edge", "pin": 5}]
    data["detectors"] = [{"id": name, "sensor": "s", "type": "threshold", "above": 1}]
    with pytest.raises(ConfigError) as info:
        validate(data, "x.toml")
    [problem] = info.value.problems
    assert problem.startswith("x.toml: detectors[0].id: expected 1-64 characters")


@pytest.mark.parametrize("prefix", ["", "/", "/edgeline", "edgeline/", "a//b", "a/+/b", "a b"])
def test_topic_prefix_rejected(prefix: str) -> None:
    data = base_data()
    data["uplink"]["topic_prefix"] = prefix
    with pytest.raises(ConfigError) as info:
        validate(data, "x.toml")
    [problem] = info.value.problems
    assert problem.startswith("x.toml: uplink.topic_prefix: expected topic levels separated by '/'")


levels = st.text(
    alphabet=st.characters(
        blacklist_characters="/+#", blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cn", "Cs")
    ),
    min_size=1,
    max_size=10,
)


@given(st.lists(levels, min_size=1, max_size=4), st.data())
def test_topic_prefix_accepted_iff_no_empty_level(parts: list[str], data: st.DataObject) -> None:
    assume(not parts[0].startswith("$"))
    base = base_data()
    base["uplink"]["topic_prefix"] = "/".join(parts)
    assert validate(base, "x.toml").uplink.topic_prefix == "/".join(parts)

    holed = list(parts)
    holed.insert(data.draw(st.integers(0, len(parts))), "")
    base["uplink"]["topic_prefix"] = "/".join(holed)
    with pytest.raises(ConfigError):
        validate(base, "x.toml")


# --- any TOML-shaped data: a Config or a ConfigError, nothing else ----------------------------

KEYS = sorted(
    {
        "device", "storage", "uplink", "sensors", "detectors", "uplnk",
        "id", "rtc", "state_dir", "durability", "commit_window_ms", "broker", "client_id",
        "topic_prefix", "qos", "keepalive", "inflight", "protocol", "username",
        "password_file", "password_env", "ca_file", "cert_file", "key_file", "backoff_min",
        "backoff_max", "type", "interval", "intervall", "telemetry", "bus", "address", "pin",
        "pull", "active_low", "debounce", "sensor", "above", "below", "hysteresis",
        "min_duration", "severity",
    }
)  # fmt: skip
STRINGS = [
    "d1", "t", "i2c.tmp102", "gpio.input", "gpio.edge", "threshold", "mqtt://h",
    "mqtts://h:8883", "http://h", "mqtt://u:p@h", "full", "normal", "up", "down", "none",
    "warning", "critical", "5", "3.1.1", "a/b", "",
]  # fmt: skip

keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.integers(),
    st.integers(min_value=-5, max_value=100),
    st.floats(),
    st.booleans(),
    st.sampled_from(STRINGS),
    st.text(max_size=10),
)
toml_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=30,
)
tables = st.dictionaries(keys, toml_like, max_size=8)
documents = st.fixed_dictionaries(
    {},
    optional={
        "device": st.one_of(tables, toml_like),
        "storage": st.one_of(tables, toml_like),
        "uplink": st.one_of(tables, toml_like),
        "sensors": st.one_of(st.lists(tables, max_size=4), toml_like),
        "detectors": st.one_of(st.lists(tables, max_size=3), toml_like),
    },
).flatmap(lambda d: st.dictionaries(keys, toml_like, max_size=2).map(lambda e: {**e, **d}))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_validate_returns_a_config_or_raises_config_error(data: dict[str, Any]) -> None:
    try:
        config = validate(data, "x.toml")
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.startswith("x.toml: "), problem
    else:
        assert isinstance(config, Config)
        assert config.source == "x.toml"


@given(ids, ids)
def test_valid_documents_are_accepted(device_id: str, sensor_id: str) -> None:
    # The generator above rarely hits a valid document; this pins the "returns a Config" side.
    data = base_data()
    data["device"]["id"] = device_id
    data["sensors"] = [{"id": sensor_id, "type": "i2c.tmp102", "interval": 1}]
    data["detectors"] = [{"sensor": sensor_id, "type": "threshold", "below": 0}]
    try:
        config = validate(data, "x.toml")
    except ConfigError:
        assert not (topic_level_ok(device_id) and topic_level_ok(sensor_id))
    else:
        assert config.detectors[0].sensor == sensor_id


# The addresses each chip's pins can select, as its driver declares them.
I2C_ADDRESSES = {
    "i2c.ads1115": ads1115.ADDRESSES,
    "i2c.bh1750": bh1750.ADDRESSES,
    "i2c.bme280": bme280.ADDRESSES,
    "i2c.ina219": ina219.ADDRESSES,
    "i2c.mpu6050": mpu6050.ADDRESSES,
    "i2c.registers": registers.ADDRESSES,
    "i2c.sht3x": sht3x.ADDRESSES,
    "i2c.tmp102": tmp102_driver.ADDRESSES,
}
HEX_ONLY = re.compile(r"(an integer from )?0x[0-9A-F]{2}((, | or | to )0x[0-9A-F]{2})*")


def test_every_i2c_type_is_checked_for_hex_addresses() -> None:
    with_address = {
        name
        for name, kind in SENSOR_TYPES.items()
        if any(f.name == "address" for f in dataclasses.fields(kind.params))
    }
    assert with_address == set(I2C_ADDRESSES)


@given(st.sampled_from(sorted(I2C_ADDRESSES)), st.integers(-0x200, 0x200))
def test_an_i2c_address_is_accepted_iff_the_chip_can_have_it_and_refused_in_hex(
    kind: str, address: int
) -> None:
    table: dict[str, Any] = {"id": "chip", "type": kind, "interval": 1.0, "address": address}
    if kind == "i2c.registers":
        table["register"] = 0
    data = {**base_data(), "sensors": [table]}
    try:
        config = validate(data, "x.toml")
    except ConfigError as exc:
        assert address not in I2C_ADDRESSES[kind], exc.problems
        [problem] = exc.problems
        prefix = "x.toml: sensors[0].address: expected "
        assert problem.startswith(prefix), problem
        expected, found = problem.removeprefix(prefix).rsplit(", found ", 1)
        assert HEX_ONLY.fullmatch(expected), problem
        assert re.fullmatch(r"-?0x[0-9A-F]{2,}", found) and int(found, 16) == address, problem
    else:
        assert address in I2C_ADDRESSES[kind]
        assert config.sensors[0].params.address == address


def test_the_reference_shows_addresses_in_hex() -> None:
    from edge.config.validation import field_docs
    from sensors.bme280 import BME280Params
    from sensors.ina219 import INA219Params

    rows = {row[0]: row for row in field_docs(BME280Params)}
    assert rows["address"][:3] == ("address", "0x76 or 0x77", "0x76")
    rows = {row[0]: row for row in field_docs(INA219Params)}
    assert rows["address"][:3] == ("address", "an integer from 0x40 to 0x4F", "0x40")


def test_a_fifo_that_would_overflow_between_polls_is_refused(tmp_path: Path) -> None:
    sensor = 'id = "m"\ntype = "i2c.mpu6050"\nmode = "fifo"\nsample_rate = 500.0\ninterval = 1.0'

    source, problem = only_problem(tmp_path, with_sensor(sensor))
    assert problem == (
        f"{source}: sensors[0].interval: expected at most 0.272 s with mode 'fifo' at 500 Hz"
        " (the FIFO holds 170 samples, 0.34 s), found 1"
    )


def test_two_chips_at_one_bus_address_are_refused(tmp_path: Path) -> None:
    second = '[[sensors]]\nid = "adc"\ntype = "i2c.ads1115"\naddress = 0x48\ninterval = 1'
    source, problem = only_problem(tmp_path, with_sensor(TMP102, second))
    assert problem == (
        f"{source}: sensors[1].address: expected a free address on bus 1, found 0x48"
        " taken by sensor 't' (i2c.tmp102)"
    )
