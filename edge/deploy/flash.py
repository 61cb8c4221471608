"""``edge flash``: prepare a Raspberry Pi OS card's boot partition so that the first boot
installs a bundle with no network and starts the service.

One card or a fleet, the same way: :func:`prepare_device` writes, into a directory, exactly
what goes on one card's boot partition (for Trixie cloud-init's ``user-data``,
``network-config`` and ``meta-data``; for Bookworm Imager's ``firstrun.sh``; for both
``edgeline/``: the bundle, the shared first-boot script, the device's config, command key and
certificate), plus ``cmdline.txt.append``, the words :func:`apply` adds to the card's
``cmdline.txt``. :func:`flash_card` prepares into a scratch directory and applies it;
:func:`prepare_fleet` prepares one directory per row of a CSV file, and a manifest for the
cloud side.

Everything is checked before anything is written. Secrets (command keys, client keys, the
Wi-Fi key) are written ``0600`` in ``0700`` directories on this machine and never printed;
on the card, the first boot deletes them from the boot partition once installed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

from edge.config.command_key import CommandKeyError, read_key_file
from edge.config.secrets import mode_problem
from edge.deploy import card, cloudinit
from edge.deploy.fleet import (
    Device,
    device_id_problem,
    hostname_problem,
    read_fleet,
    ssid_problem,
)
from edge.deploy.install import BundleInfo, inspect_bundle
from edge.errors import ConfigError, EdgelineError, UsageError
from edge.statefile import private_dir, write_atomically

if TYPE_CHECKING:
    from edge.deploy.certs import Authority, Issued

BUNDLE = "edgeline.tar.gz"  # the bundle's name in <boot>/edgeline/
APPEND = "cmdline.txt.append"
ETC = "/etc/edgeline"
PYTHON_OF = {"bookworm": "3.11", "trixie": "3.13"}
PI_TARGETS = ("linux_aarch64", "linux_armv7l")
SSH_KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)  # fmt: skip
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
MAX_INPUT = 64 * 1024  # an ssh key or a Wi-Fi key file is a line or a few, never more


class FlashError(EdgelineError, OSError):
    """A card or a directory could not be written (exit 1)."""


@dataclass(frozen=True)
class Settings:
    """What every card of one run shares: checked inputs, secrets held but never shown."""

    bundle: BundleInfo
    bundle_sha256: str
    os: str
    config_text: str
    config_source: str
    user: str = "pi"
    ssh_keys: tuple[str, ...] = ()
    wifi_ssid: str | None = None
    wifi_psk: str | None = field(default=None, repr=False)
    wifi_country: str | None = None
    authority: Authority | None = field(default=None, repr=False)


def load_settings(
    *,
    bundle: Path,
    os_name: str,
    config: Path | None = None,
    user: str = "pi",
    ssh_key: Path | None = None,
    wifi_ssid: str | None = None,
    wifi_psk_file: Path | None = None,
    wifi_country: str | None = None,
    ca: Path | None = None,
    ca_key: Path | None = None,
) -> Settings:
    """Read and check what the options name; UsageError with every problem, one line."""
    problems: list[str] = []

    def check(read: Callable[[], object]) -> object:
        try:
            return read()
        except UsageError as exc:
            problems.append(str(exc))
            return None

    if os_name not in card.OSES:
        problems.append(f"--os: expected one of {', '.join(card.OSES)}, found {os_name!r}")
    info = check(lambda: _bundle(bundle, os_name))
    if config is not None:
        config_text = check(lambda: _text(config, "--config"))
        config_source = str(config)
    elif isinstance(info, BundleInfo):
        config_text = info.config or info.example
        config_source = f"{bundle}'s {'config' if info.config else 'example config'}"
        if config_text is None:
            problems.append(f"--bundle: {bundle} has no config and no example: give --config")
    if not _USER.fullmatch(user) or user == "root":
        problems.append(f"--user: expected a user name such as pi (a-z, 0-9, _, -), found {user!r}")
    keys = check(lambda: read_ssh_keys(ssh_key)) if ssh_key is not None else ()
    if wifi_ssid is not None and (problem := ssid_problem(wifi_ssid)):
        problems.append(f"--wifi-ssid: {problem}, found {wifi_ssid!r}")
    psk = check(lambda: read_psk(wifi_psk_file)) if wifi_psk_file is not None else None
    if wifi_ssid is not None and wifi_psk_file is None:
        problems.append("--wifi-ssid needs --wifi-psk-file (a file holding the network's key)")
    country = None
    if wifi_country is not None:
        if re.fullmatch(r"[A-Za-z]{2}", wifi_country):
            country = wifi_country.upper()
        else:
            problems.append(
                f"--wifi-country: expected a two-letter country code (ISO 3166-1) such as GB,"
                f" found {wifi_country!r}"
            )
    authority = None
    if (ca is None) != (ca_key is None):
        problems.append("--ca and --ca-key go together")
    elif ca is not None and ca_key is not None:
        from edge.deploy.certs import load_authority

        authority = check(lambda: load_authority(ca, ca_key))
    if problems:
        raise UsageError("; ".join(problems))
    assert isinstance(info, BundleInfo) and isinstance(config_text, str)
    return Settings(
        bundle=info,
        bundle_sha256=_sha256(bundle),
        os=os_name,
        config_text=config_text,
        config_source=config_source,
        user=user,
        ssh_keys=tuple(keys),  # type: ignore[arg-type]
        wifi_ssid=wifi_ssid,
        wifi_psk=psk,  # type: ignore[arg-type]
        wifi_country=country,
        authority=authority,  # type: ignore[arg-type]
    )


def _bundle(path: Path, os_name: str) -> BundleInfo:
    if not path.is_file():
        raise UsageError(f"--bundle: {path} is not a file (build one with edge bundle)")
    info = inspect_bundle(path)
    wanted = PYTHON_OF.get(os_name)
    if info.target in PI_TARGETS and wanted and info.python != wanted:
        raise UsageError(
            f"--bundle: {path} is for Python {info.python} and Raspberry Pi OS {os_name} has"
            f" {wanted}: build it with edge bundle --python {wanted}"
        )
    return info


def _text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{option}: {path} is not UTF-8 text ({exc.reason})") from None


def read_ssh_keys(path: Path) -> list[str]:
    """The public keys in an ssh ``.pub`` (or ``authorized_keys``-style) file: one per
    line, ``type base64 [comment]``, each checked against its own encoding."""
    try:
        data = path.read_bytes()[: MAX_INPUT + 1]
    except OSError as exc:
        raise UsageError(f"--ssh-key: cannot read {path}: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in data:
        raise UsageError(f"--ssh-key: {path} is a private key: give the public one (.pub)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keys = [line for line in lines if not line.startswith("#")]
    if len(data) > MAX_INPUT or not keys or not all(_ssh_key(key) for key in keys):
        raise UsageError(
            f"--ssh-key: {path} is not an ssh public key (expected lines such as"
            " 'ssh-ed25519 AAAA... you@laptop', as ssh-keygen writes to a .pub file)"
        )
    return keys


def _ssh_key(line: str) -> bool:
    parts = line.split(maxsplit=2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES or not line.isprintable():
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    name = parts[0].encode("ascii")
    return blob[:4] == len(name).to_bytes(4, "big") and blob[4 : 4 + len(name)] == name


def read_psk(path: Path) -> str:
    """The Wi-Fi key in ``path``: a WPA2 passphrase (8 to 63 printable ASCII characters) or
    64 hex digits, one trailing newline allowed; the file private to its owner. Messages
    never show it."""
    try:
        with open(path, "rb") as handle:
            problem = mode_problem(os.fstat(handle.fileno()).st_mode, path)
            data = handle.read(MAX_INPUT + 1)
    except OSError as exc:
        raise UsageError(f"--wifi-psk-file: cannot read {path}: {exc.strerror or exc}") from None
    if problem:
        raise UsageError(f"--wifi-psk-file: {path}: {problem}")
    body = data[:-1] if data.endswith(b"\n") else data
    body = body[:-1] if body.endswith(b"\r") else body
    hex64 = len(body) == 64 and all(c in b"0123456789abcdefABCDEF" for c in body)
    passphrase = 8 <= len(body) <= 63 and all(0x20 <= c <= 0x7E for c in body)
    if not (hex64 or passphrase):
        raise UsageError(
            f"--wifi-psk-file: {path}: expected a WPA2 passphrase (8 to 63 printable ASCII"
            f" characters) or 64 hex digits, found {len(body)} bytes that are not (not shown)"
        )
    return body.decode("ascii")


def device_config(text: str, source: str, device_id: str, *, tls: bool, key: bool) -> str:
    """The config ``text`` for one device: ``[device] id``, and the device paths of its
    command key and client certificate, edited with tomlkit (comments kept), then checked
    with edgeline's own config loader; UsageError in one line when it does not pass."""
    try:
        import tomlkit
        from tomlkit.exceptions import TOMLKitError
    except ImportError:
        raise UsageError(
            "edge flash needs the tomlkit library: pip install 'edgeline[deploy]'"
        ) from None
    from edge.config.device import parse, read_toml

    where = f"--config: {source} (for device {device_id!r})"
    try:
        read_toml(text, source)  # its syntax, as edgeline reads it
    except ConfigError as exc:
        raise UsageError(f"--config: {'; '.join(exc.problems)}") from None
    try:
        document = tomlkit.parse(text)
        _table(document, "device", where)["id"] = device_id
        if key:
            _table(document, "commands", where)["key_file"] = f"{ETC}/command.key"
        if tls:
            uplink = _table(document, "uplink", where)
            uplink["cert_file"] = f"{ETC}/tls/client.crt"
            uplink["key_file"] = f"{ETC}/tls/client.key"
            if "ca_file" not in uplink:
                uplink["ca_file"] = f"{ETC}/tls/ca.crt"
        edited = tomlkit.dumps(document)
    except (TOMLKitError, ValueError, TypeError, RecursionError) as exc:
        raise UsageError(f"{where}: {exc}") from None
    try:
        parse(edited, source)
    except ConfigError as exc:
        raise UsageError(f"{where}: {'; '.join(exc.problems)}") from None
    return edited


