"""Real PostgreSQL servers: a throwaway cluster (plain or TLS-only) and PgBouncer in front of one.

They run as the ``postgres`` OS user when the tests run as root (both refuse root:
subprocess switches user, as runuser would, without a process in between), on free
loopback ports below 32768, in their own directory, and are stopped by the process id
we started. They never touch the machine's main server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.support.databases import create_database, drop_database
from tests.support.tcp import free_port, wait_for_port
from tests.support.tools import require_tool

RUNNING_AS_ROOT = os.geteuid() == 0
SERVER_USER = "postgres"


def postgres_bindir() -> Path:
    """PG_BIN if set, else the newest installed PostgreSQL's server binaries."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    default = str(candidates[-1]) if candidates else None
    initdb = require_tool("initdb", str(Path(os.environ["PG_BIN"]) / "initdb") if "PG_BIN" in os.environ else default)
    return Path(initdb).parent


def start_as_server_user(command: list[str]) -> subprocess.Popen[bytes]:
    """Start ``command`` as the server user when we are root, as ourselves otherwise."""
    user = SERVER_USER if RUNNING_AS_ROOT else None
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        user=user,
        group=user,
        extra_groups=[] if user else None,
    )


def run_as_server_user(command: list[str], log: Path | None = None, timeout: float = 60) -> None:
    user = SERVER_USER if RUNNING_AS_ROOT else None
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, user=user, group=user,
        extra_groups=[] if user else None,
    )  # fmt: skip
    if done.returncode != 0:
        details = log.read_text(errors="replace") if log and log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}\n{done.stderr}\n{details}")


@contextmanager
def server_directory(prefix: str) -> Iterator[Path]:
    """A private directory the server user owns (pytest's tmp_path is root's, mode 0700)."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    if RUNNING_AS_ROOT:
        shutil.chown(directory, SERVER_USER, SERVER_USER)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def give_to_server_user(*paths: Path) -> None:
    if RUNNING_AS_ROOT:
        for path in paths:
            shutil.chown(path, SERVER_USER, SERVER_USER)


@dataclass(frozen=True)
class PgBouncer:
    port: int
    config: Path
    log: Path
    version: str


def pgbouncer_version(binary: str) -> str:
    first_line = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.split("\n")[0]
    return first_line.split()[-1]  # "PgBouncer 1.18.0"


@contextmanager
def run_pgbouncer(settings: dict[str, str], databases: dict[str, str], user: str) -> Iterator[PgBouncer]:
    """PgBouncer in the foreground (our child), with ``settings`` as its [pgbouncer] section.

    Clients are trusted (the test server trusts loopback too); ``user`` is the one login.
    """
    binary = require_tool("pgbouncer")
    with server_directory("items-pgbouncer-") as directory:
        port = free_port()
        config, log, users = directory / "pgbouncer.ini", directory / "pgbouncer.log", directory / "userlist.txt"
        users.write_text(f'"{user}" ""\n')
        sections = {
            "databases": databases,
            "pgbouncer": {
                **settings,
                "listen_addr": "127.0.0.1",
                "listen_port": str(port),
                "unix_socket_dir": "",
                "auth_type": "trust",
                "auth_file": str(users),
                "admin_users": user,
                "logfile": str(log),
                "pidfile": "",
            },
        }
        config.write_text(
            "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in sections[name].items()) for name in sections)
        )
        log.touch()
        give_to_server_user(config, log, users)
        process = start_as_server_user([binary, str(config)])
        try:
            wait_for_port(port, process, log)
            yield PgBouncer(port, config, log, pgbouncer_version(binary))
        finally:
            process.terminate()
            process.wait(timeout=15)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run([require_tool("openssl"), *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", cert.name, "-days", "2", "-subj", f"/CN=Items API test CA {name}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    return key, cert


def make_server_certificate(directory: Path, ca_key: Path, ca_cert: Path) -> tuple[Path, Path]:
    key, csr, cert, extensions = (directory / n for n in ("server.key", "server.csr", "server.crt", "server.ext"))
    extensions.write_text(
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
        "extendedKeyUsage = serverAuth\n"
        "basicConstraints = critical, CA:FALSE\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key.name, "-out", csr.name, "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", csr.name, "-CA", ca_cert.name, "-CAkey", ca_key.name, "-CAcreateserial",
        "-out", cert.name, "-days", "2", "-extfile", extensions.name,
        cwd=directory,
    )  # fmt: skip
    key.chmod(0o600)  # PostgreSQL refuses a key others can read
    return key, cert


class Cluster:
    """One PostgreSQL cluster (initdb + pg_ctl) in its own directory, that a test may restart and crash.

    ``settings`` go to postgresql.conf (listen address and port are ours); ``hba`` replaces
    pg_hba.conf (default: trust on loopback, as the test server).
    """

    def __init__(self, directory: Path, settings: dict[str, object], hba: str | None = None) -> None:
        self.bindir = postgres_bindir()
        self.root = directory
        self.data, self.log = directory / "data", directory / "postgres.log"
        self.port = free_port()
        self.settings = {"listen_addresses": "'127.0.0.1'", "port": self.port, **settings}
        self.hba = hba

    def _pg_ctl(self, *args: str) -> None:
        command = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30"]
        run_as_server_user([*command, *args], self.log)

    def init(self) -> None:
        initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]
        run_as_server_user([*initdb, "-E", "UTF8", "--no-locale", "--no-sync"])
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in self.settings.items())
        if self.hba is not None:
            (self.data / "pg_hba.conf").write_text(self.hba)

    def start(self) -> None:
        self._pg_ctl("start")

    def restart_fast(self) -> None:
        """Clean shutdown (active transactions rolled back, clients disconnected), then start."""
        self._pg_ctl("-m", "fast", "restart")

    def crash(self) -> None:
        """Immediate stop: no checkpoint, crash recovery from the WAL on the next start."""
        self._pg_ctl("-m", "immediate", "stop")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._pg_ctl("-m", "fast", "stop")

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database} connect_timeout=5"

    def url(self, database: str, port: int | None = None) -> str:
        """The SQLAlchemy URL the app uses, optionally through a proxy on ``port``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, name: str) -> None:
        drop_database(self.dsn(), name)
        create_database(self.dsn(), name)

    def drop_database(self, name: str) -> None:
        drop_database(self.dsn(), name)

    def connect(self, database: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(database), autocommit=True)


