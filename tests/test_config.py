"""Configuration: strict casts, safe defaults, production refuses unsafe settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings, variable_names
from app.main import create_app

STRONG_SECRET = "s" * 32
PG_URL = "postgresql+psycopg://app:pw@db.internal:5432/items"
SAFE_PRODUCTION = {
    "APP_ENV": "production",
    "DATABASE_URL": PG_URL,
    "SECRET_KEY": STRONG_SECRET,
    "REDIS_URL": "redis://redis:6379/0",
}


def test_defaults_are_local_with_embedded_sqlite_under_instance(instance_path: Path) -> None:
    settings = load_settings(instance_path=instance_path, environ={})

    assert settings.app_env == "local"
    assert settings.database_url.get_backend_name() == "sqlite"
    assert settings.database_url.database == str(instance_path / "items.db")
    assert settings.debug is False
    assert settings.max_content_length == 1024 * 1024


def test_the_default_sqlite_database_gets_its_instance_folder() -> None:
    app = create_app({"APP_ENV": "test", "DATABASE_URL": ""})

    assert Path(app.instance_path).is_dir()
    assert app.config["SETTINGS"].database_url.database.startswith(app.instance_path)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg"])
def test_postgresql_urls_use_the_psycopg_3_driver(instance_path: Path, scheme: str) -> None:
    settings = load_settings(instance_path=instance_path, environ={"DATABASE_URL": f"{scheme}://u:p@h:5432/d"})

    assert settings.database_url.drivername == "postgresql+psycopg"
    assert settings.database_url.password == "p"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"FLASK_DEBUG": "maybe"}, "FLASK_DEBUG"),
        ({"MAX_CONTENT_LENGTH": "1MB"}, "MAX_CONTENT_LENGTH"),
        ({"MAX_CONTENT_LENGTH": "1.5"}, "MAX_CONTENT_LENGTH"),
        ({"MAX_CONTENT_LENGTH": "0"}, "MAX_CONTENT_LENGTH"),
        ({"DB_POOL_SIZE": "-3"}, "DB_POOL_SIZE"),
        ({"DB_POOL_SIZE": "\uff15"}, "DB_POOL_SIZE"),  # full-width digit five
        ({"DB_CONNECT_TIMEOUT": "two"}, "DB_CONNECT_TIMEOUT"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "mysql://u@h/d"}, "DATABASE_URL"),
    ],
)
def test_a_bad_value_is_a_startup_error_naming_the_variable(
    instance_path: Path, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(instance_path=instance_path, environ=env)


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("ON", True), ("no", False), ("0", False)])
def test_booleans_accept_the_usual_spellings(instance_path: Path, raw: str, expected: bool) -> None:
    assert load_settings(instance_path=instance_path, environ={"FLASK_DEBUG": raw}).debug is expected


def test_overrides_win_over_the_environment(instance_path: Path) -> None:
    settings = load_settings(
        {"APP_ENV": "test", "DB_POOL_SIZE": 9}, instance_path=instance_path, environ={"APP_ENV": "local"}
    )

    assert settings.app_env == "test"
    assert settings.db_pool_size == 9


def test_production_with_safe_settings_starts(instance_path: Path) -> None:
    settings = load_settings(instance_path=instance_path, environ=SAFE_PRODUCTION)

    assert settings.is_production
    assert settings.auth_disabled is False
    assert settings.rate_limit_enabled is True


@pytest.mark.parametrize(
    ("change", "variable"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"SECRET_KEY": " " * 40}, "SECRET_KEY"),
        ({"FLASK_DEBUG": "1"}, "FLASK_DEBUG"),
        ({"AUTH_DISABLED": "true"}, "AUTH_DISABLED"),
        ({"REDIS_URL": ""}, "REDIS_URL"),
    ],
    ids=["no-database", "sqlite", "no-secret", "short-secret", "blank-secret", "debug-on", "auth-off", "no-redis"],
)
def test_production_refuses_unsafe_settings(instance_path: Path, change: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(instance_path=instance_path, environ={**SAFE_PRODUCTION, **change})


def test_production_may_run_without_redis_when_rate_limiting_is_off(instance_path: Path) -> None:
    env = {**SAFE_PRODUCTION, "REDIS_URL": "", "RATE_LIMIT_ENABLED": "false"}

    assert load_settings(instance_path=instance_path, environ=env).redis_url is None


def test_auth_can_be_disabled_outside_production(instance_path: Path) -> None:
    assert load_settings(instance_path=instance_path, environ={"AUTH_DISABLED": "1"}).auth_disabled is True


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"RATE_LIMIT": "lots"}, "RATE_LIMIT"),
        ({"RATE_LIMIT_WRITES": "5 per fortnight"}, "RATE_LIMIT_WRITES"),
        ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL"),
        ({"CORS_ORIGINS": "*"}, "CORS_ORIGINS"),
        ({"CORS_ORIGINS": "https://ok.example, javascript:alert(1)"}, "CORS_ORIGINS"),
    ],
)
def test_bad_security_settings_are_startup_errors(instance_path: Path, env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(instance_path=instance_path, environ=env)


def test_create_app_refuses_to_build_an_unsafe_production_app() -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"APP_ENV": "production", "DATABASE_URL": PG_URL, "SECRET_KEY": ""})


def test_outside_production_a_missing_secret_gets_a_random_one(instance_path: Path) -> None:
    first = load_settings(instance_path=instance_path, environ={})
    second = load_settings(instance_path=instance_path, environ={})

    assert len(first.secret_key) >= 32
    assert first.secret_key != second.secret_key


def test_server_settings_default_to_two_workers_on_port_8000(instance_path: Path) -> None:
    server = load_settings(instance_path=instance_path, environ={})

    assert (server.port, server.web_concurrency, server.graceful_timeout) == (8000, 2, 20)


def test_server_settings_are_cast_strictly(instance_path: Path) -> None:
    with pytest.raises(ConfigError, match="WEB_CONCURRENCY"):
        load_settings(instance_path=instance_path, environ={"WEB_CONCURRENCY": "many"})


@pytest.mark.parametrize("raw", ["1.0", "1_000", " 2x", "true"])
def test_integers_are_plain_ascii_digits(instance_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="SERVER_THREADS"):
        load_settings(instance_path=instance_path, environ={"SERVER_THREADS": raw})


def test_the_process_environment_is_read_and_overrides_win(
    instance_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "7")
    monkeypatch.setenv("KEEPALIVE_SECONDS", "9")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/d")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example,https://b.example")

    settings = load_settings({"DB_POOL_SIZE": "3"}, instance_path=instance_path)

    assert (settings.db_pool_size, settings.keepalive_seconds) == (3, 9)
    assert settings.database_url.drivername == "postgresql+psycopg"
    assert settings.cors_origins == ("https://a.example", "https://b.example")


# Each production refusal, word for word (README "Production server").
PRODUCTION_REFUSALS = [
    ({"DATABASE_URL": ""}, "DATABASE_URL must be set when APP_ENV=production"),
    ({"DATABASE_URL": "sqlite:///x.db"}, "DATABASE_URL must point to PostgreSQL when APP_ENV=production, not SQLite"),
    (
        {"SECRET_KEY": "short"},
        "SECRET_KEY must be set to a random value of at least 32 characters when APP_ENV=production",
    ),
    ({"FLASK_DEBUG": "on"}, "FLASK_DEBUG must be off when APP_ENV=production"),
    ({"AUTH_DISABLED": "yes"}, "AUTH_DISABLED must be off when APP_ENV=production"),
    (
        {"REDIS_URL": " "},
        "REDIS_URL must be set when APP_ENV=production, so rate limits hold across workers "
        "(or set RATE_LIMIT_ENABLED=false)",
    ),
]


@pytest.mark.parametrize(("change", "message"), PRODUCTION_REFUSALS)
def test_each_production_refusal_is_one_exact_line(instance_path: Path, change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(instance_path=instance_path, environ={**SAFE_PRODUCTION, **change})

    assert str(refused.value) == message


def test_env_example_documents_every_setting() -> None:
    documented = Path(__file__).resolve().parent.parent.joinpath(".env.example").read_text()

    missing = sorted(name for name in variable_names() if f"{name}=" not in documented)
    assert "DATABASE_URL" in variable_names()
    assert not missing, f"not in .env.example: {missing}"


def test_forwarded_allow_ips_must_be_addresses_networks_or_star(instance_path: Path) -> None:
    with pytest.raises(ConfigError, match="FORWARDED_ALLOW_IPS"):
        load_settings({"FORWARDED_ALLOW_IPS": "proxy"}, instance_path=instance_path, environ={})
    with pytest.raises(ConfigError, match="FORWARDED_ALLOW_IPS"):
        load_settings({"FORWARDED_ALLOW_IPS": " , "}, instance_path=instance_path, environ={})
    assert (
        load_settings({"FORWARDED_ALLOW_IPS": "*"}, instance_path=instance_path, environ={}).forwarded_allow_networks
        is None
    )
    assert load_settings(
        {"FORWARDED_ALLOW_IPS": "172.29.240.2, 10.0.0.0/8"}, instance_path=instance_path, environ={}
    ).forwarded_allow_ips == ("172.29.240.2/32,10.0.0.0/8")


def test_secrets_stay_out_of_the_settings_repr(instance_path: Path) -> None:
    settings = load_settings(
        {"SECRET_KEY": "k" * 40, "REDIS_URL": "redis://:hunter2-redis@redis:6379/0"},
        instance_path=instance_path,
        environ={},
    )

    assert "k" * 40 not in repr(settings)
    assert "hunter2" not in repr(settings)
