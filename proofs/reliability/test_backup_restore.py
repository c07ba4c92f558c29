"""scripts/backup.sh and scripts/restore.sh: a destroyed database comes back row for row."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from proofs.reliability.conftest import Stack
from tests.support.postgres import Cluster
from tests.support.server import ROOT

TITLES = ["plain", "  padded  ", "ünïcødé ✓", "emoji 🧪", "quote ' and \" and \\", "'; DROP TABLE items; --", "x" * 200]
DESCRIPTIONS = [None, "", "line\nbreak\ttab", "z" * 5000, "日本語のテキスト"]


def _request(port: int, method: str, path: str, token: str, body: object = None, key: str | None = None) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if key:
        headers["Idempotency-Key"] = key
    try:
        connection.request(method, path, None if body is None else json.dumps(body), headers)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status < 300, payload
    return json.loads(payload) if payload else None


def _snapshot(cluster: Cluster, database: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of the public schema, in primary-key order."""
    with cluster.connect(database) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
            )
        ]
        select = sql.SQL("SELECT * FROM {} ORDER BY 1")
        return {table: connection.execute(select.format(sql.Identifier(table))).fetchall() for table in tables}


def _script(name: str, *args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / name), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(90)
def test_a_dropped_database_is_restored_row_for_row(
    stack_factory: Callable[..., Stack], cluster: Cluster, tmp_path: Path
) -> None:
    stack = stack_factory("backup")
    port = stack.server.port
    stack.server.start()
    created = [
        _request(port, "POST", "/items", stack.token, {"title": title, "description": description}, uuid.uuid4().hex)
        for title in TITLES
        for description in DESCRIPTIONS
    ]
    _request(port, "PATCH", f"/items/{created[3]['id']}", stack.token, {"title": "changed later"})
    _request(port, "DELETE", f"/items/{created[5]['id']}", stack.token)
    stack.server.stop()
    before = _snapshot(cluster, stack.database)
    backups = tmp_path / "backups"
    env = {
        **os.environ,
        "PATH": f"{cluster.bindir}:{os.environ['PATH']}",
        "DATABASE_URL": cluster.url(stack.database),
        "BACKUP_DIR": str(backups),
        "BACKUP_KEEP": "2",
    }

    made = [_script("backup.sh", env=env) for _ in range(3)]
    cluster.drop_database(stack.database)
    with cluster.connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(stack.database)))
    _script("restore.sh", made[-1], env=env)
    after = _snapshot(cluster, stack.database)

    assert sorted(str(path) for path in backups.iterdir()) == sorted(made[1:])
    assert set(before) >= {"items", "api_tokens", "idempotency_keys", "alembic_version"}
    assert {table: len(rows) for table, rows in before.items()}["items"] == len(created) - 1
    assert after == before
    # The restored service carries on: the token works, ids continue after the last one.
    stack.server.start()
    assert _request(port, "GET", f"/items/{created[0]['id']}", stack.token) == created[0]
    newest = _request(port, "POST", "/items", stack.token, {"title": "after the restore"})
    assert newest["id"] > max(item["id"] for item in created)