def _table(document: object, name: str, where: str) -> dict[str, object]:
    import tomlkit

    assert isinstance(document, dict)
    if name not in document:
        document[name] = tomlkit.table()
    table = document[name]
    if not isinstance(table, dict):
        raise UsageError(f"{where}: expected [{name}] to be a table")
    return table


@dataclass(frozen=True)
class Prepared:
    """One device's prepared directory and what the cloud side records of it."""

    device: Device
    directory: Path
    files: tuple[str, ...]  # relative to the directory
    issued: Issued | None


def device_files(
    device: Device, settings: Settings, config: str, key: bytes, issued: Issued | None
) -> dict[str, bytes]:
    """What goes on one card (the bundle aside), by path relative to its boot partition,
    and ``cmdline.txt.append``."""
    here = files(__package__)
    ssid = device.wifi_ssid or settings.wifi_ssid
    psk = card.wpa_psk(settings.wifi_psk, ssid) if ssid and settings.wifi_psk else None
    out: dict[str, bytes] = {
        "edgeline/firstboot.sh": here.joinpath("firstboot.sh").read_bytes(),
        "edgeline/edge.toml": config.encode("utf-8"),
        "edgeline/command.key": key.hex().encode("ascii") + b"\n",
    }
    secret = ["edgeline/command.key"]
    if issued is not None and settings.authority is not None:
        out["edgeline/tls/client.crt"] = issued.cert_pem
        out["edgeline/tls/client.key"] = issued.key_pem
        out["edgeline/tls/ca.crt"] = settings.authority.pem()
        secret.append("edgeline/tls/client.key")
    words: tuple[str, ...] = ()
    if settings.os == "bookworm":
        out["firstrun.sh"] = here.joinpath("firstrun.sh").read_bytes()
        if settings.ssh_keys:
            out["edgeline/authorized_keys"] = "".join(f"{k}\n" for k in settings.ssh_keys).encode()
        if ssid and psk:
            out["edgeline/wifi.nmconnection"] = card.nm_connection(ssid, psk).encode("utf-8")
            secret.append("edgeline/wifi.nmconnection")
        words = card.HOOK
    else:
        data = cloudinit.user_data(device.id, device.hostname, settings.user, settings.ssh_keys)
        out["user-data"] = data.encode("utf-8")
        out["network-config"] = cloudinit.network_config(ssid, psk, settings.wifi_country).encode()
        instance = f"edgeline-{device.id}-{secrets.token_hex(4)}"
        out["meta-data"] = cloudinit.meta_data(instance, device.hostname).encode("utf-8")
        if ssid:
            after = cloudinit.network_config(None, None, None)
            out["edgeline/network-config.after"] = after.encode("utf-8")
            secret.append("network-config")
    if settings.wifi_country and not (settings.os == "trixie" and ssid):
        words = (*words, f"{card.REGDOM}{settings.wifi_country}")
    if words:
        out[APPEND] = (" ".join(words) + "\n").encode("ascii")
    env = {
        "DEVICE_ID": device.id,
        "DEVICE_HOSTNAME": device.hostname,
        "FIRST_USER": settings.user,
        "WIFI_COUNTRY": settings.wifi_country or "",
        "OS": settings.os,
        "BUNDLE": BUNDLE,
        "BUNDLE_SHA256": settings.bundle_sha256,
        "VERSION": settings.bundle.version,
        "SECRETS": " ".join(secret),
    }
    out["edgeline/device.env"] = (
        "# Written by edge flash: what edgeline's first boot needs to know.\n"
        + "".join(f"{name}={shlex.quote(value)}\n" for name, value in env.items())
    ).encode("utf-8")
    return out


