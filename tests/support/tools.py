"""Programs the suite drives for real: found, or a failure in CI and a skip elsewhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

INSTALL_HINTS = {
    "pgbouncer": "apt-get install -y pgbouncer",
    "openssl": "apt-get install -y openssl",
    "initdb": "apt-get install -y postgresql",
    "pg_dump": "apt-get install -y postgresql-client",
    "pg_restore": "apt-get install -y postgresql-client",
    "redis-server": "apt-get install -y redis-server",
}


def require_tool(name: str, path: str | None = None) -> str:
    """The tool's path; without it fail in CI (never a silent skip there), skip elsewhere."""
    found = path if path and Path(path).exists() else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed ({INSTALL_HINTS.get(name, 'install it')})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
