"""Deploy proof: scripts/deploy.sh rolls releases under load with no failed request.

Run it with `bash proofs/deploy/run.sh` (`make deploy-test`), which starts a private
dockerd with the container check's stand-in images. For 1 and then 3 api replicas, on
the production compose stack behind Caddy on 127.0.0.1, with 3 reader and 3 writer
threads that never retry: deploy A -> B (B carries a migration), rollback B -> A, and a
deploy of C, which never gets ready. Each step: no failed request, every acknowledged
create stored exactly once, no request slower than 2 s. Then, as a measurement only,
today's recreate switch (`up -d --wait` with the new tag) under the same load.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_container import issue_write_token
from harness import DOCKER_DIR, REPO, Compose, docker, inspect, record, run
from load import Client, Load
from stack import psql, replicas_env

HTTP_PORT = int(os.environ.get("CT_DEPLOY_HTTP_PORT", "27080"))
HTTPS_PORT = int(os.environ.get("CT_DEPLOY_HTTPS_PORT", "27443"))
WORK = Path(os.environ.get("CT_DEPLOY_WORK", "/nonexistent"))
IMAGE = "items-api-deploy/api"
LONGEST_ALLOWED_S = 2.0
BEFORE_S = 2.0  # load before deploy.sh starts, and after it returns
AFTER_S = 2.0
READY_TIMEOUT_S = 120  # WAIT_TIMEOUT of the releases that do get ready
NEVER_READY_TIMEOUT_S = 20  # WAIT_TIMEOUT of C


# --- the three releases ----------------------------------------------------------


def migration_head() -> str:
    """The Alembic head of the repository (the revision no other one revises)."""
    revisions: dict[str, str | None] = {}
    for path in (REPO / "migrations" / "versions").glob("*.py"):
        scope: dict[str, object] = {}
        for line in path.read_text().splitlines():
            if line.startswith(("revision", "down_revision")) and "=" in line:
                name, value = line.split("=", 1)
                scope[name.split(":")[0].strip()] = value.strip().strip('"')
        if "revision" in scope:
            down = scope.get("down_revision")
            revisions[str(scope["revision"])] = None if down in (None, "None") else str(down)
    heads = set(revisions) - {down for down in revisions.values() if down}
    assert len(heads) == 1, heads
    return heads.pop()


MIGRATION = '''"""Deploy proof only: release B adds a table (expand), which release A ignores.

Revision ID: deploy_probe
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