def prepare_device(
    device: Device,
    settings: Settings,
    directory: Path,
    config: str,
    key: bytes,
    issued: Issued | None = None,
) -> Prepared:
    """Write ``directory``: what goes on the device's card, secrets 0600, directories 0700."""
    content = device_files(device, settings, config, key, issued)
    try:
        private_dir(directory)
        for relative, data in content.items():
            target = directory / relative
            for parent in reversed(target.relative_to(directory).parents[:-1]):
                private_dir(directory / parent)
            write_atomically(target, data, durable=False)
        _place_bundle(settings.bundle.path, directory / "edgeline" / BUNDLE)
    except OSError as exc:
        raise FlashError(f"cannot write {directory}: {exc}") from exc
    return Prepared(device, directory, (*content, f"edgeline/{BUNDLE}"), issued)


def _place_bundle(source: Path, target: Path) -> None:
    """A hard link when it can be (a fleet shares one bundle's bytes), a copy otherwise."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@dataclass(frozen=True)
class Applied:
    os: str
    written: tuple[str, ...]
    notes: tuple[str, ...]


def read_env(path: Path) -> dict[str, str]:
    """A ``device.env`` as edge flash writes it (``NAME=shell-quoted value`` lines)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, equals, value = line.partition("=")
        if equals and not line.startswith("#"):
            words = shlex.split(value)
            values[name] = words[0] if words else ""
    return values


