"""A throwaway PostgreSQL cluster: ``initdb`` and ``pg_ctl`` from Debian's ``postgresql``
package, a data directory and a unix socket in a temporary directory, a free TCP port on
127.0.0.1, trust authentication. The tests run the sink against it and ``edge bench``
measures ingest into it.

initdb refuses to run as root: as root the cluster runs as the ``postgres`` user the package
creates (its files in a directory that user owns). ``PostgresCluster.database()`` makes a
fresh database and returns its URL, so each user starts empty.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from edge.bench.mosquitto import free_port

INSTALL_HINT = "Debian, Raspberry Pi OS: sudo apt-get install postgresql (tools/setup dev does)"


def find_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else the newest /usr/lib/postgresql/<ver>/bin."""
    found = shutil.which(name)
    if found:
        return found
    versions = [Path(path) for path in glob.glob(f"/usr/lib/postgresql/*/bin/{name}")]
    versions.sort(key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
    return str(versions[-1]) if versions else None


def find_postgres() -> tuple[str, str] | None:
    """(initdb, pg_ctl), or None when PostgreSQL's server programs are not installed."""
    initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
    return (initdb, pg_ctl) if initdb and pg_ctl else None


class PostgresCluster:
    """``initdb`` + ``pg_ctl start`` in a temporary directory; ``stop()`` removes it all."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="edgeline-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb will not run as root: the package's postgres user
            self.user = "postgres"
            self._as = ["runuser", "-u", "postgres", "--"]
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            [*self._as, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stdout}{result.stderr}\n{log}")

    def start(self) -> PostgresCluster:
        self._run(self.initdb, "-D", str(self.data), "-A", "trust", "-U", self.user,
                  "--no-sync", "-E", "UTF8", "--locale", "C")  # fmt: skip
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        return self

    @property
    def pid(self) -> int | None:
        """The server's process id (its backends are its children), once it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [*self._as, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
