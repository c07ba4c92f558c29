"""Fixtures of the reliability proof: one throwaway PostgreSQL cluster, a production server per test.

It takes minutes and lives outside ``tests/``; ``make reliability-test`` runs it (proofs/reliability/run.sh).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from proofs.reliability.checks import Result
from tests.support.postgres import Cluster, run_cluster
from tests.support.server import ServerProcess, migrate_and_issue_token, production_env, server_command
from tests.support.tcp import free_port

HERE = Path(__file__).resolve().parent
SUITE_SECONDS = 360
_results_key = pytest.StashKey[list[Result]]()
_started_key = pytest.StashKey[float]()
# Durability is what the suite checks, so the settings that promise it stay at their defaults
# and are spelled out; the rest only makes a small cluster start fast.
CLUSTER_SETTINGS: dict[str, object] = {
    "unix_socket_directories": "''",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "max_connections": 100,
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    "log_connections": "off",
}


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_results_key] = []
    config.stash[_started_key] = time.monotonic()


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config) -> list[Result]:
    return pytestconfig.stash[_results_key]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with run_cluster("items-reliability-pg-", CLUSTER_SETTINGS) as cluster:
        yield cluster


@dataclass
class Stack:
    """A fresh database on the cluster, migrated, with a write token, and a server for it."""

    cluster: Cluster
    database: str
    token: str
    server: ServerProcess

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.database)


def make_stack(cluster: Cluster, workdir: Path, name: str, db_port: int | None = None) -> Stack:
    cluster.create_database(name)
    port = free_port()
    env = production_env(cluster.url(name, db_port), port, workdir)
    # Migrations and tokens go straight to the database, not through a proxy the test may cut.
    token = migrate_and_issue_token({**env, "DATABASE_URL": cluster.url(name)}, f"reliability-{name}")
    return Stack(cluster, name, token, ServerProcess(server_command(), env, port, workdir))


@pytest.fixture
def stack_factory(cluster: Cluster, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    stacks: list[Stack] = []

    def build(name: str, db_port: int | None = None) -> Stack:
        stack = make_stack(cluster, tmp_path, name, db_port)
        stacks.append(stack)
        return stack

    yield build
    for stack in stacks:
        stack.server.stop()
        cluster.drop_database(stack.database)


COLUMNS = (
    ("scenario", "scenario", "{}"),
    ("seconds", "s", "{:.0f}"),
    ("requests", "requests", "{}"),
    ("acknowledged", "acked (201)", "{}"),
    ("lost", "lost", "{}"),
    ("duplicated", "duplicated", "{}"),
    ("replayed", "replayed", "{}"),
    ("status_503", "503s", "{}"),
    ("other_5xx", "other 5xx", "{}"),
    ("no_response", "no response", "{}"),
    ("recovery_s", "recovery s", "{:.2f}"),
    ("last_failure_s", "last failure s", "{:.2f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
)


def table(results: list[Result]) -> list[str]:
    """A Markdown table, one row per scenario."""
    header = [title for _, title, _ in COLUMNS]
    rows = []
    for result in results:
        cells = []
        for attr, _, fmt in COLUMNS:
            value = getattr(result, attr)
            cells.append("-" if value is None else fmt.format(value))
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |"

    return [line(header), line(["-" * width for width in widths]), *(line(row) for row in rows)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(_results_key, [])
    if not results:
        return
    terminalreporter.section("reliability figures")
    for text in table(results):
        terminalreporter.write_line(text)
    for result in results:
        if result.notes:
            notes = ", ".join(f"{key}: {value}" for key, value in result.notes.items())
            terminalreporter.write_line(f"{result.scenario}: {notes}")
    elapsed = time.monotonic() - config.stash[_started_key]
    terminalreporter.write_line(f"suite time: {elapsed:.0f}s (budget {SUITE_SECONDS}s)")