def apply(
    boot: Path,
    prepared: Path,
    os_name: str | None = None,
    before_writing: Callable[[], None] | None = None,
) -> Applied:
    """Put a prepared directory on the boot partition mounted at ``boot``: its files, and
    on Bookworm the first-boot hook in ``cmdline.txt`` (Imager's ``firstrun.sh`` chained).
    Everything is checked first; ``before_writing`` runs once it all passed."""
    env_file = prepared / "edgeline" / "device.env"
    try:
        env = read_env(env_file)
    except (OSError, ValueError, UnicodeDecodeError):
        raise UsageError(
            f"--from: {prepared} is not a directory edge flash prepared (no edgeline/device.env)"
        ) from None
    prepared_os = env.get("OS", "")
    found = card.detect_os(boot, os_name)
    if found != prepared_os:
        raise UsageError(
            f"--from: {prepared} is for Raspberry Pi OS {prepared_os or '?'} and the card at"
            f" {boot} is {found}"
        )
    bundle = prepared / "edgeline" / BUNDLE
    if not bundle.is_file() or _sha256(bundle) != env.get("BUNDLE_SHA256"):
        raise UsageError(f"--from: {bundle} is missing or not the bundle it was prepared with")
    tops = [p for p in sorted(prepared.iterdir()) if p.name not in ("edgeline", APPEND)]
    words = tuple((prepared / APPEND).read_text(encoding="ascii").split()) if (
        prepared / APPEND
    ).is_file() else ()  # fmt: skip
    notes = []
    chain = None
    cmdline = boot / "cmdline.txt"
    new_cmdline = None
    try:
        if prepared_os == "bookworm":
            existing = boot / "firstrun.sh"
            if existing.is_file():
                text = existing.read_text(encoding="utf-8", errors="replace")
                if not card.is_ours(text):
                    chain = card.imager_part(text)
                    notes.append(
                        "chained the card's own firstrun.sh (Raspberry Pi Imager's settings):"
                        " kept as edgeline/imager-firstrun.sh, it runs first"
                    )
            earlier = boot / "edgeline" / "imager-firstrun.sh"
            if chain is None and earlier.is_file():
                chain = earlier.read_text(encoding="utf-8", errors="replace")
                notes.append("kept the chained edgeline/imager-firstrun.sh of an earlier flash")
        if words:
            if not cmdline.is_file():
                raise UsageError(f"--boot: {boot} has no cmdline.txt to add {words[0]} to")
            new_cmdline = card.with_words(cmdline.read_text(encoding="utf-8"), words)
        if prepared_os == "trixie":
            replaced = [n for n in card.CLOUD_INIT_FILES if (boot / n).is_file()]
            if replaced:
                notes.append(f"replaced the card's {', '.join(replaced)}")
        if before_writing is not None:
            before_writing()
        target = boot / "edgeline"
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        _copy_tree(prepared / "edgeline", target)
        if chain is not None:
            (target / "imager-firstrun.sh").write_text(chain, encoding="utf-8")
        for path in tops:
            _copy(path, boot / path.name)
        if new_cmdline is not None:
            scratch = cmdline.with_name(".cmdline.txt.edgeline")
            scratch.write_text(new_cmdline, encoding="utf-8")
            os.replace(scratch, cmdline)
    except UnicodeDecodeError:
        raise UsageError(f"--boot: {cmdline} is not UTF-8 text") from None
    except FlashError:
        raise
    except OSError as exc:
        raise FlashError(f"cannot write the card at {boot}: {exc}") from exc
    written = [p.name for p in tops] + ["edgeline/"]
    if new_cmdline is not None:
        written.append("cmdline.txt")
    return Applied(prepared_os, tuple(written), tuple(notes))


