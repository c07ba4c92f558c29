"""app/server.py's start-up, as granian runs it (the real server is tested in tests/observability)."""

from __future__ import annotations

import gc
import signal
from pathlib import Path

import pytest

from app.config import load_settings
from app.server import build, preloaded_app


def test_the_app_is_built_once_and_its_objects_frozen_before_the_workers_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise a worker's first full collection copies every page of them (USS 16 -> 40 MB)."""
    environ = {
        "APP_ENV": "test",
        "DATABASE_URL": f"sqlite:///{tmp_path}/items.db",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    for name, value in environ.items():  # the server builds the app from the environment
        monkeypatch.setenv(name, value)
    settings = load_settings(environ=environ, instance_path=tmp_path)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_1.db").write_bytes(b"")  # an earlier run's
    sigterm = signal.getsignal(signal.SIGTERM)
    server = build(settings, "127.0.0.1")
    gc.unfreeze()
    try:
        for hook in server.hooks_startup:  # what granian runs right before it forks the workers
            hook()

        assert gc.get_freeze_count() > 0
        assert signal.getsignal(signal.SIGTERM) is not sigterm, "SIGTERM drains first"
        assert preloaded_app() is preloaded_app(), "every worker gets the one app"
        assert not (tmp_path / "metrics" / "counter_1.db").exists()
    finally:
        gc.unfreeze()
        signal.signal(signal.SIGTERM, sigterm)
        for hook in server.hooks_shutdown:
            hook()
