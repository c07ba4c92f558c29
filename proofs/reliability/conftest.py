"""Fixtures of the reliability suite: one throwaway PostgreSQL cluster, a production server per test.

The suite takes minutes, so ``make test`` (which collects ``tests/``) leaves it out; it runs
when named: ``pytest tests/reliability`` (``make reliability-test``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.checks import Result
from tests.reliability.cluster import PG_BIN, Cluster, loopback_port
from tests.reliability.server import Server, migrate_and_issue_token, production_env

HERE = Path(__file__).resolve().parent
SUITE_SECONDS = 360
_results_key = pytest.StashKey[list[Result]]()
_started_key = pytest.StashKey[float]()


def _named(config: pytest.Config) -> bool:
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.resolve().parent == HERE and not _named(config):
        return True
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_results_key] = []
    config.stash[_started_key] = time.monotonic()


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config) -> list[Result]:
    return pytestconfig.stash[_results_key]


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"PostgreSQL server binaries not found in {PG_BIN} (apt-get install postgresql-15)")
    if shutil.which("runuser") is None:
        pytest.fail("runuser (util-linux) is needed to run PostgreSQL as the postgres user")
    cluster = Cluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@dataclass
class Stack:
    """A fresh database on the cluster, migrated, with a write token, and a server for it."""

    cluster: Cluster
    database: str
    token: str
    server: Server

    @property
    def dsn(self) -> str:
        return self.cluster.dsn(self.database)


def make_stack(cluster: Cluster, workdir: Path, name: str, db_port: int | None = None) -> Stack:
    cluster.create_database(name)
    env = production_env(cluster.url(name, db_port), loopback_port(), workdir)
    # Migrations and tokens go straight to the database, not through a proxy the test may cut.
    token = migrate_and_issue_token({**env, "DATABASE_URL": cluster.url(name)}, f"reliability-{name}")
    return Stack(cluster, name, token, Server(env, int(env["PORT"]), workdir))


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
