"""The observability profile refuses an empty Grafana admin password, and only that profile.

Runs the exact check of the ``grafana-password-check`` service of docker-compose.prod.yml;
proofs/container checks with ``docker compose`` that Grafana waits for it and that stacks
without the profile do not run it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parent.parent / "docker" / "docker-compose.prod.yml"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def _run_check(password: str | None) -> subprocess.CompletedProcess[str]:
    command = _services()["grafana-password-check"]["command"]
    assert command[0] == "python"
    env = {key: value for key, value in os.environ.items() if key != "GRAFANA_ADMIN_PASSWORD"}
    if password is not None:
        env["GRAFANA_ADMIN_PASSWORD"] = password
    return subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("password", [None, "", "  ", "admin"])
def test_an_empty_or_default_password_stops_the_profile(password: str | None) -> None:
    result = _run_check(password)
    assert result.returncode == 1
    assert "GRAFANA_ADMIN_PASSWORD must be set" in result.stderr


def test_a_real_password_passes() -> None:
    assert _run_check("a-long-random-grafana-password").returncode == 0


def test_grafana_waits_for_the_check_and_both_are_in_the_profile_alone() -> None:
    services = _services()
    check, grafana = services["grafana-password-check"], services["grafana"]
    assert grafana["depends_on"]["grafana-password-check"] == {"condition": "service_completed_successfully"}
    assert check["profiles"] == grafana["profiles"] == ["observability"]
    assert check["environment"]["GRAFANA_ADMIN_PASSWORD"] == grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    # ${VAR:?} would be checked for every service, profile on or off: never used for this.
    assert "${GRAFANA_ADMIN_PASSWORD:?" not in COMPOSE_FILE.read_text()
