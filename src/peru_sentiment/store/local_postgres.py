"""A throwaway PostgreSQL cluster on a Unix socket, for tests, benchmarks and trying the store without a server.

It needs the PostgreSQL server binaries (Debian: ``apt-get install postgresql``;
``initdb`` and ``pg_ctl`` on PATH or under /usr/lib/postgresql/<version>/bin).
PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres``
user. Nothing listens on TCP; the URL points at the socket folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from peru_sentiment.errors import ConfigError

SERVER_USER = "postgres"


def postgres_binary(name: str) -> str | None:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``), or None when it is not installed."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class LocalPostgres:
    """``with LocalPostgres() as server: server.url`` — a fresh cluster, removed on exit."""

    def __init__(self, database: str = "sentiment") -> None:
        self.database = database
        self.directory: Path | None = None

    @property
    def socket_dir(self) -> Path:
        assert self.directory is not None, "start() first"
        return self.directory / "socket"

    @property
    def url(self) -> str:
        return self.database_url(self.database)

    def database_url(self, name: str) -> str:
        return f"postgresql://{SERVER_USER}@/{name}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """A new empty database in the cluster; its URL."""
        createdb = postgres_binary("createdb") or "createdb"
        self._run(createdb, "-h", str(self.socket_dir), "-U", SERVER_USER, name)
        return self.database_url(name)

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*as_user, *command], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ConfigError(f"{Path(command[0]).name} failed: {(result.stderr or result.stdout).strip()[-500:]}")

    def start(self) -> None:
        initdb, pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise ConfigError("PostgreSQL server binaries not found; install them (Debian: apt-get install postgresql)")
        self.directory = Path(tempfile.mkdtemp(prefix="peru-sentiment-pg-"))
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            for path in (self.directory, self.socket_dir):
                shutil.chown(path, SERVER_USER, SERVER_USER)
        data = self.directory / "data"
        self._run(initdb, "-D", str(data), "-U", SERVER_USER, "--auth=trust", "--encoding=UTF8", "--no-sync")
        options = f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off -c full_page_writes=off"
        self._run(pg_ctl, "-D", str(data), "-o", options, "-l", str(self.directory / "server.log"), "-w", "start")
        self.create_database(self.database)

    def stop(self) -> None:
        if self.directory is None:
            return
        pg_ctl = postgres_binary("pg_ctl")
        if (self.directory / "data" / "postmaster.pid").exists() and pg_ctl:
            self._run(pg_ctl, "-D", str(self.directory / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
