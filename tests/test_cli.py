"""The README's commands, run as written through the real ``flask`` CLI, in local and production settings.

stdout of a command is its result alone (logs go to stderr), so ``TOKEN=$(...)`` captures
just the token; a missing schema or a configuration error is one line, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import URL

from app.config import variable_names
from tests.support.databases import url_string
from tests.support.redis_db import redis_url
from tests.support.server import production_server

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Word for word as the README gives them (the venv is the one running this test).
UPGRADE = ".venv/bin/flask --app app.main:create_app db upgrade"
CREATE_TOKEN = "TOKEN=$(.venv/bin/flask --app app.main:create_app tokens create --name me --scope write)"
# The README's next step, sent by Python instead of curl:
#   curl -i -X POST http://127.0.0.1:8000/items -H "Authorization: Bearer $TOKEN" \
#        -H 'Content-Type: application/json' -d '{"title": "Example item", "description": "Created via Flask API"}'
EXAMPLE_ITEM = {"title": "Example item", "description": "Created via Flask API"}
NO_SCHEMA = "Error: the database has no schema yet: run `flask db upgrade` first"


def _shell(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    return subprocess.run(
        ["bash", "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _newcomer_environment(**settings: str) -> dict[str, str]:
    """This process's environment without any of the app's settings, plus ``settings``."""
    names = set(variable_names())
    return {**{k: v for k, v in os.environ.items() if k not in names}, "FLASK_SKIP_DOTENV": "1", **settings}


@pytest.fixture
def local(fresh_database_url: URL) -> dict[str, str]:
    return _newcomer_environment(DATABASE_URL=url_string(fresh_database_url))


@pytest.fixture
def production(fresh_database_url: URL) -> dict[str, str]:
    """The README's "Production server" exports."""
    return _newcomer_environment(
        APP_ENV="production",
        SECRET_KEY="k" * 48,
        DATABASE_URL=url_string(fresh_database_url),
        REDIS_URL=redis_url(),
    )


def _run_the_readme(env: dict[str, str], tmp_path: Path) -> None:
    upgraded = _shell(UPGRADE, env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("Database schema at "), upgraded.stdout
    assert len(upgraded.stdout.splitlines()) == 1

    captured = _shell(f'{CREATE_TOKEN} && printf "%s" "$TOKEN"', env)
    assert captured.returncode == 0, captured.stderr
    token = captured.stdout
    assert token.startswith("itm_")
    assert "\n" not in token

    with production_server(tmp_path, **env) as server:
        request = urllib.request.Request(  # noqa: S310 (a loopback URL)
            f"{server.base_url}/items",
            data=json.dumps(EXAMPLE_ITEM).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 201
            assert json.loads(response.read())["title"] == "Example item"


def test_the_readme_commands_work_as_written_locally(local: dict[str, str], tmp_path: Path) -> None:
    _run_the_readme(local, tmp_path)


@pytest.mark.postgresql_only
def test_the_readme_commands_work_as_written_in_production(production: dict[str, str], tmp_path: Path) -> None:
    _run_the_readme(production, tmp_path)


def _assert_no_schema(env: dict[str, str]) -> None:
    result = _shell(CREATE_TOKEN.removeprefix("TOKEN=$(").removesuffix(")"), env)

    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == NO_SCHEMA
    assert "Traceback" not in result.stderr


def test_a_command_before_migrations_says_to_run_db_upgrade_locally(local: dict[str, str]) -> None:
    _assert_no_schema(local)


@pytest.mark.postgresql_only
def test_a_command_before_migrations_says_to_run_db_upgrade_in_production(production: dict[str, str]) -> None:
    _assert_no_schema(production)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"SECRET_KEY": "short"}, "SECRET_KEY must be set to a random value of at least 32 characters"),
        ({"DATABASE_URL": ""}, "DATABASE_URL must be set when APP_ENV=production"),
        ({"DB_POOL_SIZE": "many"}, "DB_POOL_SIZE is invalid"),
    ],
)
@pytest.mark.postgresql_only
def test_a_configuration_error_is_one_line_without_a_traceback(
    production: dict[str, str], change: dict[str, str], reason: str
) -> None:
    result = _shell(UPGRADE, {**production, **change})

    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"Error: {reason}")
