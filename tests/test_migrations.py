"""Alembic: upgrade from empty, idempotent re-runs, no drift from the models, a clean round trip."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, inspect

from app.main import create_app
from app.migrate import alembic_config
from app.models import Base
from tests.conftest import app_config


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _tables(url: URL) -> set[str]:
    engine = create_app(app_config(url)).extensions["database"].engine
    try:
        with engine.connect() as connection:
            return set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def _flask_db(url: URL, *args: str) -> str:
    app = create_app(app_config(url))
    try:
        result = app.test_cli_runner().invoke(args=["db", *args])
        assert result.exit_code == 0, result.output
        # The last line is the command's answer; log lines may come before it.
        return result.output.strip().splitlines()[-1]
    finally:
        app.extensions["database"].engine.dispose()


def test_the_app_does_not_create_tables_on_its_own(fresh_database_url: URL) -> None:
    create_app(app_config(fresh_database_url)).test_client().get("/health")

    assert "items" not in _tables(fresh_database_url)


def test_upgrade_from_empty_reaches_head(fresh_database_url: URL) -> None:
    _flask_db(fresh_database_url, "upgrade")

    assert {"items", "alembic_version"} <= _tables(fresh_database_url)
    assert _flask_db(fresh_database_url, "current").strip() == f"{_head()} (head)"


def test_upgrade_is_idempotent(fresh_database_url: URL) -> None:
    _flask_db(fresh_database_url, "upgrade")
    _flask_db(fresh_database_url, "upgrade")

    assert _flask_db(fresh_database_url, "current").strip() == f"{_head()} (head)"


def test_migrations_match_the_models(fresh_database_url: URL) -> None:
    _flask_db(fresh_database_url, "upgrade")
    engine = create_app(app_config(fresh_database_url)).extensions["database"].engine
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            drift = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()

    assert drift == []


def test_downgrade_to_base_and_back_up(fresh_database_url: URL) -> None:
    _flask_db(fresh_database_url, "upgrade")

    _flask_db(fresh_database_url, "downgrade", "base")
    assert _tables(fresh_database_url) <= {"alembic_version"}

    _flask_db(fresh_database_url, "upgrade")
    assert "items" in _tables(fresh_database_url)


def test_every_step_downgrades_one_revision(fresh_database_url: URL) -> None:
    _flask_db(fresh_database_url, "upgrade")

    _flask_db(fresh_database_url, "downgrade")

    assert "(head)" not in _flask_db(fresh_database_url, "current")
