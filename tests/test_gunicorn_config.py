"""gunicorn.conf.py's hooks, called as gunicorn calls them."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_each_fork_leaves_the_preloaded_objects_outside_the_garbage_collector(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Otherwise a worker's first full collection copies every page of them (PSS per worker +16 MB)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    gc.unfreeze()
    try:
        hooks["pre_fork"](None, None)

        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
