"""ORM models. The Alembic revisions in ``migrations/`` create this schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Identity,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TITLE_MAX_LENGTH = 200
TOKEN_NAME_MAX_LENGTH = 100
TOKEN_SCOPES = ("read", "write")
IDEMPOTENCY_KEY_MAX_LENGTH = 255

# Stable constraint names, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY (an alias of its rowid).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Item(Base):
    __tablename__ = "items"
    # Fetch server-generated id and timestamps in the INSERT itself (RETURNING).
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 (SQLAlchemy declares it an instance attribute)

    id: Mapped[int] = mapped_column(BigIntId, Identity(), primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def __repr__(self) -> str:
        return f"Item(id={self.id!r}, title={self.title!r})"


class ApiToken(Base):
    """A bearer token. Only a SHA-256 hash of the secret is stored, never the token."""

    __tablename__ = "api_tokens"
    __table_args__ = (CheckConstraint("scope IN ('read', 'write')", name="scope"),)

    id: Mapped[int] = mapped_column(BigIntId, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(TOKEN_NAME_MAX_LENGTH), unique=True)
    scope: Mapped[str] = mapped_column(String(10))
    # The public part of the token, to find its row without comparing secrets in SQL.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IdempotencyKey(Base):
    """The stored outcome of a create sent with an ``Idempotency-Key``, per caller.

    Written in the same transaction as the item, so an acknowledged create and its
    key are durable together; the unique constraint holds across workers and replicas.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("principal", "key"),)

    id: Mapped[int] = mapped_column(BigIntId, Identity(), primary_key=True)
    principal: Mapped[str] = mapped_column(String(TOKEN_NAME_MAX_LENGTH))
    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX_LENGTH))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(SmallInteger)
    response_body: Mapped[str] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
