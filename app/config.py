"""Settings, read once from the environment and cast strictly.

This is the only module that reads ``os.environ``. A bad value is a start-up
error that names the variable, never a silent default.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limits import parse_many
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

ENVIRONMENTS = ("local", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")
_GIT_SHA = re.compile(r"[0-9a-f]{7,40}")
MIN_SECRET_KEY_LENGTH = 32
DEFAULT_RATE_LIMIT = "600 per minute"
DEFAULT_RATE_LIMIT_WRITES = "120 per minute"
SQLITE_FILENAME = "items.db"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message names the variable."""


def _raw(source: Mapping[str, object], name: str) -> object | None:
    value = source.get(name)
    if isinstance(value, str) and value.strip() == "":
        return None
    return value


def _string(source: Mapping[str, object], name: str, default: str) -> str:
    value = _raw(source, name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value.strip()


def _choice(source: Mapping[str, object], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _string(source, name, default)
    normalized = value.upper() if choices == LOG_LEVELS else value.lower()
    if normalized not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return normalized


def _bool(source: Mapping[str, object], name: str, default: bool) -> bool:
    value = _raw(source, name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} is not a valid boolean: {value!r} (use true/false, 1/0, yes/no, on/off)")


def _int(source: Mapping[str, object], name: str, default: int, minimum: int, maximum: int) -> int:
    value = _raw(source, name)
    if value is None:
        return default
    if isinstance(value, bool):
        raise ConfigError(f"{name} is not a valid integer: {value!r}")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not text.lstrip("-").isdigit() or not text.isascii():
            raise ConfigError(f"{name} is not a valid integer: {value!r}")
        number = int(text)
    if not minimum <= number <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}; got {number}")
    return number


def _log_format(source: Mapping[str, object], app_env: str) -> str:
    # Machines read production and test logs; people read local ones.
    return _choice(source, "LOG_FORMAT", "console" if app_env == "local" else "json", LOG_FORMATS)


def _optional_path(source: Mapping[str, object], name: str) -> Path | None:
    value = _string(source, name, "")
    if value and not Path(value).is_absolute():
        raise ConfigError(f"{name} must be an absolute path; got {value!r}")
    return Path(value) if value else None


def _git_sha(source: Mapping[str, object]) -> str:
    value = _string(source, "GIT_SHA", "unknown").lower()
    if value != "unknown" and not _GIT_SHA.fullmatch(value):
        raise ConfigError(f"GIT_SHA must be a git commit hash (7 to 40 hex digits); got {value!r}")
    return value


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


@dataclass(frozen=True)
class Settings:
    """The application's settings; every field maps to one environment variable."""

    app_env: str
    database_url: URL
    secret_key: str
    debug: bool
    log_level: str
    max_content_length: int
    db_pool_size: int
    db_max_overflow: int
    db_pool_timeout: int
    db_connect_timeout: int
    db_statement_timeout_ms: int
    log_format: str = "json"
    # DATABASE_URL points at PgBouncer in transaction mode: no server-side prepared
    # statements, no startup options (app/db.py says why).
    db_pgbouncer: bool = False
    # The connection budget (README "Scaling"), enforced when DB_MAX_CONNECTIONS is set.
    web_concurrency: int = 2
    expected_replicas: int = 1
    db_max_connections: int = 0
    db_reserved_connections: int = 10
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto are believed (Caddy: 1),
    # from these addresses only (FORWARDED_ALLOW_IPS; None: "*", from anyone).
    trusted_proxy_hops: int = 0
    forwarded_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None = (
        ipaddress.ip_network("127.0.0.1"),
    )
    git_sha: str = "unknown"
    # Set by gunicorn.conf.py: workers share metrics through files in this directory.
    metrics_dir: Path | None = None
    auth_disabled: bool = False
    reads_require_auth: bool = False
    redis_url: str | None = None
    rate_limit_enabled: bool = True
    rate_limit: str = DEFAULT_RATE_LIMIT
    rate_limit_writes: str = DEFAULT_RATE_LIMIT_WRITES
    cors_origins: tuple[str, ...] = ()
    # The longest query string the app parses; longer ones get a problem+json 414.
    max_query_string_bytes: int = 4096
    # Each worker prunes expired idempotency keys at most this often, after a keyed create; 0: never.
    idempotency_prune_interval_seconds: int = 600

    @property
    def is_production(self) -> bool:
        return self.app_env == "production"

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


def load_settings(
    overrides: Mapping[str, object] | None = None,
    *,
    instance_path: str | Path,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from the environment, with ``overrides`` taking precedence."""
    source: dict[str, object] = dict(os.environ if environ is None else environ)
    source.update(overrides or {})

    app_env = _choice(source, "APP_ENV", "local", ENVIRONMENTS)
    production = app_env == "production"

    raw_url = _string(source, "DATABASE_URL", "")
    if raw_url:
        database_url = normalize_database_url("DATABASE_URL", raw_url)
    elif production:
        raise ConfigError("DATABASE_URL must be set when APP_ENV=production")
    else:
        database_url = make_url(f"sqlite:///{Path(instance_path) / SQLITE_FILENAME}")
    if production and database_url.get_backend_name() == "sqlite":
        raise ConfigError("DATABASE_URL must point to PostgreSQL when APP_ENV=production, not SQLite")

    secret_key = _string(source, "SECRET_KEY", "")
    if production and len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"SECRET_KEY must be set to a random value of at least {MIN_SECRET_KEY_LENGTH} "
            "characters when APP_ENV=production"
        )
    if not secret_key:
        # Outside production a per-process key is fine: nothing signed outlives it.
        secret_key = secrets.token_hex(32)

    debug = _bool(source, "FLASK_DEBUG", False)
    if production and debug:
        raise ConfigError("FLASK_DEBUG must be off when APP_ENV=production")

    settings = Settings(
        app_env=app_env,
        database_url=database_url,
        secret_key=secret_key,
        debug=debug,
        log_level=_choice(source, "LOG_LEVEL", "INFO", LOG_LEVELS),
        max_content_length=_int(source, "MAX_CONTENT_LENGTH", 1024 * 1024, 1024, 100 * 1024 * 1024),
        # At most 6 KiB: the production server refuses request lines over 8190 bytes itself.
        max_query_string_bytes=_int(source, "MAX_QUERY_STRING_BYTES", 4096, 256, 6144),
        idempotency_prune_interval_seconds=_int(source, "IDEMPOTENCY_PRUNE_INTERVAL_SECONDS", 600, 0, 86_400),
        db_pool_size=_int(source, "DB_POOL_SIZE", 5, 1, 100),
        db_max_overflow=_int(source, "DB_MAX_OVERFLOW", 5, 0, 100),
        db_pool_timeout=_int(source, "DB_POOL_TIMEOUT", 2, 1, 60),
        db_connect_timeout=_int(source, "DB_CONNECT_TIMEOUT", 2, 1, 60),
        db_statement_timeout_ms=_int(source, "DB_STATEMENT_TIMEOUT_MS", 5000, 0, 600_000),
        db_pgbouncer=_bool(source, "DB_PGBOUNCER", False),
        web_concurrency=_int(source, "WEB_CONCURRENCY", 2, 1, 64),
        expected_replicas=_int(source, "EXPECTED_REPLICAS", 1, 1, 1000),
        db_max_connections=_int(source, "DB_MAX_CONNECTIONS", 0, 0, 100_000),
        db_reserved_connections=_int(source, "DB_RESERVED_CONNECTIONS", 10, 0, 10_000),
        log_format=_log_format(source, app_env),
        trusted_proxy_hops=_int(source, "TRUSTED_PROXY_HOPS", 0, 0, 5),
        forwarded_allow_networks=_forwarded_allow_networks(source),
        git_sha=_git_sha(source),
        metrics_dir=_optional_path(source, "PROMETHEUS_MULTIPROC_DIR"),
        **_security_settings(source, production),
    )
    _check_connection_budget(settings)
    return settings


def _forwarded_allow_networks(
    source: Mapping[str, object],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] | None:
    """FORWARDED_ALLOW_IPS: comma-separated addresses or networks, or "*" for any peer."""
    value = _string(source, "FORWARDED_ALLOW_IPS", "127.0.0.1")
    entries = [entry.strip() for entry in value.split(",") if entry.strip()]
    if "*" in entries:
        return None
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError:
        raise ConfigError(f"FORWARDED_ALLOW_IPS must list IP addresses or networks, or be '*'; got {value!r}") from None


def _gunicorn_forwarded_allow_ips(source: Mapping[str, object]) -> str:
    networks = _forwarded_allow_networks(source)
    return "*" if networks is None else ",".join(str(network) for network in networks)


def _check_connection_budget(settings: Settings) -> None:
    """Refuse to start when all replicas' pools could exhaust the server's connections."""
    available = settings.db_max_connections - settings.db_reserved_connections
    if settings.db_max_connections and settings.connection_budget > available:
        raise ConfigError(
            "connection budget exceeded: EXPECTED_REPLICAS x WEB_CONCURRENCY x (DB_POOL_SIZE + DB_MAX_OVERFLOW) "
            f"= {settings.connection_budget} > DB_MAX_CONNECTIONS - DB_RESERVED_CONNECTIONS = {available}"
        )


def _rate_limit(source: Mapping[str, object], name: str, default: str) -> str:
    value = _string(source, name, default)
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} is not a rate limit like '300 per minute' or '10/second': {value!r}") from None
    return value


def _origins(source: Mapping[str, object]) -> tuple[str, ...]:
    origins = tuple(o.strip() for o in _string(source, "CORS_ORIGINS", "").split(",") if o.strip())
    for origin in origins:
        if origin == "*" or not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ConfigError(f"CORS_ORIGINS must list origins like https://app.example.com; got {origin!r}")
    return origins


def _security_settings(source: Mapping[str, object], production: bool) -> dict[str, Any]:
    auth_disabled = _bool(source, "AUTH_DISABLED", False)
    if production and auth_disabled:
        raise ConfigError("AUTH_DISABLED must be off when APP_ENV=production")
    rate_limit_enabled = _bool(source, "RATE_LIMIT_ENABLED", True)
    redis_url = _string(source, "REDIS_URL", "") or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must be a redis://, rediss:// or unix:// URL")
    if production and rate_limit_enabled and redis_url is None:
        raise ConfigError(
            "REDIS_URL must be set when APP_ENV=production, so rate limits hold across workers "
            "(or set RATE_LIMIT_ENABLED=false)"
        )
    return {
        "auth_disabled": auth_disabled,
        "reads_require_auth": _bool(source, "READS_REQUIRE_AUTH", False),
        "redis_url": redis_url,
        "rate_limit_enabled": rate_limit_enabled,
        "rate_limit": _rate_limit(source, "RATE_LIMIT", DEFAULT_RATE_LIMIT),
        "rate_limit_writes": _rate_limit(source, "RATE_LIMIT_WRITES", DEFAULT_RATE_LIMIT_WRITES),
        "cors_origins": _origins(source),
    }


@dataclass(frozen=True)
class ServerSettings:
    """Settings of the production HTTP server (gunicorn), read by ``gunicorn.conf.py``."""

    port: int
    workers: int
    threads: int
    timeout: int
    graceful_timeout: int
    keepalive: int
    forwarded_allow_ips: str
    drain_seconds: int
    log_level: str = "INFO"
    log_format: str = "json"
    metrics_dir: Path | None = None


def load_server_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    source: dict[str, object] = dict(os.environ if environ is None else environ)
    return ServerSettings(
        port=_int(source, "PORT", 8000, 1, 65535),
        workers=_int(source, "WEB_CONCURRENCY", 2, 1, 64),
        threads=_int(source, "GUNICORN_THREADS", 1, 1, 64),
        timeout=_int(source, "GUNICORN_TIMEOUT", 30, 1, 3600),
        graceful_timeout=_int(source, "GUNICORN_GRACEFUL_TIMEOUT", 20, 1, 3600),
        keepalive=_int(source, "GUNICORN_KEEPALIVE", 5, 0, 3600),
        forwarded_allow_ips=_gunicorn_forwarded_allow_ips(source),
        drain_seconds=_int(source, "SHUTDOWN_DRAIN_SECONDS", 3, 0, 60),
        log_level=_choice(source, "LOG_LEVEL", "INFO", LOG_LEVELS),
        log_format=_log_format(source, _choice(source, "APP_ENV", "local", ENVIRONMENTS)),
        metrics_dir=_optional_path(source, "PROMETHEUS_MULTIPROC_DIR"),
    )
