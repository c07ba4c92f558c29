"""Alembic, driven from the app's own engine (the ``flask db`` commands are in app/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported inside the functions: the workers that serve requests never need it,
# and it brings Mako and Pygments with it (about 10 MB per worker).

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    # env.py runs on this connection instead of opening its own.
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), revision)


def current_revision(engine: Engine) -> str:
    """The revision the database is at, marked "(head)" when it is the latest."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_heads()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if not current:
        return "base (empty schema)"
    return ", ".join(f"{rev} (head)" if rev == head else rev for rev in current)
