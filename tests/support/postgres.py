"""Real servers for the scale-out tests: PgBouncer and a throwaway TLS PostgreSQL cluster.

They run as the ``postgres`` OS user when the tests run as root (both refuse root:
subprocess switches user, as runuser would, without a process in between), on free
loopback ports below 32768, and are stopped by the process id we started.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

RUNNING_AS_ROOT = os.geteuid() == 0
SERVER_USER = "postgres"
INSTALL_HINTS = {
    "pgbouncer": "apt-get install -y pgbouncer",
    "openssl": "apt-get install -y openssl",
    "initdb": "apt-get install -y postgresql",
}


def require_tool(name: str, path: str | None = None) -> str:
    """The tool's path; without it fail in CI (never a silent skip there), skip elsewhere."""
    found = path if path and Path(path).exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({INSTALL_HINTS.get(name, 'install it')})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def postgres_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    initdb = require_tool("initdb", str(candidates[-1]) if candidates else None)
    return Path(initdb).parent


def free_port() -> int:
    """A free loopback port below 32768, outside Linux's ephemeral range."""
    for _ in range(200):
        port = random.randint(20_000, 32_767)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768 on 127.0.0.1")


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None, log: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s:\n{log.read_text(errors='replace')}")


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


def run_as_server_user(command: list[str], log: Path | None = None) -> None:
    process = start_as_server_user(command)
    if process.wait(timeout=60) != 0:
        details = log.read_text(errors="replace") if log and log.exists() else ""
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}\n{details}")


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


@dataclass(frozen=True)
class TlsCluster:
    port: int
    ca: Path  # signed the server's certificate (CN localhost, SAN localhost and 127.0.0.1)
    other_ca: Path  # a CA that signed nothing here
    log: Path


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


@contextmanager
def run_tls_cluster() -> Iterator[TlsCluster]:
    """A fresh PostgreSQL cluster that accepts only TLS connections, on 127.0.0.1 and 127.0.0.2."""
    bindir = postgres_bindir()
    with server_directory("items-tls-pg-") as directory:
        ca_key, ca = make_ca(directory, "right")
        _, other_ca = make_ca(directory, "wrong")
        server_key, server_cert = make_server_certificate(directory, ca_key, ca)
        data, log = directory / "data", directory / "postgres.log"
        give_to_server_user(*directory.iterdir())
        run_as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"])
        (data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.0/8 trust\nhostnossl all all 0.0.0.0/0 reject\n"
        )
        port = free_port()
        options = " ".join(
            f"-c {name}={value}"
            for name, value in {
                "port": port,
                "listen_addresses": "'127.0.0.1,127.0.0.2'",
                "unix_socket_directories": directory,
                "ssl": "on",
                "ssl_cert_file": server_cert,
                "ssl_key_file": server_key,
                "fsync": "off",
                "max_connections": 30,
            }.items()
        )
        pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "30"]
        run_as_server_user([*pg_ctl, "-o", options, "start"], log)
        try:
            yield TlsCluster(port, ca, other_ca, log)
        finally:
            run_as_server_user([*pg_ctl, "-m", "fast", "stop"])


def pgbouncer_show(bouncer: PgBouncer, user: str, what: str) -> list[dict[str, str]]:
    """``SHOW <what>`` on PgBouncer's admin console (simple query protocol only, hence raw libpq)."""
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user=user, dbname="pgbouncer", autocommit=True) as conn:
        result = conn.pgconn.exec_(f"SHOW {what}".encode())
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        return [
            {name: (result.get_value(row, col) or b"").decode() for col, name in enumerate(names)}
            for row in range(result.ntuples)
        ]
