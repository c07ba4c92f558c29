"""The observability settings: strict casts, defaults that fit each environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_settings


@pytest.mark.parametrize(("app_env", "expected"), [("local", "console"), ("test", "json"), ("production", "json")])
def test_log_format_defaults_to_console_only_locally(instance_path: Path, app_env: str, expected: str) -> None:
    environ = {"APP_ENV": app_env, "DATABASE_URL": "postgresql://u@h/d", "SECRET_KEY": "k" * 32}
    environ["RATE_LIMIT_ENABLED"] = "false"  # production would otherwise want REDIS_URL

    assert load_settings(instance_path=instance_path, environ=environ).log_format == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LOG_FORMAT", "xml"),
        ("TRUSTED_PROXY_HOPS", "-1"),
        ("TRUSTED_PROXY_HOPS", "6"),
        ("TRUSTED_PROXY_HOPS", "one"),
        ("GIT_SHA", "main"),
        ("GIT_SHA", "abc"),
        ("GIT_SHA", "g" * 40),
        ("PROMETHEUS_MULTIPROC_DIR", "relative/dir"),
    ],
)
def test_bad_observability_settings_are_refused_by_name(instance_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(instance_path=instance_path, environ={variable: value})


def test_observability_defaults(instance_path: Path) -> None:
    settings = load_settings(instance_path=instance_path, environ={})

    assert settings.trusted_proxy_hops == 0
    assert settings.git_sha == "unknown"
    assert settings.metrics_dir is None


def test_observability_settings_are_read(instance_path: Path, tmp_path: Path) -> None:
    environ = {
        "TRUSTED_PROXY_HOPS": "1",
        "GIT_SHA": "0123456789ABCDEF0123456789abcdef01234567",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "LOG_FORMAT": "JSON",
    }

    settings = load_settings(instance_path=instance_path, environ={**environ, "LOG_LEVEL": "warning"})

    assert settings.trusted_proxy_hops == 1
    assert settings.git_sha == "0123456789abcdef0123456789abcdef01234567"
    assert settings.metrics_dir == tmp_path
    assert settings.log_format == "json"
    assert settings.log_level == "WARNING"
