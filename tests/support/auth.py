"""Issue API tokens for tests, through the same code path as the CLI."""

from __future__ import annotations

from flask import Flask

from app import crud
from app.auth import new_token

# Tokens read itm_<16 hex key id>_<43 url-safe secret characters>.
SECRET_START = len("itm_") + 16 + 1


def issue_token(app: Flask, name: str, scope: str) -> str:
    issued = new_token()
    with app.extensions["database"].sessionmaker.begin() as session:
        crud.tokens.create_token(session, name=name, scope=scope, key_id=issued.key_id, token_hash=issued.token_hash)
    return issued.token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