def _copy(source: Path, target: Path) -> None:
    """Bytes only: a FAT partition takes no modes or owners."""
    shutil.copyfile(source, target)


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir()
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            (target / path.relative_to(source)).mkdir(exist_ok=True)
        else:
            _copy(path, target / path.relative_to(source))


@dataclass(frozen=True)
class Flashed:
    boot: Path
    device: Device
    applied: Applied
    key_file: Path
    new_key: bool
    issued: Issued | None


def flash_card(
    boot: Path,
    device_id: str,
    settings: Settings,
    *,
    hostname: str | None = None,
    keys: Path = Path("edgeline-keys"),
) -> Flashed:
    """Prepare one device's files in a scratch directory and put them on the card at
    ``boot``. The command key is ``keys/<id>.key`` when there is one (a card flashed again
    keeps its key), else a new one, kept there (mode 0600) for ``edge command``."""
    problems = []
    if settings.wifi_psk is not None and not settings.wifi_ssid:
        problems.append("--wifi-psk-file needs --wifi-ssid")
    if problem := device_id_problem(device_id):
        problems.append(f"--id: {problem}, found {device_id!r}")
    name = hostname if hostname is not None else device_id
    if (hostname is not None or not problems) and (problem := hostname_problem(name)):
        problems.append(f"--hostname: {problem}, found {name!r}")
    if problems:
        raise UsageError("; ".join(problems))
    device = Device(device_id, name)
    config = device_config(
        settings.config_text, settings.config_source, device_id,
        tls=settings.authority is not None, key=True,
    )  # fmt: skip
    key_file = keys / f"{device_id}.key"
    new_key = not key_file.exists()
    if new_key:
        key = secrets.token_bytes(32)
    else:
        try:
            key = read_key_file(key_file)
        except CommandKeyError as exc:
            raise UsageError(f"--keys: {exc}") from None
    issued = _issue(settings, device_id)
    with tempfile.TemporaryDirectory(prefix="edge-flash-") as scratch:
        prepared = prepare_device(device, settings, Path(scratch) / "card", config, key, issued)
        # The key is kept here before the card gets it: never a card whose key we lost.
        keep = (lambda: _write_key(keys, key_file, key)) if new_key else None
        applied = apply(boot, prepared.directory, settings.os, before_writing=keep)
    return Flashed(boot, device, applied, key_file, new_key, issued)


def _issue(settings: Settings, device_id: str) -> Issued | None:
    if settings.authority is None:
        return None
    from edge.deploy.certs import issue

    return issue(settings.authority, device_id)


def _write_key(keys: Path, key_file: Path, key: bytes) -> None:
    try:
        private_dir(keys)
        write_atomically(key_file, key.hex().encode("ascii") + b"\n")
    except OSError as exc:
        raise FlashError(f"cannot write {key_file}: {exc}") from exc


@dataclass(frozen=True)
class Fleet:
    out: Path
    devices: tuple[Prepared, ...]
    manifest: Path


# Names in --out beside the devices' directories: no device may be called so.
FLEET_FILES = {"manifest.json": "manifest", "keys": "command keys' directory"}


