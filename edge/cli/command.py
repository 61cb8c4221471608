"""``edge command``: sign a downlink command, send it to a device, print its reply."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from edge.cli.common import EXIT_FAILURE, EXIT_OK, UsageError, add_login_options, broker_login


def register(commands: Any) -> None:
    command = commands.add_parser(
        "command",
        help="send a signed command to a device and print its reply",
        description="Sign a command with the command key, publish it to"
        " {prefix}/{device}/cmd/{name}, wait for the device's reply and print it."
        " Exit 0 when the device answers ok, 1 when it refuses or does not answer in time.",
    )
    command.add_argument("name", metavar="NAME", help="the command: ping, status, model, ...")
    command.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    command.add_argument("--device", required=True, metavar="ID", help="the device's id")
    command.add_argument(
        "--key-file", required=True, metavar="FILE",
        help="the command key: hex text (openssl rand -hex 32), mode 0600",
    )  # fmt: skip
    command.add_argument(
        "--arg", action="append", default=[], metavar="KEY=VALUE",
        help="an argument; VALUE is read as JSON when it parses, else as a string (repeatable)",
    )  # fmt: skip
    command.add_argument(
        "--timeout", type=float, default=10.0, metavar="S",
        help="seconds to wait for the reply (default 10)",
    )  # fmt: skip
    command.add_argument(
        "--prefix", default="edgeline", metavar="P", help="topic prefix (default edgeline)"
    )
    command.add_argument(
        "--file", metavar="FILE",
        help="config only: the TOML config to send (validated, applied and confirmed by the"
        " device, or rolled back); waits --timeout plus the health timeout for the answer",
    )  # fmt: skip
    add_login_options(command, "the operator's broker user name")
    command.add_argument("--json", action="store_true", help="print the whole reply as JSON")
    command.set_defaults(handler=cmd_command)


def parse_args_list(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs into a dict; VALUE as JSON when it parses, else the string."""
    from edge.uplink.commands import canonical

    args: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--arg: expected KEY=VALUE, got {item!r}")
        if key in args:
            raise UsageError(f"--arg: {key!r} given twice")
        args[key] = _value(text)
    try:
        canonical(args).encode("utf-8")
    except UnicodeEncodeError:  # a surrogate from undecodable bytes in argv
        raise UsageError("--arg: not valid UTF-8 text") from None
    return args


def _value(text: str) -> Any:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text  # NaN and Infinity are not JSON: send the word
    return value


def problems(args: argparse.Namespace) -> list[str]:
    from edge.config.device import broker_url
    from edge.config.validation import topic_level, topic_prefix
    from edge.uplink.commands import NAME, char_problem

    found = []
    if (problem := broker_url(args.broker)) is not None:
        found.append(f"--broker: expected {problem}")
    problem = topic_level(args.device) or char_problem(args.device, "a device id")
    if problem is not None:
        found.append(f"--device: expected {problem}, got {args.device!r}")
    if not NAME.fullmatch(args.name):
        found.append(f"NAME: expected 1 to 64 of A-Z a-z 0-9 _ . -, got {args.name!r}")
    if (problem := topic_prefix(args.prefix) or char_problem(args.prefix, "a prefix")) is not None:
        found.append(f"--prefix: expected {problem}, got {args.prefix!r}")
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= 3600):
        found.append(f"--timeout: expected seconds between 0 and 3600, got {args.timeout:g}")
    return found


def config_sends(
    args: argparse.Namespace, given: dict[str, Any], found: list[str]
) -> list[dict[str, Any]]:
    """The ``config`` commands that send ``--file`` (one, or one per chunk); problems with
    the file or the other arguments go to ``found``."""
    from edge.runtime.config_upload import config_commands

    if args.name != "config":
        found.append(f"--file: only the config command sends a file, not {args.name!r}")
        return []
    if set(given) - {"timeout"}:
        found.append("--arg: with --file, only timeout may be given")
        return []
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        found.append(f"--file: cannot read {args.file}: {reason or exc}")
        return []
    timeout = given.get("timeout")
    number = isinstance(timeout, int | float) and not isinstance(timeout, bool)
    if timeout is not None and not (number and 1 <= timeout <= 600):
        found.append(f"--arg timeout: expected seconds from 1 to 600, got {timeout!r}")
        return []
    return config_commands(text, timeout)


def cmd_command(args: argparse.Namespace) -> int:
    from edge.config.command_key import CommandKeyError, read_key_file
    from edge.errors import ConfigError
    from edge.uplink.operator import send_command

    found = problems(args)
    command_args: dict[str, Any] = {}
    try:
        command_args = parse_args_list(args.arg)
    except UsageError as exc:
        found.append(str(exc))
    try:
        key = read_key_file(args.key_file)
    except CommandKeyError as exc:
        found.append(f"--key-file: {exc}")
    sends = [command_args]
    if args.file is not None:
        sends = config_sends(args, command_args, found)
    settings = broker_login(args, args.broker, found)
    if found or settings is None:
        raise ConfigError(found)
    reply: dict[str, Any] = {}
    for index, sent in enumerate(sends):
        last = index == len(sends) - 1
        # The last config command answers once the config is confirmed or rolled back.
        wait = args.timeout + (float(sent.get("timeout", 30)) if last and args.file else 0)
        reply = send_command(
            args.broker, args.device, key, args.name, sent,
            prefix=args.prefix, timeout=wait, username=settings.username,
            password=settings.password(), ca_file=settings.ca_file,
            cert_file=settings.cert_file, key_file=settings.key_file,
        )  # fmt: skip
        if reply.get("ok") is not True:
            break
    ok = reply.get("ok") is True
    if args.json:
        print(json.dumps(reply))
    elif ok:
        print(json.dumps(reply.get("result", {}), indent=2))
    else:
        print(f"error: {args.device} refused {args.name}: {reply.get('error')}", file=sys.stderr)
    return EXIT_OK if ok else EXIT_FAILURE
