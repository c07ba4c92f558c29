"""A throwaway PostgreSQL cluster (initdb + pg_ctl) that the suite may restart and crash at will.

It never touches the machine's main server: its own data directory, its own loopback
port below 32768, no Unix socket. As root it runs the server as the ``postgres`` user.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("RELIABILITY_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"
START_TIMEOUT_SECONDS = 30

# Durability is what the suite checks, so the settings that promise it stay at their defaults
# and are spelled out; the rest only makes a small cluster start fast.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = ''
fsync = on
synchronous_commit = on
full_page_writes = on
max_connections = 100
shared_buffers = 32MB
log_min_messages = warning
log_connections = off
"""


def loopback_port() -> int:
    """A free loopback port below the ephemeral range, so no outgoing connection can hold it."""
    for _ in range(500):
        port = random.randrange(20_000, 32_768)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below 32768")


class Cluster:
    """One PostgreSQL 15 cluster in a temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="items-reliability-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = loopback_port()
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            shutil.chown(self.root, OWNER, OWNER)
            self._as_owner = ["runuser", "-u", OWNER, "--"]

    def _pg(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [*self._as_owner, str(PG_BIN / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")

    def _pg_ctl(self, *args: str) -> None:
        wait = ["-w", "-t", str(START_TIMEOUT_SECONDS)]
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), *wait, *args)

    def init(self) -> None:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(SETTINGS.format(port=self.port))

    def start(self) -> None:
        self._pg_ctl("start")

    def restart_fast(self) -> None:
        """Clean shutdown (active transactions rolled back, clients disconnected), then start."""
        self._pg_ctl("-m", "fast", "restart")

    def crash(self) -> None:
        """Immediate stop: no checkpoint, crash recovery from the WAL on the next start."""
        self._pg_ctl("-m", "immediate", "stop")

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=5"

    def url(self, database: str, port: int | None = None) -> str:
        """The SQLAlchemy URL the app uses, optionally through a proxy on ``port``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(database), autocommit=True)
