"""Settings: one typed model (pydantic-settings), read once from the environment.

This is the only module that reads the environment; the app and the server
(app/server.py) read the same :class:`Settings`. A bad value is a start-up
error that names the variable, never a silent default.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from limits import parse_many
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIN_SECRET_KEY_LENGTH = 32
SQLITE_FILENAME = "items.db"
_GIT_SHA = re.compile(r"[0-9a-f]{7,40}")
_ORIGIN = re.compile(r"https?://[^/\s]+")
# Not a setting: where Flask keeps the embedded SQLite file; passed by load_settings only.
_INSTANCE_PATH = "__instance_path__"


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


def _integer(value: object) -> object:
    # Plain ASCII digits only: pydantic alone would take "1.0", "1_000" and full-width digits.
    if isinstance(value, bool) or (isinstance(value, str) and not re.fullmatch(r"-?[0-9]+", value.strip())):
        raise ValueError("not a valid integer")
    return int(value.strip()) if isinstance(value, str) else value


def _casefold(upper: bool) -> BeforeValidator:
    return BeforeValidator(lambda v: (v.strip().upper() if upper else v.strip().lower()) if isinstance(v, str) else v)


Int = Annotated[int, BeforeValidator(_integer)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], _casefold(upper=True)]


def normalize_database_url(name: str, value: str) -> URL:
    """Parse a database URL, steering PostgreSQL URLs to the psycopg 3 driver."""
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ConfigError(f"{name} is not a valid database URL") from exc
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("postgresql", "sqlite"):
        raise ConfigError(f"{name} must be a postgresql:// or sqlite:// URL")
    return url


class Settings(BaseSettings):
    """The application's and the server's settings; each field is the variable of its name."""

    model_config = SettingsConfigDict(
        case_sensitive=False, frozen=True, extra="ignore", str_strip_whitespace=True, arbitrary_types_allowed=True
    )

    app_env: Annotated[Literal["local", "test", "production"], _casefold(upper=False)] = "local"
    database_url: Annotated[URL, NoDecode]
    secret_key: str = Field("", repr=False)
    debug: bool = Field(False, validation_alias="flask_debug")
    log_level: LogLevel = "INFO"
    # Machines read production and test logs; people read local ones (default set below).
    log_format: Annotated[Literal["json", "console"], _casefold(upper=False)]
    max_content_length: Int = Field(1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    # The longest query string the app parses; longer ones get a problem+json 414. At most
    # 6 KiB: the production server refuses request lines over 8190 bytes itself.
    max_query_string_bytes: Int = Field(4096, ge=256, le=6144)
    # Expired idempotency keys are pruned at most this often, after a keyed create (one prune
    # per interval across replicas with Redis; app/idempotency_prune.py); 0: never.
    idempotency_prune_interval_seconds: Int = Field(600, ge=0, le=86_400)
    db_pool_size: Int = Field(5, ge=1, le=100)
    db_max_overflow: Int = Field(5, ge=0, le=100)
    db_pool_timeout: Int = Field(2, ge=1, le=60)
    db_connect_timeout: Int = Field(2, ge=1, le=60)
    db_statement_timeout_ms: Int = Field(5000, ge=0, le=600_000)
    # DATABASE_URL points at PgBouncer in transaction mode: no server-side prepared
    # statements, no startup options (app/engine.py says why).
    db_pgbouncer: bool = False
    # The connection budget (docs/scaling.md), enforced when DB_MAX_CONNECTIONS is set.
    expected_replicas: Int = Field(1, ge=1, le=1000)
    db_max_connections: Int = Field(0, ge=0, le=100_000)
    db_reserved_connections: Int = Field(10, ge=0, le=10_000)
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto are believed (Caddy: 1).
    trusted_proxy_hops: Int = Field(0, ge=0, le=5)
    git_sha: Annotated[str, _casefold(upper=False)] = "unknown"
    # Set by app/server.py: workers share metrics through files in this directory.
    metrics_dir: Path | None = Field(None, validation_alias="prometheus_multiproc_dir")
    auth_disabled: bool = False
    reads_require_auth: bool = False
    # How long a worker may keep using a token it looked up (a revocation's longest delay);
    # 0 reads the token on every request. Default: 5 in production, 0 elsewhere (set below).
    token_cache_seconds: Int = Field(0, ge=0, le=300)
    redis_url: str | None = Field(None, repr=False)  # may carry the Redis password
    rate_limit_enabled: bool = True
    rate_limit: str = "600 per minute"
    rate_limit_writes: str = "120 per minute"
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # The production HTTP server (app/server.py): worker processes, Python threads in each.
    port: Int = Field(8000, ge=1, le=65535)
    web_concurrency: Int = Field(2, ge=1, le=64)
    # Two: a worker accepts connections whatever its threads are doing, so with one thread a
    # slow request would hold up every request queued behind it on that worker.
    server_threads: Int = Field(2, ge=1, le=64)
    # A worker whose requests in flight have not moved for this long is killed and replaced.
    worker_timeout: Int = Field(30, ge=1, le=3600)
    # After the drain: how long in-flight requests may take before the workers are killed.
    graceful_timeout: Int = Field(20, ge=1, le=3600)
    # An idle keep-alive connection (and a client slow to send its headers) is closed after
    # this long; 0 turns keep-alive off. Proxies in front must time out idle ones sooner.
    keepalive_seconds: Int = Field(30, ge=0, le=60)
    # Peers whose X-Forwarded-* headers are believed: addresses or networks, or "*".
    forwarded_allow_ips: str = "127.0.0.1"
    shutdown_drain_seconds: Int = Field(3, ge=0, le=60)

    # False in _GivenEnvironment: settings from a given mapping only.
    _reads_environment: ClassVar[bool] = True

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Overrides (create_app's config), then the process environment; no .env file.
        return (init_settings, env_settings) if cls._reads_environment else (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # A blank variable is an unset one.
        data = {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        instance_path = Path(data.pop(_INSTANCE_PATH, PROJECT_ROOT / "instance"))
        env = str(data.get("app_env", "local")).strip().lower()
        data.setdefault("log_format", "console" if env == "local" else "json")
        data.setdefault("token_cache_seconds", 5 if env == "production" else 0)
        if env != "production":
            # Outside production a per-process key is fine: nothing signed outlives it.
            data.setdefault("secret_key", secrets.token_hex(32))
            data.setdefault("database_url", f"sqlite:///{instance_path / SQLITE_FILENAME}")
        elif "database_url" not in data:
            raise ConfigError("DATABASE_URL must be set when APP_ENV=production")
        return data

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, value: object) -> object:
        return normalize_database_url("DATABASE_URL", value) if isinstance(value, str) else value

    @field_validator("git_sha")
    @classmethod
    def _git_sha(cls, value: str) -> str:
        if value != "unknown" and not _GIT_SHA.fullmatch(value):
            raise ConfigError(f"GIT_SHA must be a git commit hash (7 to 40 hex digits); got {value!r}")
        return value

    @field_validator("metrics_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR must be an absolute path; got {str(value)!r}")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _forwarded_allow_ips(cls, value: str) -> str:
        entries = [entry.strip() for entry in value.split(",") if entry.strip()]
        if not entries:
            raise ConfigError("FORWARDED_ALLOW_IPS must list IP addresses or networks, or be '*'; got an empty list")
        if "*" in entries:
            return "*"
        try:
            return ",".join(str(ipaddress.ip_network(entry, strict=False)) for entry in entries)
        except ValueError:
            raise ConfigError(
                f"FORWARDED_ALLOW_IPS must list IP addresses or networks, or be '*'; got {value!r}"
            ) from None

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("rate_limit", "rate_limit_writes")
    @classmethod
    def _rate_limit(cls, value: str, info: ValidationInfo) -> str:
        try:
            parse_many(value)
        except ValueError:
            name = str(info.field_name).upper()
            raise ConfigError(f"{name} is not a rate limit like '300 per minute' or '10/second': {value!r}") from None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        origins = [o.strip() for o in value.split(",") if o.strip()] if isinstance(value, str) else value
        for origin in origins if isinstance(origins, list | tuple) else ():
            if origin == "*" or not _ORIGIN.fullmatch(str(origin)):
                raise ConfigError(f"CORS_ORIGINS must list origins like https://app.example.com; got {origin!r}")
        return origins

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.is_production:
            if self.database_url.get_backend_name() == "sqlite":
                raise ConfigError("DATABASE_URL must point to PostgreSQL when APP_ENV=production, not SQLite")
            if len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
                raise ConfigError(
                    f"SECRET_KEY must be set to a random value of at least {MIN_SECRET_KEY_LENGTH} "
                    "characters when APP_ENV=production"
                )
            if self.debug:
                raise ConfigError("FLASK_DEBUG must be off when APP_ENV=production")
            if self.auth_disabled:
                raise ConfigError("AUTH_DISABLED must be off when APP_ENV=production")
            if self.rate_limit_enabled and self.redis_url is None:
                raise ConfigError(
                    "REDIS_URL must be set when APP_ENV=production, so rate limits hold across workers "
                    "(or set RATE_LIMIT_ENABLED=false)"
                )
        # All replicas' pools must not be able to exhaust the server's connections.
        available = self.db_max_connections - self.db_reserved_connections
        if self.db_max_connections and self.connection_budget > available:
            raise ConfigError(
                "connection budget exceeded: EXPECTED_REPLICAS x WEB_CONCURRENCY x (DB_POOL_SIZE + DB_MAX_OVERFLOW) "
                f"= {self.connection_budget} > DB_MAX_CONNECTIONS - DB_RESERVED_CONNECTIONS = {available}"
            )
        return self

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

    @property
    def forwarded_allow_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
        """The networks of FORWARDED_ALLOW_IPS; None for "*" (any peer)."""
        if self.forwarded_allow_ips == "*":
            return None
        return tuple(ipaddress.ip_network(entry) for entry in self.forwarded_allow_ips.split(","))

    @property
    def connection_budget(self) -> int:
        """The most database connections all replicas together may open."""
        return self.expected_replicas * self.web_concurrency * (self.db_pool_size + self.db_max_overflow)

    def flask_config(self) -> dict[str, object]:
        return {
            "SECRET_KEY": self.secret_key,
            "DEBUG": self.debug,
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "MAX_QUERY_STRING_BYTES": self.max_query_string_bytes,
            "SETTINGS": self,
        }


class _GivenEnvironment(Settings):
    """Settings from a given mapping instead of the process environment (tests)."""

    _reads_environment: ClassVar[bool] = False


def load_settings(
    overrides: Mapping[str, object] | None = None,
    *,
    instance_path: str | Path = PROJECT_ROOT / "instance",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from the environment (or ``environ``), ``overrides`` taking precedence."""
    values: dict[str, Any] = {name.lower(): value for name, value in (environ or {}).items()}
    values.update({name.lower(): value for name, value in (overrides or {}).items()})
    values[_INSTANCE_PATH] = instance_path
    try:
        return (Settings if environ is None else _GivenEnvironment)(**values)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        # Fields are named (or aliased) after their variables.
        name = str(error["loc"][0]).upper() if error["loc"] else "A setting"
        reason = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name} is invalid: {reason}; got {error.get('input')!r}") from None


def variable_names() -> list[str]:
    """The environment variables the settings read (documented in .env.example)."""
    return [str(field.validation_alias or name).upper() for name, field in Settings.model_fields.items()]