def prepare_fleet(fleet: Path, out: Path, settings: Settings, *, force: bool = False) -> Fleet:
    """One directory per device of the CSV file ``fleet`` in ``out``, ``out/keys/<id>.key``
    (the command keys the cloud side signs with) and ``out/manifest.json``. Every row, every
    device's config and every target directory is checked before anything is written; an
    existing, non-empty device directory is replaced only with ``force``."""
    devices = read_fleet(fleet)
    problems = []
    configs = {}
    for device in devices:
        if device.wifi_ssid and settings.wifi_psk is None:
            problems.append(f"{fleet} row {device.row}, column wifi_ssid: needs --wifi-psk-file")
        try:
            configs[device.id] = device_config(
                settings.config_text, settings.config_source, device.id,
                tls=settings.authority is not None, key=True,
            )  # fmt: skip
        except UsageError as exc:
            problems.append(str(exc))
        if device.id in FLEET_FILES:  # out/<id> would be the manifest or the keys
            taken = FLEET_FILES[device.id]
            problems.append(f"{fleet} row {device.row}, column id: '{device.id}' is the name of"
                            f" the fleet's {taken} in --out; rename the device")  # fmt: skip
            continue
        target = out / device.id
        if target.exists() and not force and (not target.is_dir() or any(target.iterdir())):
            problems.append(f"--out: {target} exists and is not empty (--force replaces it)")
    if out.exists() and not out.is_dir():
        problems.append(f"--out: {out} is not a directory")
    wifi_rows = any(device.wifi_ssid for device in devices)
    if settings.wifi_psk is not None and not settings.wifi_ssid and not wifi_rows:
        problems.append("--wifi-psk-file needs --wifi-ssid (or a wifi_ssid column)")
    if problems:
        shown = problems[:10] + ([f"and {len(problems) - 10} more"] if len(problems) > 10 else [])
        raise UsageError("; ".join(shown))
    prepared = []
    try:
        private_dir(out)
        for device in devices:
            target = out / device.id
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            key = secrets.token_bytes(32)
            issued = _issue(settings, device.id)
            prepared.append(
                prepare_device(device, settings, target, configs[device.id], key, issued)
            )
            _write_key(out / "keys", out / "keys" / f"{device.id}.key", key)
        manifest = out / "manifest.json"
        listing = json.dumps(_manifest(settings, prepared), indent=2) + "\n"
        write_atomically(manifest, listing.encode("utf-8"))
    except OSError as exc:
        raise FlashError(f"cannot write {out}: {exc}") from exc
    return Fleet(out, tuple(prepared), manifest)


def _manifest(settings: Settings, prepared: list[Prepared]) -> dict[str, object]:
    """What the cloud side needs per device: no secret, only where the secrets are."""
    bundle = settings.bundle
    devices: dict[str, Mapping[str, object]] = {}
    for item in prepared:
        device = item.device
        entry: dict[str, object] = {
            "hostname": device.hostname,
            "dir": device.id,
            "command_key": f"keys/{device.id}.key",
            "files": {
                "command_key": f"{device.id}/edgeline/command.key",
                "config": f"{device.id}/edgeline/edge.toml",
            },
        }
        if device.wifi_ssid or settings.wifi_ssid:
            entry["wifi_ssid"] = device.wifi_ssid or settings.wifi_ssid
        if item.issued is not None:
            files_entry = entry["files"]
            assert isinstance(files_entry, dict)
            files_entry.update(
                cert=f"{device.id}/edgeline/tls/client.crt",
                key=f"{device.id}/edgeline/tls/client.key",
                ca=f"{device.id}/edgeline/tls/ca.crt",
            )
            entry["cert"] = {
                "sha256": item.issued.sha256,
                "serial": item.issued.serial,
                "not_after": item.issued.not_after,
                "subject": f"CN={device.id}",
            }
        devices[device.id] = entry
    return {
        "os": settings.os,
        "bundle": {
            "file": bundle.path.name,
            "version": bundle.version,
            "target": bundle.target,
            "python": bundle.python,
            "sha256": settings.bundle_sha256,
        },
        "devices": devices,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "Applied",
    "FlashError",
    "Flashed",
    "Fleet",
    "Prepared",
    "Settings",
    "apply",
    "device_config",
    "flash_card",
    "load_settings",
    "prepare_device",
    "prepare_fleet",
    "read_psk",
    "read_ssh_keys",
]
