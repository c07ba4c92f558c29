"""Queries on API tokens (only their key ids and hashes are stored)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from ..db import Query, Reader
from ..models import ApiToken


def create_token(session: Session, *, name: str, scope: str, key_id: str, token_hash: str) -> ApiToken:
    token = ApiToken(name=name, scope=scope, key_id=key_id, token_hash=token_hash)
    session.add(token)
    session.flush()
    return token


# What authentication needs, as a statement built once (runs on the request's reader).
TokenValues = tuple[str, str, str, datetime | None]
_TABLE = ApiToken.__table__
_FIND = Query(
    select(_TABLE.c.token_hash, _TABLE.c.name, _TABLE.c.scope, _TABLE.c.revoked_at).where(
        _TABLE.c.key_id == bindparam("key_id")
    )
)


def find_token(reader: Reader, key_id: str) -> TokenValues | None:
    """The hash, name, scope and revocation time of the token with ``key_id``."""
    return reader.first(_FIND, {"key_id": key_id})


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).order_by(ApiToken.name)).all()


def revoke_token(session: Session, name: str) -> bool:
    """Revoke the named token; False if there is no such active token."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
