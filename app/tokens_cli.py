"""``flask tokens create|list|revoke``: manage API tokens."""

from __future__ import annotations

import re

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy.exc import IntegrityError

from . import crud
from .auth import new_token
from .db import get_database
from .idempotency import ANONYMOUS
from .models import TOKEN_NAME_MAX_LENGTH, TOKEN_SCOPES

# At least one letter or digit: that keeps out "-" (ANONYMOUS, whose idempotency keys are
# those of requests without a token) and other names that read as placeholders.
_NAME = re.compile(rf"(?=.*[A-Za-z0-9])[A-Za-z0-9._-]{{1,{TOKEN_NAME_MAX_LENGTH}}}")
RESERVED_NAMES = frozenset({ANONYMOUS})

tokens_cli = AppGroup("tokens", help="API tokens for the bearer authentication.")


@tokens_cli.command("create")
@click.option("--name", required=True, help="Unique name, e.g. ci-deploy-2026-11.")
@click.option("--scope", type=click.Choice(TOKEN_SCOPES), required=True, help="read, or write (implies read).")
def create_command(name: str, scope: str) -> None:
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
            crud.create_token(session, name=name, scope=scope, key_id=issued.key_id, token_hash=issued.token_hash)
    except IntegrityError:
        raise click.ClickException(f"a token named {name!r} already exists") from None
    click.echo(issued.token)
    click.echo(f"Created {scope} token {name!r}. Store it now: it cannot be shown again.", err=True)


@tokens_cli.command("list")
def list_command() -> None:
    """List tokens (never their secrets)."""
    with get_database().sessionmaker() as session:
        for token in crud.list_tokens(session):
            state = f"revoked {token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "active"
            click.echo(f"{token.name}\t{token.scope}\tcreated {token.created_at:%Y-%m-%d %H:%M}\t{state}")


@tokens_cli.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Revoke the token NAME; it stops working at once."""
    with get_database().sessionmaker.begin() as session:
        revoked = crud.revoke_token(session, name)
    if not revoked:
        raise click.ClickException(f"no active token named {name!r}")
    click.echo(f"Revoked {name!r}.")


def init_app(app: Flask) -> None:
    app.cli.add_command(tokens_cli)