@contextmanager
def run_cluster(prefix: str, settings: dict[str, object], hba: str | None = None) -> Iterator[Cluster]:
    """An initialised, started cluster, stopped and deleted afterwards."""
    with server_directory(prefix) as directory:
        cluster = Cluster(directory, settings, hba)
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@dataclass(frozen=True)
class TlsCluster:
    port: int
    ca: Path  # signed the server's certificate (CN localhost, SAN localhost and 127.0.0.1)
    other_ca: Path  # a CA that signed nothing here
    log: Path


@contextmanager
def run_tls_cluster() -> Iterator[TlsCluster]:
    """A fresh PostgreSQL cluster that accepts only TLS connections, on 127.0.0.1 and 127.0.0.2."""
    with server_directory("items-tls-certs-") as certs:
        ca_key, ca = make_ca(certs, "right")
        _, other_ca = make_ca(certs, "wrong")
        server_key, server_cert = make_server_certificate(certs, ca_key, ca)
        give_to_server_user(*certs.iterdir())
        settings = {
            "listen_addresses": "'127.0.0.1,127.0.0.2'",
            "unix_socket_directories": f"'{certs}'",
            "ssl": "on",
            "ssl_cert_file": f"'{server_cert}'",
            "ssl_key_file": f"'{server_key}'",
            "fsync": "off",
            "max_connections": 30,
        }
        hba = "local all all trust\nhostssl all all 127.0.0.0/8 trust\nhostnossl all all 0.0.0.0/0 reject\n"
        with run_cluster("items-tls-pg-", settings, hba) as cluster:
            yield TlsCluster(cluster.port, ca, other_ca, cluster.log)


def pgbouncer_show(bouncer: PgBouncer, user: str, what: str) -> list[dict[str, str]]:
    """``SHOW <what>`` on PgBouncer's admin console (simple query protocol only, hence raw libpq)."""
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user=user, dbname="pgbouncer", autocommit=True) as conn:
        result = conn.pgconn.exec_(f"SHOW {what}".encode())
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        return [
            {name: (result.get_value(row, col) or b"").decode() for col, name in enumerate(names)}
            for row in range(result.ntuples)
        ]