revision = "deploy_probe"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("deploy_probe", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("deploy_probe")
'''

# C: the container starts, but /health/ready (and everything else) answers 503 for
# ever. If the proxy ever sent it a request, the client would see a 503.
NEVER_READY = (
    "import http.server, signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(503); self.send_header('Content-Length', '0'); self.end_headers()\n"
    "    do_POST = do_GET\n"
    "http.server.ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()\n"
)


def build_on_a(tag: str, files: dict[str, str], dockerfile: str, context: Path) -> None:
    context.mkdir(parents=True)
    for name, text in files.items():
        (context / name).write_text(text)
    (context / "Dockerfile").write_text(dockerfile)
    docker("build", "-q", "-t", f"{IMAGE}:{tag}", str(context), timeout=300)


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A: the project's image. B: A plus one backward-compatible migration. C: B, never ready."""
    started = time.monotonic()
    # --network host: the private engine has no default bridge for RUN steps.
    docker("build", "--network", "host", "-t", f"{IMAGE}:a", str(REPO), timeout=600)
    record("image build (A)", f"{time.monotonic() - started:.1f} s")
    base = tmp_path_factory.mktemp("releases")
    build_on_a(
        "b",
        {"deploy_probe.py": MIGRATION.format(down=migration_head())},
        f"FROM {IMAGE}:a\nCOPY deploy_probe.py migrations/versions/deploy_probe.py\n",
        base / "b",
    )
    build_on_a(
        "c",
        {"never_ready.py": NEVER_READY},
        # On B: its migrations know the schema B left (A's would refuse it).
        f'FROM {IMAGE}:b\nCOPY never_ready.py /tmp/never_ready.py\nCMD ["python", "/tmp/never_ready.py"]\n',
        base / "c",
    )
    return {"a": "a", "b": "b", "c": "c"}


# --- the server: a deploy directory driven by scripts/deploy.sh ----------------------


@dataclass
class Server:
    """DEPLOY_PATH as the deploy job leaves it: compose file, Caddyfile, deploy.sh, .env."""

    path: Path
    replicas: int
    log: str = ""  # stderr of the last deploy.sh, "exit N" first when it failed

    @property
    def compose(self) -> Compose:
        return Compose(self.path / "docker-compose.prod.yml", env={"IMAGE_TAG": self.current() or "a"})

    def current(self) -> str:
        current = self.path / ".deploy" / "current"
        return current.read_text().strip() if current.exists() else ""

    def deploy_sh(self, *args: str, wait_timeout: int = READY_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        env = {"DEPLOY_PATH": str(self.path), "PULL_SERVICES": "", "WAIT_TIMEOUT": str(wait_timeout)}
        return run(["bash", str(self.path / "deploy.sh"), *args], env=env, timeout=600, check=False)

    def api_images(self) -> list[str]:
        """The image of every api container, running or not."""
        ids = self.compose("ps", "-a", "-q", "api").stdout.split()
        return sorted(inspect(i)["Config"]["Image"] for i in ids)

    def rotation(self) -> str:
        return (self.path / "rotation" / "upstream").read_text().strip()

    def down(self) -> None:
        self.compose.down()


def make_server(replicas: int) -> Server:
    path = WORK / f"srv-{replicas}"
    path.mkdir(parents=True)
    for name in ("docker-compose.prod.yml", "Caddyfile"):
        shutil.copy(DOCKER_DIR / name, path / name)
    shutil.copy(REPO / "scripts" / "deploy.sh", path / "deploy.sh")
    env = replicas_env()
    env.update(
        {
            "IMAGE": IMAGE,
            "IMAGE_TAG": "latest",
            "HTTP_PORT": str(HTTP_PORT),
            "HTTPS_PORT": str(HTTPS_PORT),
            "EXPECTED_REPLICAS": str(replicas),
            # deploy.sh checks the budget for old + new side by side:
            # 2 x 3 replicas x 2 workers x (3 + 2) = 60 <= 100 - 10.
            "DB_POOL_SIZE": "3",
            "DB_MAX_OVERFLOW": "2",
        }
    )
    (path / ".env").write_text("".join(f"{key}={value}\n" for key, value in env.items()))
    (path / ".env").chmod(0o600)
    return Server(path, replicas)


# --- load without retries, and what each step did --------------------------------------


class OneShotLoad(Load):
    """The replica proof's load, but a create is sent once: a failure stays a failure."""

    def _create(self, client: Client, key: str) -> None:
        body = json.dumps({"title": key, "description": "deploy proof"}).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", "Idempotency-Key": key}
        outcome = self._attempt(client, "POST", "/items", f"{key}.1", body, headers, key)
        if outcome.status == 201:
            with self._lock:
                self.acked[key] = outcome.item_id  # type: ignore[assignment]


@dataclass
class Step:
    replicas: int
    name: str
    sent: int
    failed: int
    longest_s: float
    acked: int
    lost: int
    duplicated: int
    took_s: float
    failures: str
    required: bool = True

    def row(self) -> tuple[str, ...]:
        return (
            str(self.replicas),
            self.name,
            str(self.sent),
            str(self.failed),
            f"{self.longest_s:.2f} s",
            str(self.acked),
            str(self.lost),
            str(self.duplicated),
            f"{self.took_s:.1f} s",
            self.failures,
        )


STEPS: list[Step] = []
STATUS: list[str] = []


def under_load(
    server: Server, token: str, phase: str, name: str, action: Callable[[], object], required: bool = True
) -> Step:
    """Run action (a callable) inside BEFORE_S + its duration + AFTER_S of load; measure."""
    with OneShotLoad(HTTP_PORT, token, phase) as load:
        time.sleep(BEFORE_S)
        started = time.monotonic()
        action()
        took = time.monotonic() - started
        time.sleep(AFTER_S)
    bad = [o for o in load.outcomes if not o.ok]
    kinds: dict[str, int] = {}
    for o in bad:
        label = f"{o.method} {'no response' if o.status == 0 else o.status}"
        kinds[label] = kinds.get(label, 0) + 1
    sql = f"SELECT title, count(*) FROM items WHERE title LIKE 'rp-{phase}-%' GROUP BY title"  # noqa: S608 (our phase)
    rows = psql(server.compose, sql)
    stored = {title: int(count) for title, count in rows}
    step = Step(
        replicas=server.replicas,
        name=name,
        sent=len(load.outcomes),
        failed=len(bad),
        longest_s=max((o.done - o.sent for o in load.outcomes), default=0.0),
        acked=len(load.acked),
        lost=sum(1 for key in load.acked if key not in stored),
        duplicated=sum(1 for n in stored.values() if n > 1),
        took_s=took,
        failures=", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())) or "-",
        required=required,
    )
    STEPS.append(step)
    return step


def schema_revision(server: Server) -> str:
    return psql(server.compose, "SELECT version_num FROM alembic_version")[0][0]


def assert_clean(step: Step) -> None:
    assert step.sent > 50, step
    assert step.failed == 0, step
    assert step.lost == 0, step
    assert step.duplicated == 0, step
    assert step.longest_s < LONGEST_ALLOWED_S, step


# --- the steps, for 1 and then 3 replicas -------------------------------------------


def deploy_step(server: Server, token: str, phase: str, name: str, *args: str, wait: int = READY_TIMEOUT_S) -> Step:
    """deploy.sh ARGS under load; its stderr (and exit status) lands in server.log."""
    out: list[subprocess.CompletedProcess[str]] = []
    step = under_load(server, token, phase, name, lambda: out.append(server.deploy_sh(*args, wait_timeout=wait)))
    print(out[0].stderr)
    server.log = out[0].stderr if out[0].returncode == 0 else f"exit {out[0].returncode}\n{out[0].stderr}"
    return step


class RollingDeploys:
    """The steps for one replica count (a subclass sets it); in file order."""

    replicas = 0

    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, releases: dict[str, str]) -> Iterator[Server]:
        srv = make_server(cls.replicas)
        started = time.monotonic()
        result = srv.deploy_sh("a")
        assert result.returncode == 0, result.stderr[-4000:]
        record(f"deploy.sh a, first start, {srv.replicas} replica(s)", f"{time.monotonic() - started:.1f} s")
        try:
            yield srv
        finally:
            srv.down()

    @pytest.fixture(scope="class")
    @classmethod
    def token(cls, server: Server) -> str:
        return issue_write_token(server.compose, f"deploy-proof-{server.replicas}")

    def test_0_first_start_serves_a_through_caddy_2_11_7(self, server: Server, token: str) -> None:
        assert server.current() == "a"
        assert server.api_images() == [f"{IMAGE}:a"] * server.replicas
        assert server.rotation() == "api"
        caddy = server.compose("exec", "-T", "proxy", "caddy", "version").stdout.split()[0]
        assert caddy == "v2.11.7", caddy

    def test_1_deploy_a_to_b_with_a_migration(self, server: Server, token: str) -> None:
        step = deploy_step(server, token, f"{server.replicas}ab", "deploy A -> B (migration)", "b")
        assert not server.log.startswith("exit"), server.log[-4000:]
        assert "migrating the schema with b" in server.log
        assert server.current() == "b"
        assert server.api_images() == [f"{IMAGE}:b"] * server.replicas
        assert schema_revision(server) == "deploy_probe"
        assert server.rotation() == "api"
        assert_clean(step)

    def test_2_rollback_b_to_a_on_the_newer_schema(self, server: Server, token: str) -> None:
        step = deploy_step(server, token, f"{server.replicas}ba", "rollback B -> A", "--rollback")
        assert not server.log.startswith("exit"), server.log[-4000:]
        assert "not migrating" in server.log
        assert server.current() == "a"
        assert server.api_images() == [f"{IMAGE}:a"] * server.replicas
        assert schema_revision(server) == "deploy_probe", "a rollback never downgrades"
        assert_clean(step)

    def test_3_a_release_that_never_gets_ready_gets_no_request(self, server: Server, token: str) -> None:
        phase = f"{server.replicas}c"
        step = deploy_step(server, token, phase, "deploy C (never ready)", "c", wait=NEVER_READY_TIMEOUT_S)
        assert server.log.startswith("exit"), server.log[-4000:]
        assert "c did not become ready; a kept serving and nothing was switched" in server.log, server.log[-4000:]
        assert "it never received a request" in server.log
        # Nothing half-switched: A alone runs and is in rotation, C is gone.
        assert server.current() == "a"
        assert server.api_images() == [f"{IMAGE}:a"] * server.replicas
        assert server.rotation() == "api"
        assert " failed c " in (server.path / ".deploy" / "history").read_text()
        status = server.deploy_sh("--status").stdout.splitlines()
        STATUS[:] = [f"deploy.sh --status after the {server.replicas}-replica steps:", *status]
        # C answers 503 to everything: a request sent to it would be a failure here.
        assert_clean(step)

    def test_4_todays_recreate_switch_measured(self, server: Server, token: str) -> None:
        """Measurement only (not required): compose recreates the api containers with B."""
        compose_b = Compose(server.path / "docker-compose.prod.yml", env={"IMAGE_TAG": "b"})

        def recreate() -> None:
            services = ("proxy", "api", "db", "redis")
            compose_b("up", "-d", "--wait", "--wait-timeout", "180", "--no-deps", *services, timeout=300)

        step = under_load(server, token, f"{server.replicas}old", "old: up -d --wait A -> B", recreate, False)
        assert step.sent > 0


class TestOneReplica(RollingDeploys):
    replicas = 1


class TestThreeReplicas(RollingDeploys):
    replicas = 3


def test_nothing_was_pulled() -> None:
    lines = docker("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}").stdout.splitlines()
    pulled = [line for line in lines if not line.endswith("<none>")]
    assert not pulled, pulled
    assert docker("info", "--format", "{{.HTTPProxy}}").stdout.strip() == "http://127.0.0.1:9"


def test_report() -> None:
    """The table, the final line; every rolling step clean (asserted per step above too)."""
    header = ("replicas", "step", "requests", "failed", "longest", "acked", "lost", "dup", "deploy.sh", "failures")
    table = [header, *(s.row() for s in STEPS)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["Deploy proof: 3 reader + 3 writer threads (no retries) through Caddy on 127.0.0.1"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    rolling = [s for s in STEPS if s.required]
    lines.append(
        f"deploy proof: {len(rolling)} steps, {sum(s.failed for s in rolling)} failed requests, "
        f"{sum(s.lost for s in rolling)} lost, {sum(s.duplicated for s in rolling)} duplicated, "
        f"longest {max((s.longest_s for s in rolling), default=0):.2f} s"
    )
    old = [s for s in STEPS if not s.required]
    if old:
        lines.append(
            "today's recreate switch (measured, not required): "
            + "; ".join(
                f"{s.replicas} replica(s): {s.failed} failed of {s.sent}, longest {s.longest_s:.2f} s" for s in old
            )
        )
    lines += STATUS
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    path = os.environ.get("CT_DEPLOY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    assert len(rolling) == 6, [s.name for s in rolling]
    assert all(s.failed == 0 and s.lost == 0 and s.duplicated == 0 for s in rolling)
    assert all(s.longest_s < LONGEST_ALLOWED_S for s in rolling)
