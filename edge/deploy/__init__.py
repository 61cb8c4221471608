"""Putting edgeline on a device: the systemd unit the service runs under.

Nothing here runs on the device's import path; the installer reads these files.
"""

from __future__ import annotations

from importlib.resources import files

PREFIX = "/opt/edgeline/current"
CONFIG = "/etc/edgeline/edge.toml"


def unit_text(prefix: str = PREFIX, config: str = CONFIG) -> str:
    """``edgeline.service`` for a release installed under ``prefix`` (its venv's ``bin/edge``
    runs) and the config file ``config``."""
    text = files(__package__).joinpath("edgeline.service").read_text(encoding="utf-8")
    return text.replace(f"{PREFIX}/bin/edge", f"{prefix}/bin/edge").replace(CONFIG, config)
