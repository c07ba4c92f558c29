"""Queries by resource. Functions take the caller's session, never commit, and know no Flask."""

from . import idempotency, items, tokens

__all__ = ["idempotency", "items", "tokens"]
