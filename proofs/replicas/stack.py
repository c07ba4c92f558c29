"""The production compose stack with several api replicas, and what each replica logged.

Reuses the container check's harness (proofs/container) and its production test env,
on other loopback ports so both checks can share a machine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from e2e_container import prod_test_env
from harness import Compose, docker, inspect

REPLICAS = 3
HTTP_PORT = int(os.environ.get("CT_REPLICAS_HTTP_PORT", "26080"))
HTTPS_PORT = int(os.environ.get("CT_REPLICAS_HTTPS_PORT", "26443"))
DRAIN_S = 3  # SHUTDOWN_DRAIN_SECONDS: readiness says 503 this long after SIGTERM


def replicas_env() -> dict[str, str]:
    """The container check's production env, on this check's ports, sized for 3 replicas."""
    env = prod_test_env()
    env.update(
        {
            "HTTP_PORT": str(HTTP_PORT),
            "HTTPS_PORT": str(HTTPS_PORT),
            # All test traffic comes from one address: limits high enough that only
            # replica changes can cause an error (the counters still live in Redis).
            "RATE_LIMIT": "100000 per minute",
            "RATE_LIMIT_WRITES": "100000 per minute",
            # The connection budget is enforced: 3 x 2 workers x (5 + 5) <= 100 - 10.
            "EXPECTED_REPLICAS": str(REPLICAS),
            "DB_MAX_CONNECTIONS": "100",
            "SHUTDOWN_DRAIN_SECONDS": str(DRAIN_S),
        }
    )
    return env


@dataclass(frozen=True)
class Replica:
    id: str
    name: str  # e.g. api-2, from the compose container name items-api-api-2


def replicas(stack: Compose) -> list[Replica]:
    """Every api container, running or not, in replica-number order."""
    found = []
    for container in stack("ps", "-a", "-q", "api").stdout.split():
        name = inspect(container)["Name"].lstrip("/")
        found.append(Replica(container, "api-" + name.rsplit("-", 1)[-1]))
    return sorted(found, key=lambda r: int(r.name.split("-")[1]))


def access_log(replica: Replica) -> set[str]:
    """The request ids of the replica's access lines (one JSON line per request it served)."""
    output = docker("logs", replica.id, timeout=60)
    seen: set[str] = set()
    for line in (output.stdout + output.stderr).splitlines():
        if line.startswith("{") and '"request_id"' in line:
            record = json.loads(line)
            if record.get("logger") == "app.access":
                seen.add(record["request_id"])
    return seen


SIGTERM_EVENT = "SIGTERM: draining"  # app/server.py, when the drain starts
SHUTDOWN_EVENT = "Granian shutdown completed"  # the server, once its workers are gone


def server_stop(replica: Replica) -> tuple[float, float] | None:
    """Epoch seconds of the replica's last SIGTERM line and the server's "shutdown completed" after it."""
    output = docker("logs", replica.id, timeout=60)
    term = shutdown = None
    for line in (output.stdout + output.stderr).splitlines():
        if line.startswith("{") and (SIGTERM_EVENT in line or SHUTDOWN_EVENT in line):
            record = json.loads(line)
            stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
            if str(record["event"]).startswith(SIGTERM_EVENT):
                term, shutdown = stamp, None
            elif str(record["event"]).startswith(SHUTDOWN_EVENT):
                shutdown = stamp
    return (term, shutdown) if term is not None and shutdown is not None else None


def served_by(reps: Iterable[Replica]) -> dict[str, list[str]]:
    """request_id -> the replicas whose access log has it (more than one only after a retry)."""
    owners: dict[str, list[str]] = {}
    for replica in reps:
        for request_id in access_log(replica):
            owners.setdefault(request_id, []).append(replica.name)
    return owners


def wait_for_log(replica: Replica, prefix: str, deadline_s: float) -> float | None:
    """Poll (bounded) until the replica has logged a request whose id starts with prefix."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if any(request_id.startswith(prefix) for request_id in access_log(replica)):
            return time.monotonic()
        time.sleep(0.5)
    return None


def psql(stack: Compose, sql: str) -> list[list[str]]:
    """Rows of a query in the db container, as lists of strings."""
    env = replicas_env()
    out = stack(
        "exec", "-T", "db", "psql", "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DB"], "-AtF", "\t", "-c", sql
    )
    return [line.split("\t") for line in out.stdout.splitlines() if line]
