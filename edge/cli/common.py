"""What every command shares: exit codes, the signals that stop a command, the state dir,
and the broker login and TLS options of every command that connects to a broker."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from edge.errors import UsageError

if TYPE_CHECKING:
    from edge.config.device import UplinkConfig

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "UsageError",
    "add_login_options",
    "broker_login",
    "login_keys",
    "state_dir",
    "stop_on_signals",
]


def stop_on_signals() -> threading.Event:
    """SIGINT and SIGTERM set the returned event: the command then stops cleanly."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def state_dir(args: argparse.Namespace) -> Path:
    """``--state-dir``, or the state directory of ``--config``."""
    if args.state_dir:
        return Path(args.state_dir)
    from edge.config.device import load

    return Path(load(args.config).storage.state_dir)


# The [uplink] keys each login option sets. The TLS client key is --cert-key-file on the
# command line: `edge command --key-file` is the command key.
LOGIN_OPTIONS = {
    "username": "--username",
    "password_file": "--password-file",
    "allow_plaintext_password": "--allow-plaintext-password",
    "ca_file": "--ca-file",
    "cert_file": "--cert-file",
    "key_file": "--cert-key-file",
}


def add_login_options(parser: argparse.ArgumentParser, username_help: str) -> None:
    """The options that log in to the broker and set up TLS, as the device's ``[uplink]``
    has them (``broker_login`` checks them by the same rules)."""
    login = parser.add_argument_group("broker login and TLS (as the device's [uplink])")
    login.add_argument("--username", metavar="USER", help=username_help)
    login.add_argument(
        "--password-file", metavar="FILE",
        help="file holding the broker password (mode 0600); needs an mqtts:// broker unless"
        " --allow-plaintext-password",
    )  # fmt: skip
    login.add_argument(
        "--allow-plaintext-password", action="store_true",
        help="send the password over mqtt://, in clear text (a broker on this host)",
    )  # fmt: skip
    login.add_argument("--ca-file", metavar="FILE", help="CA bundle for an mqtts:// broker")
    login.add_argument(
        "--cert-file", metavar="FILE", help="client certificate for an mqtts:// broker"
    )
    login.add_argument(
        "--cert-key-file", dest="cert_key_file", metavar="FILE",
        help="the client certificate's private key (with --cert-file)",
    )  # fmt: skip


def login_keys(args: argparse.Namespace) -> dict[str, Any]:
    """The login options given on the command line, as [uplink] keys."""
    given = {
        "username": args.username,
        "password_file": args.password_file,
        "ca_file": args.ca_file,
        "cert_file": args.cert_file,
        "key_file": args.cert_key_file,
    }
    found = {key: value for key, value in given.items() if value is not None}
    if args.allow_plaintext_password:
        found["allow_plaintext_password"] = True
    if args.password_file is not None:
        found["password_env"] = None  # the file given replaces the config's variable
    return found


def broker_login(
    args: argparse.Namespace,
    broker: str,
    found: list[str],
    base: UplinkConfig | None = None,
) -> UplinkConfig | None:
    """``base`` (the config's ``[uplink]``, or none) for ``broker``, with the login options
    given on top, checked by the config's own rules (TLS files need mqtts://, a password
    over mqtt:// only with --allow-plaintext-password, a private, readable password file).
    Each problem is added to ``found`` under its option's name; None when there was one."""
    import dataclasses

    from edge.config.device import UplinkConfig
    from edge.config.validation import KeyProblems

    changes = {"broker": broker, **login_keys(args)}
    try:
        if base is None:
            return _readable(UplinkConfig(**changes), found, args)
        return _readable(dataclasses.replace(base, **changes), found, args)
    except KeyProblems as exc:
        for key, message in exc.items:
            option = LOGIN_OPTIONS.get(key)
            hint = message.replace(
                "set allow_plaintext_password = true", "add --allow-plaintext-password"
            )
            found.append(f"{option}: {hint}" if option else f"[uplink] {key}: {hint}")
    except ValueError as exc:  # cert and key apart; a password file and variable both
        text = str(exc).replace("cert_file and key_file", "--cert-file and --cert-key-file")
        found.append(text)
    return None


def _readable(
    settings: UplinkConfig, found: list[str], args: argparse.Namespace
) -> UplinkConfig | None:
    """``settings`` when its password can be read, else None with the reason in ``found``."""
    try:
        settings.password()
    except (OSError, UnicodeDecodeError) as exc:
        where = "--password-file" if args.password_file else "[uplink] password_file"
        found.append(f"{where}: {exc}")
        return None
    return settings
