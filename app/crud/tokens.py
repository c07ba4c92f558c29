"""Queries on API tokens (only their key ids and hashes are stored)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..models import ApiToken


def create_token(session: Session, *, name: str, scope: str, key_id: str, token_hash: str) -> ApiToken:
    token = ApiToken(name=name, scope=scope, key_id=key_id, token_hash=token_hash)
    session.add(token)
    session.flush()
    return token


def find_token(session: Session, key_id: str) -> ApiToken | None:
    return session.scalars(select(ApiToken).where(ApiToken.key_id == key_id)).one_or_none()


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
