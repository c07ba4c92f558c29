"""Request and response schemas: all validation and serialization of the API.

The OpenAPI document is generated from these same classes.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .models import TITLE_MAX_LENGTH

DESCRIPTION_MAX_LENGTH = 5000
PAGE_SIZE_DEFAULT = 20
PAGE_SIZE_MAX = 100
MAX_ID = 2**63 - 1

# What str.strip() removes (every character for which str.isspace() is true), and the
# control characters a stored string may not contain. Spelled out so that the OpenAPI
# patterns below say exactly what the validators do.
_WHITESPACE = r" \t\n\x0b\x0c\r\x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_CONTROL = r"\x00-\x1f\x7f"
# Multi-line text may keep tabs and newlines; NUL and other C0 controls never reach the database.
_DESCRIPTION_CONTROL = r"\x00-\x08\x0b\x0c\x0e-\x1f"

TITLE_PATTERN = (
    rf"^[{_WHITESPACE}]*[^{_WHITESPACE}{_CONTROL}]"
    rf"(?:[^{_CONTROL}]{{0,{TITLE_MAX_LENGTH - 2}}}[^{_WHITESPACE}{_CONTROL}])?[{_WHITESPACE}]*$"
)
DESCRIPTION_PATTERN = rf"^[^{_DESCRIPTION_CONTROL}]*$"
_TITLE = re.compile(TITLE_PATTERN)
_HAS_CONTROL = re.compile(f"[{_CONTROL}]")
_DESCRIPTION = re.compile(DESCRIPTION_PATTERN)


def _title(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError("must not be blank")
    if _HAS_CONTROL.search(stripped):
        raise ValueError("must not contain control characters")
    if len(stripped) > TITLE_MAX_LENGTH:
        raise ValueError(f"must be at most {TITLE_MAX_LENGTH} characters after trimming surrounding whitespace")
    return stripped


def _description(value: str) -> str:
    if len(value) > DESCRIPTION_MAX_LENGTH:
        raise ValueError(f"must be at most {DESCRIPTION_MAX_LENGTH} characters")
    if not _DESCRIPTION.fullmatch(value):
        raise ValueError("must not contain control characters other than tab and newline")
    return value


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything this service stores is UTC.
    # pydantic writes a UTC datetime as RFC 3339 with "Z".
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Title = Annotated[
    str,
    AfterValidator(_title),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": TITLE_PATTERN,
            "description": f"1 to {TITLE_MAX_LENGTH} characters once surrounding whitespace is trimmed "
            "(it is); no control characters.",
        }
    ),
]
Description = Annotated[
    str,
    AfterValidator(_description),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": DESCRIPTION_MAX_LENGTH,
            "pattern": DESCRIPTION_PATTERN,
            "description": "No control characters other than tab, newline and carriage return.",
        }
    ),
]
UtcTimestamp = Annotated[datetime, AfterValidator(_as_utc)]
# An item's columns as the database returns them: id, title, description, created_at, updated_at.
ItemValues = tuple[int, str, str | None, datetime, datetime]


class _Input(BaseModel):
    # strict: a number is not a title; forbid: a client cannot set id or timestamps.
    model_config = ConfigDict(extra="forbid", strict=True)


class ItemIn(_Input):
    """A new item."""

    title: Title
    description: Description | None = None


def _omit_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class ItemPatch(_Input):
    """A partial update: at least one field; ``title`` cannot be null."""

    # Optional but never null: the default only marks the field as not given.
    title: Title = Field(  # type: ignore[assignment]
        default=None, description="Cannot be null.", json_schema_extra=_omit_default
    )
    description: Description | None = None

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _at_least_one_field(self) -> ItemPatch:
        if not self.model_fields_set:
            raise ValueError("at least one of title, description is required")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set)


class ItemOut(BaseModel):
    """An item as the API returns it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    description: str | None
    created_at: UtcTimestamp
    updated_at: UtcTimestamp


class ItemPage(BaseModel):
    """One page of items, newest first."""

    items: list[ItemOut]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def item_document(values: ItemValues) -> dict[str, object]:
    """What ``ItemOut`` holds for a row, without validating it: the values come from our database.

    Written with ``dumps``, the same bytes as ``ItemOut.model_validate(values).model_dump_json()``
    (tests/test_read_path.py compares them) at a fraction of the cost: the hot reads use it.
    """
    item_id, title, description, created_at, updated_at = values
    return {
        "id": item_id,
        "title": title,
        "description": description,
        "created_at": _as_utc(created_at),
        "updated_at": _as_utc(updated_at),
    }


def dumps(document: object) -> bytes:
    """JSON as pydantic writes these models: compact, UTF-8, UTC times in RFC 3339 with "Z"."""
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The id a page continues below; ValueError for anything this service did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError("is not a valid cursor") from None
    prefix, _, digits = raw.partition(":")
    if prefix != "id" or not digits.isdigit() or not digits.isascii() or not 0 < int(digits) <= MAX_ID:
        raise ValueError("is not a valid cursor")
    return int(digits)


class ListQuery(BaseModel):
    """Query string of ``GET /items``."""

    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=PAGE_SIZE_DEFAULT, ge=1, le=PAGE_SIZE_MAX)
    cursor: str | None = Field(default=None, max_length=64, description="Opaque `next_cursor` of a previous page.")

    @field_validator("limit", mode="before")
    @classmethod
    def _digits_only(cls, value: object) -> object:
        if isinstance(value, str) and not (value.isascii() and value.isdigit()):
            raise ValueError("must be a whole number")
        return value

    @field_validator("cursor")
    @classmethod
    def _issued_by_us(cls, value: str | None) -> str | None:
        if value is not None:
            decode_cursor(value)
        return value

    @property
    def before_id(self) -> int | None:
        return None if self.cursor is None else decode_cursor(self.cursor)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """An error, as RFC 9457 ``application/problem+json``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    request_id: str | None = None
    errors: list[FieldError] | None = None


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])
    environment: str = Field(examples=["local"])


class ReadinessOut(BaseModel):
    status: str = Field(examples=["ok"])
    database: str = Field(examples=["ok"])


def field_errors(exc: ValidationError, location: str) -> list[dict[str, Any]]:
    """Pydantic's errors as ``{"loc", "msg"}`` pairs, without echoing the input back."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = [location, *error["loc"]]
        errors.append({"loc": loc, "msg": error["msg"].removeprefix("Value error, ")})
    return errors
