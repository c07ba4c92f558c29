"""The ``flask`` commands: ``db``, ``tokens`` and ``idempotency``.

Each prints only its result on stdout (logs go to stderr, see main.py), so
``TOKEN=$(flask --app app.main:create_app tokens create ...)`` captures the token
alone; failures are one ``Error: ...`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from . import crud, migrate
from .auth import new_token
from .db import get_database
from .errors import is_database_unavailable
from .idempotency import ANONYMOUS, TTL
from .models import TOKEN_NAME_MAX_LENGTH, TOKEN_SCOPES

# At least one letter or digit: that keeps out "-" (ANONYMOUS, whose idempotency keys are
# those of requests without a token) and other names that read as placeholders.
_NAME = re.compile(rf"(?=.*[A-Za-z0-9])[A-Za-z0-9._-]{{1,{TOKEN_NAME_MAX_LENGTH}}}")
RESERVED_NAMES = frozenset({ANONYMOUS})
# PostgreSQL's undefined_table; SQLite says "no such table".
_UNDEFINED_TABLE = "42P01"

C = TypeVar("C", bound=Callable[..., Any])


def database_errors_in_one_line(command: C) -> C:
    """Turn a missing schema or an unreachable database into one line instead of a traceback."""

    @wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _UNDEFINED_TABLE or "no such table" in str(exc.orig):
                raise click.ClickException("the database has no schema yet: run `flask db upgrade` first") from None
            if is_database_unavailable(exc):
                reason = str(exc.orig or exc).strip().splitlines()
                raise click.ClickException(f"the database is unavailable: {reason[0] if reason else exc}") from None
            raise

    return run  # type: ignore[return-value]


db_cli = AppGroup("db", help="Database schema migrations (Alembic).")


@db_cli.command("upgrade")
@click.argument("revision", default="head")
@database_errors_in_one_line
def upgrade_command(revision: str) -> None:
    """Upgrade the schema to REVISION (default: head). Safe to run again."""
    engine = get_database().engine
    migrate.upgrade(engine, revision)
    _echo_revision(engine)


@db_cli.command("downgrade")
@click.argument("revision", default="-1")
@database_errors_in_one_line
def downgrade_command(revision: str) -> None:
    """Downgrade the schema to REVISION (default: one step back; "base" for empty)."""
    engine = get_database().engine
    migrate.downgrade(engine, revision)
    _echo_revision(engine)


def _echo_revision(engine: Engine) -> None:
    click.echo(f"Database schema at {migrate.current_revision(engine)}")


@db_cli.command("current")
@database_errors_in_one_line
def current_command() -> None:
    """Print the schema revision the database is at."""
    click.echo(migrate.current_revision(get_database().engine))


tokens_cli = AppGroup("tokens", help="API tokens for the bearer authentication.")


@tokens_cli.command("create")
@click.option("--name", required=True, help="Unique name, e.g. ci-deploy-2026-11.")
@click.option("--scope", type=click.Choice(TOKEN_SCOPES), required=True, help="read, or write (implies read).")
@database_errors_in_one_line
def create_token_command(name: str, scope: str) -> None:
    """Create a token and print it once; only its hash is stored."""
    if name in RESERVED_NAMES:
        raise click.BadParameter(f"{name!r} is reserved", param_hint="--name")
    if not _NAME.fullmatch(name):
        raise click.BadParameter(
            "use 1-100 letters, digits, dots, dashes or underscores, at least one letter or digit",
            param_hint="--name",
        )
    issued = new_token()
    try:
        with get_database().sessionmaker.begin() as session:
            crud.tokens.create_token(
                session, name=name, scope=scope, key_id=issued.key_id, token_hash=issued.token_hash
            )
    except IntegrityError:
        raise click.ClickException(f"a token named {name!r} already exists") from None
    click.echo(issued.token)
    click.echo(f"Created {scope} token {name!r}. Store it now: it cannot be shown again.", err=True)


@tokens_cli.command("list")
@database_errors_in_one_line
def list_tokens_command() -> None:
    """List tokens (never their secrets)."""
    with get_database().sessionmaker() as session:
        for token in crud.tokens.list_tokens(session):
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            click.echo(f"{token.name}\t{token.scope}\tcreated {token.created_at:%Y-%m-%d %H:%M}\t{state}")


@tokens_cli.command("revoke")
@click.argument("name")
@database_errors_in_one_line
def revoke_token_command(name: str) -> None:
    """Revoke the token NAME; it stops working within TOKEN_CACHE_SECONDS (5 s in production)."""
    with get_database().sessionmaker.begin() as session:
        revoked = crud.tokens.revoke_token(session, name)
    if not revoked:
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"Revoked {name!r}.")


idempotency_cli = AppGroup("idempotency", help="Idempotency keys of POST /items.")


@idempotency_cli.command("prune")
@click.option("--older-than-hours", type=click.IntRange(min=1), default=int(TTL.total_seconds() // 3600))
@database_errors_in_one_line
def prune_command(older_than_hours: int) -> None:
    """Delete keys older than their lifetime (24 hours). Safe to run from cron."""
    with get_database().sessionmaker.begin() as session:
        pruned = crud.idempotency.prune_idempotency_keys(session, older_than=timedelta(hours=older_than_hours))
    click.echo(f"Pruned {pruned} idempotency key(s).")


def init_app(app: Flask) -> None:
    for group in (db_cli, tokens_cli, idempotency_cli):
        app.cli.add_command(group)
