"""What several simulated devices need beyond one: a command key each, and open files.

``edge simulate --devices N`` gives each device its own id, state directory and stream
(:func:`~edge.sim.simulator.for_device`) and, here, its own command key: 32 random bytes
as hex in ``<state-dir>/keys/<id>.key`` (mode 0600, the directory 0700), made on the
first run and kept for the next, with signed commands enabled on the device. That is the
layout ``edge flash --fleet`` writes and ``edge sink --fill-gaps --keys DIR`` and
``edge command --key-file`` read, so the cloud side can sign for any simulated device.

Each device holds a few file descriptors for as long as it runs (its outbox's database,
WAL and shared-memory index, its broker socket, its network loop's selector and wake-up
pair): :func:`allow_open_files` raises the process's soft limit to what N devices need,
within the hard limit, and says plainly when the hard limit is too low. Each outbox also
takes its reserve on the disk (up to 8 MB: three WALs of its ``max_bytes``, what lets it
evict on a full disk): :func:`check_disk` refuses a fleet the disk cannot hold before any
device fills it.
"""

from __future__ import annotations

import dataclasses
import resource
import secrets
import shutil
from pathlib import Path

from edge.config.device import StorageConfig
from edge.errors import UsageError
from edge.outbox.disk import reserve_size
from edge.sim.scenario import Scenario
from edge.statefile import private_dir, write_atomically

KEYS = "keys"  # the directory, in the fleet's state directory, of the devices' command keys
KEY_BYTES = 32
FILES_PER_DEVICE = 12  # descriptors a simulated device may hold, with room to spare
FILES_BESIDE = 256  # the rest of the process: the sink, the broker, logs, recordings
OUTBOX_FILES = 256 * 1024  # bytes of a small outbox's database and WAL, beside its reserve


def keys_dir(state_dir: str | Path) -> Path:
    """Where a fleet's command keys are: ``<state-dir>/keys``."""
    return Path(state_dir) / KEYS


def with_command_key(scenario: Scenario, keys: Path) -> Scenario:
    """The device's scenario with signed commands enabled under its own key,
    ``keys/<id>.key`` (made now if missing: a rerun on the same state keeps the key)."""
    config = scenario.config
    path = keys / f"{config.device.id}.key"
    if not path.exists():  # one that exists is read by the runtime, which names its faults
        private_dir(keys)
        write_atomically(path, secrets.token_bytes(KEY_BYTES).hex().encode("ascii") + b"\n")
    commands = dataclasses.replace(config.commands, enabled=True, key_file=str(path), key_env=None)
    return dataclasses.replace(scenario, config=dataclasses.replace(config, commands=commands))


def allow_open_files(devices: int) -> None:
    """Raise the soft limit on open files to what ``devices`` simulated devices need
    (``UsageError`` when even the hard limit is lower: ``ulimit -n`` says it)."""
    needed = devices * FILES_PER_DEVICE + FILES_BESIDE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise UsageError(
            f"--devices {devices}: needs about {needed} open files, and this process may"
            f" open at most {hard} (ulimit -Hn); fewer devices, or a higher limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def check_disk(state_dir: Path, devices: list[str], storage: StorageConfig) -> None:
    """Refuse (``UsageError``) a fleet whose new outboxes, reserves included, would not fit
    on the disk of ``state_dir`` (a device that ran there before has its files already)."""
    new = sum(not (state_dir / device).exists() for device in devices)
    each = reserve_size(storage.max_bytes) + OUTBOX_FILES
    probe = state_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if new * each > free:
        raise UsageError(
            f"--devices {len(devices)}: each new outbox takes about {each / 1e6:.1f} MB of"
            f" disk (its reserve follows [storage] max_bytes, {storage.max_bytes}), {new} of"
            f" them {new * each / 1e9:.2f} GB, and {probe} has {free / 1e9:.2f} GB free: a"
            " smaller max_bytes in the scenario, fewer devices, or another --state-dir"
        )
