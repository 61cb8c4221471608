"""The built-in scenarios, one TOML file each (a device config plus a ``[simulation]`` table).

Cheap to import: the ``edge`` command lists the names in its help without loading the
simulator.
"""

from importlib import resources
from importlib.resources.abc import Traversable

DEFAULT = "default"


def names() -> list[str]:
    """The built-in scenarios' names, sorted."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in resources.files(__name__).iterdir()
        if entry.name.endswith(".toml")
    )


def path(name: str) -> Traversable:
    """The file of built-in scenario ``name``."""
    return resources.files(__name__) / f"{name}.toml"
