"""scripts/backup.sh and restore.sh keep secrets off command lines and dumps private.

The full backup → drop → restore round trip is in proofs/reliability/test_backup_restore.py.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import URL

from tests.support.databases import url_string
from tests.support.tools import require_tool

pytestmark = pytest.mark.postgresql_only

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
PASSWORD = "s3cr@t:pw"
ENCODED_PASSWORD = "s3cr%40t%3Apw"


def _recording_tools(tmp_path: Path) -> Path:
    """pg_dump/pg_restore wrappers that log their argv and PGPASSWORD, then run the real tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        real = require_tool(tool)
        wrapper = bin_dir / tool
        wrapper.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "{tool} $*" >> "{tmp_path}/argv.log"\n'
            f'printf "%s\\n" "$PGPASSWORD" >> "{tmp_path}/pgpassword.log"\n'
            f'exec {real} "$@"\n'
        )
        wrapper.chmod(0o755)
    return bin_dir


def _run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPTS / script), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_backup_and_restore_pass_no_password_on_a_command_line_and_keep_dumps_private(
    live_app: Flask, fresh_database_url: URL, tmp_path: Path
) -> None:
    url = url_string(fresh_database_url.set(password=PASSWORD))
    assert ENCODED_PASSWORD in url, url
    backups = tmp_path / "backups"
    env = {
        **os.environ,
        "PATH": f"{_recording_tools(tmp_path)}:{os.environ['PATH']}",
        "DATABASE_URL": url,
        "BACKUP_DIR": str(backups),
    }
    env.pop("PGPASSWORD", None)

    made = _run("backup.sh", env=env)
    assert made.returncode == 0, made.stderr
    dump = Path(made.stdout.strip())
    restored = _run("restore.sh", "--yes", str(dump), env=env)
    assert restored.returncode == 0, restored.stderr

    argv = (tmp_path / "argv.log").read_text()
    assert "pg_dump " in argv
    assert "pg_restore " in argv
    assert PASSWORD not in argv
    assert ENCODED_PASSWORD not in argv
    # The password still reaches libpq, decoded, through the environment.
    assert set((tmp_path / "pgpassword.log").read_text().split()) == {PASSWORD}
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600


def test_an_existing_backup_directory_is_made_private(live_app: Flask, fresh_database_url: URL, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o755)
    env = {**os.environ, "DATABASE_URL": url_string(fresh_database_url), "BACKUP_DIR": str(backups)}
    made = _run("backup.sh", env=env)
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE(backups.stat().st_mode) == 0o700


def test_a_password_given_as_an_argument_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "BACKUP_DIR": str(tmp_path / "backups")}
    made = _run("backup.sh", "postgresql://items:hunter2@127.0.0.1:1/items", env=env)
    assert made.returncode == 2
    assert "visible in ps" in made.stderr
    restored = _run("restore.sh", "--yes", "x.dump", "postgresql://items:hunter2@127.0.0.1:1/items", env=env)
    assert restored.returncode == 2
    assert not (tmp_path / "backups").exists()
