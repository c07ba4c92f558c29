"""Container end-to-end check: the Dockerfile and both compose stacks on a real engine.

Run it with `bash proofs/container/run.sh` (`make container-test`), which installs
the tools, starts a private dockerd and stops it again. Steps, in file order:
1 lint and validate, 2 stand-in base images, 3 the image, 4 the local stack,
5 the production stack behind the proxy. Nothing is pulled; HTTP goes to 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser
from harness import DOCKER_DIR, REPO, Compose, docker, http, image_exists, inspect, record, run, wait_until_healthy

TOOLS = Path(os.environ.get("CT_TOOLS_BIN", ""))
DOCKERFILE = REPO / "Dockerfile"
LOCAL_FILE = DOCKER_DIR / "docker-compose.local.yml"
PROD_FILE = DOCKER_DIR / "docker-compose.prod.yml"
RUNTIME_TAG = "items-api:e2e"
DEV_TAG = "items-api:dev"  # the local compose file's image name
PROD_IMAGE = "registry.gitlab.com/example/project-01-container-api"
PROD_TAG = "e2e"
# Fixed loopback ports below the ephemeral range, clear of the services this
# machine already runs (5432, 6379, 3306, 5672, 1883, 4222) and of 8000.
LOCAL_DB_PORT = os.environ.get("CT_LOCAL_DB_PORT", "25432")
LOCAL_API_PORT = os.environ.get("CT_LOCAL_API_PORT", "28000")
PROD_HTTP_PORT = os.environ.get("CT_PROD_HTTP_PORT", "28080")
PROD_HTTPS_PORT = os.environ.get("CT_PROD_HTTPS_PORT", "28443")
PROD_PROMETHEUS_PORT = os.environ.get("CT_PROD_PROMETHEUS_PORT", "29090")
APP_UID = 10001
FLASK = ["flask", "--app", "app.main:create_app"]
# Named by the production compose file, but no stand-in can be made from Debian's
# packages: only `docker compose config` checks the service that uses it.
UNVERIFIED_IMAGES = {"grafana/grafana:12.0.2"}


def write_headers(token: str) -> dict[str, str]:
    """Headers for POST /items: writes need a write-scoped bearer token."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def issue_write_token(stack: Compose, name: str) -> str:
    """A write token from the app's own CLI, run in the api container (printed once on stdout)."""
    result = stack("exec", "-T", "api", *FLASK, "tokens", "create", "--name", name, "--scope", "write")
    # stdout also carries the app's log lines; the token has a fixed shape (app/auth.py).
    tokens = re.findall(r"\bitm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\b", result.stdout)
    assert len(tokens) == 1, result.stdout
    return tokens[0]


def prod_test_env() -> dict[str, str]:
    """The production env file of the test: the documented variables, test values."""
    password = "e2e-db-password-0123456789"
    return {
        "IMAGE": PROD_IMAGE,
        "IMAGE_TAG": PROD_TAG,
        # Explicitly empty: the proxy must fall back to plain HTTP on :80.
        "DOMAIN": "",
        "PUBLISH_IP": "127.0.0.1",
        "HTTP_PORT": PROD_HTTP_PORT,
        "HTTPS_PORT": PROD_HTTPS_PORT,
        "PROXY_MAX_BODY_SIZE": "1MB",
        "COMPOSE_PROFILES": "db,redis",
        "POSTGRES_USER": "items",
        "POSTGRES_PASSWORD": password,
        "POSTGRES_DB": "items",
        "DATABASE_URL": "postgresql+psycopg://items:${POSTGRES_PASSWORD}@db:5432/items",
        "REDIS_PASSWORD": "e2e-redis-password-0123456789",
        "REDIS_URL": "redis://:${REDIS_PASSWORD}@redis:6379/0",
        "RATE_LIMIT": "600 per minute",
        "PROMETHEUS_HOST_PORT": PROD_PROMETHEUS_PORT,
        "SECRET_KEY": "e2e-secret-key-not-used-anywhere-else-0123456789",
        # Above the proxy's 1MB, so only the proxy can refuse a 2 MB body.
        "MAX_CONTENT_LENGTH": str(4 * 1024 * 1024),
        "WEB_CONCURRENCY": "2",
        "GRACEFUL_TIMEOUT": "20",
    }


@pytest.fixture(scope="session")
def prod_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prod") / "prod.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in prod_test_env().items()))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def prod_compose(prod_env_file: Path) -> Compose:
    return Compose(PROD_FILE, env_file=prod_env_file, env={"ENV_FILE": str(prod_env_file)})


@pytest.fixture(scope="session")
def local_compose() -> Compose:
    return Compose(LOCAL_FILE, env={"DB_HOST_PORT": LOCAL_DB_PORT, "API_HOST_PORT": LOCAL_API_PORT})


@pytest.fixture(scope="session")
def engine() -> None:
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("no private engine: run this through proofs/container/run.sh")
    docker("version")


@pytest.fixture(scope="session")
def standins(engine: None) -> None:
    started = time.monotonic()
    run(["bash", "-c", "source proofs/lib.sh && ct_build_standins"], timeout=420)
    record("stand-in images ready (built or loaded from cache)", f"{time.monotonic() - started:.1f} s")


def git_sha() -> str:
    result = run(["git", "rev-parse", "HEAD"], check=False)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


@pytest.fixture(scope="session")
def runtime_image(standins: None) -> str:
    # --network host: the private engine has no default bridge for RUN steps.
    started = time.monotonic()
    docker("build", "--network", "host", "--build-arg", f"GIT_SHA={git_sha()}", "-t", RUNTIME_TAG, ".", timeout=420)
    record("image build (runtime target)", f"{time.monotonic() - started:.1f} s")
    return RUNTIME_TAG


# --- 1. lint and validate --------------------------------------------------


def test_dockerfile_is_hadolint_clean_at_error_level() -> None:
    result = run([str(TOOLS / "hadolint"), "--failure-threshold", "error", str(DOCKERFILE)], check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    record("hadolint findings below error level", str(len(result.stdout.splitlines())))


def test_compose_files_validate_against_the_compose_spec() -> None:
    run([str(TOOLS / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(LOCAL_FILE), str(PROD_FILE)])


def test_compose_files_pass_docker_compose_config(local_compose: Compose, prod_compose: Compose) -> None:
    local_compose("config", "-q")
    prod_compose("config", "-q")
    # The optional layers written against the production file still merge with it.
    for layer in sorted(DOCKER_DIR.glob("*/docker-compose.*.yml")):
        prod_compose("-f", str(layer), "config", "-q")


def prod_config(prod_compose: Compose, **env: str) -> dict[str, Any]:
    """`docker compose config` of the production file (no engine needed) with ``env`` on top."""
    compose = Compose(PROD_FILE, prod_compose.env_file, {**(prod_compose.env or {}), **env})
    config: dict[str, Any] = json.loads(compose("config", "--format", "json").stdout)
    return config


def test_prod_api_trusts_forwarded_headers_from_the_proxy_alone(prod_compose: Compose) -> None:
    config = prod_config(prod_compose)
    proxy_ip = config["services"]["proxy"]["networks"]["edge"]["ipv4_address"]
    assert config["services"]["api"]["environment"]["FORWARDED_ALLOW_IPS"] == proxy_ip
    assert config["services"]["api"]["environment"]["TRUSTED_PROXY_HOPS"] == "1"
    ipam = config["networks"]["edge"]["ipam"]["config"][0]
    assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(ipam["subnet"])
    # Containers created before the proxy (the api) must not be handed its address.
    assert ipaddress.ip_address(proxy_ip) not in ipaddress.ip_network(ipam["ip_range"])


def test_prod_redis_requires_the_password_the_api_url_carries(prod_compose: Compose) -> None:
    services = prod_config(prod_compose)["services"]
    password = services["redis"]["environment"]["REDIS_PASSWORD"]
    assert password
    assert any("--requirepass" in part for part in services["redis"]["command"])
    # The password is in the env file, so it reaches the api through env_file, not compose.
    assert "${REDIS_PASSWORD}" in prod_test_env()["REDIS_URL"]


def test_an_empty_grafana_password_stops_only_the_observability_profile(prod_compose: Compose) -> None:
    assert "GRAFANA_ADMIN_PASSWORD" not in prod_test_env()
    # Profile off: the configuration is valid and nothing checks the password.
    off = prod_config(prod_compose, COMPOSE_PROFILES="db,redis")["services"]
    assert "grafana" not in off
    assert "grafana-password-check" not in off
    # Profile on: Grafana cannot start before the check has passed.
    on = prod_config(prod_compose, COMPOSE_PROFILES="db,redis,observability")["services"]
    assert on["grafana"]["depends_on"]["grafana-password-check"]["condition"] == "service_completed_successfully"


def test_prod_proxy_serves_plain_http_when_domain_is_empty_and_the_domain_otherwise(prod_compose: Compose) -> None:
    def site_address(domain: str) -> str:
        compose = Compose(PROD_FILE, prod_compose.env_file, {**(prod_compose.env or {}), "DOMAIN": domain})
        config = json.loads(compose("config", "--format", "json").stdout)
        return str(config["services"]["proxy"]["environment"]["SITE_ADDRESS"])

    assert site_address("") == ":80"
    assert site_address("api.example.com") == "api.example.com"


def test_dockerfile_pins_its_base_and_runs_the_server_in_exec_form() -> None:
    parser = DockerfileParser(path=str(DOCKERFILE))
    bases = {instr["value"].split()[0] for instr in parser.structure if instr["instruction"] == "FROM"}
    stage_names = {m.group(1) for m in re.finditer(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", parser.content)}
    external = bases - stage_names
    assert external == {"python:3.11.14-slim-bookworm"}, external
    assert not parser.content.lstrip().startswith("# syntax"), "a syntax directive would pull a frontend image"
    last_stage = parser.content.rsplit("\nFROM ", 1)[1]
    assert re.search(r'(?m)^CMD \["python", "-m", "app.server"\]', last_stage)
    healthcheck = next(i["value"] for i in parser.structure if i["instruction"] == "HEALTHCHECK")
    assert "urllib" in healthcheck
    assert "curl" not in healthcheck


# --- 2. stand-in base images -------------------------------------------------


def images_the_files_name() -> set[str]:
    names = set()
    for path in (LOCAL_FILE, PROD_FILE):
        names |= set(re.findall(r"(?m)^\s+image:\s*(\S+)\s*$", path.read_text()))
    names |= set(re.findall(r"(?m)^FROM\s+(\S+:\S+)", DOCKERFILE.read_text()))
    # The project's own image is built here, never pulled.
    return {name for name in names if not name.startswith(("items-api", "*", '"${IMAGE'))} - UNVERIFIED_IMAGES


def test_every_base_image_the_files_name_exists_locally(standins: None) -> None:
    names = images_the_files_name()
    assert {
        "python:3.11.14-slim-bookworm",
        "postgres:15.14-bookworm",
        "caddy:2.11.7-alpine",
        "redis:7.4.2-bookworm",
    } <= names
    missing = sorted(name for name in names if not image_exists(name))
    assert not missing, f"would be pulled: {missing}"


# --- 3. the image -------------------------------------------------------------


def test_build_context_keeps_git_secrets_venvs_and_tests_out(standins: None, tmp_path: Path) -> None:
    probe = tmp_path / "Dockerfile"
    probe.write_text("FROM debian:bookworm-slim\nCOPY . /context\n")
    docker("build", "-q", "-f", str(probe), "-t", "items-api-context-probe", ".")
    listing = docker(
        "run", "--rm", "--pull", "never", "items-api-context-probe", "find", "/context", "-maxdepth", "2"
    ).stdout.split()
    docker("rmi", "items-api-context-probe")
    entries = {path.removeprefix("/context/") for path in listing}
    assert {"app", "migrations", "requirements.txt", "alembic.ini"} <= entries
    leaked = {e for e in entries if re.match(r"(\.git|\.env|\.venv|tests|docker|bench|instance)(/|$)", e)}
    assert not leaked, leaked
    assert not any("__pycache__" in e for e in entries)


def test_image_runs_as_non_root_with_healthcheck_port_8000_and_exec_form_cmd(runtime_image: str) -> None:
    config = inspect(runtime_image)["Config"]
    uid = config["User"].split(":")[0]
    assert uid.isdigit(), f"user must be a numeric UID: {config['User']}"
    assert int(uid) != 0
    assert config["Healthcheck"]["Test"][0] == "CMD"
    assert "urllib" in " ".join(config["Healthcheck"]["Test"])
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Entrypoint"] is None
    assert config["Cmd"] == ["python", "-m", "app.server"], config["Cmd"]  # not ["/bin/sh", "-c", ...]
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_image_labels_carry_source_revision_and_version(runtime_image: str) -> None:
    labels = inspect(runtime_image)["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == git_sha()
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.version"]


def test_image_size_is_reported(runtime_image: str) -> None:
    size = inspect(runtime_image)["Size"]
    base = inspect("python:3.11.14-slim-bookworm")["Size"]
    record("image size on the stand-in base", f"{size / 1e6:.1f} MB")
    record("layers added to the python base (venv + code)", f"{(size - base) / 1e6:.1f} MB")
    assert size - base < 100e6, "the venv and code alone should stay well under 100 MB"


def test_image_compiled_extensions_still_load_after_stripping(runtime_image: str) -> None:
    probe = (
        "import psycopg, sqlalchemy.util as u, markupsafe._speedups, pydantic_core; "
        "print(psycopg.pq.__impl__, u.has_compiled_ext())"
    )
    result = docker("run", "--rm", "--pull", "never", "--entrypoint", "python", runtime_image, "-c", probe)
    assert result.stdout.split() == ["binary", "True"]


def test_image_refuses_production_without_a_secret(runtime_image: str) -> None:
    result = docker(
        "run",
        "--rm",
        "--pull",
        "never",
        "-e",
        "DATABASE_URL=postgresql://u:p@127.0.0.1:1/x",
        runtime_image,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr


# --- 4. the local stack ---------------------------------------------------------


@pytest.fixture(scope="class")
def local_stack(standins: None, local_compose: Compose) -> Iterator[Compose]:
    started = time.monotonic()
    docker("build", "--network", "host", "--target", "dev", "-t", DEV_TAG, ".", timeout=420)
    record("image build (dev target)", f"{time.monotonic() - started:.1f} s")
    try:
        # What the README tells developers, detached: `up --build`.
        record("local stack up --build --wait", f"{local_compose.timed_up('--build'):.1f} s")
        yield local_compose
    finally:
        local_compose.down()


class TestLocalStack:
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{LOCAL_API_PORT}"

    def test_health_reports_the_local_environment(self, local_stack: Compose) -> None:
        response = http("GET", f"{self.base}/health")
        assert response.status == 200
        assert response.json() == {"status": "ok", "environment": "local"}

    def test_items_round_trip(self, local_token: str) -> None:
        created = http(
            "POST",
            f"{self.base}/items",
            json_body={"title": "local", "description": "e2e"},
            headers=write_headers(local_token),
        )
        assert created.status == 201, created.body
        item = created.json()
        fetched = http("GET", f"{self.base}/items/{item['id']}")
        assert fetched.status == 200
        assert fetched.json()["title"] == "local"
        listed = http("GET", f"{self.base}/items")
        assert listed.status == 200
        assert item["id"] in {entry["id"] for entry in listed.json()["items"]}

    def test_ports_are_published_on_loopback_only(self, local_stack: Compose) -> None:
        for service in ("db", "api"):
            ports = inspect(local_stack.container(service))["HostConfig"]["PortBindings"]
            bindings = [binding for entries in ports.values() for binding in entries]
            assert bindings, service
            assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, (service, ports)

    def test_source_is_bind_mounted_for_the_reloading_server(self, local_stack: Compose) -> None:
        container = inspect(local_stack.container("api"))
        mounts = {m["Destination"]: m for m in container["Mounts"]}
        assert mounts["/app"]["Type"] == "bind"
        assert Path(mounts["/app"]["Source"]).resolve() == REPO
        assert "--debug" in container["Config"]["Cmd"]

    def test_items_survive_an_api_restart_and_a_down_up(self, local_stack: Compose, local_token: str) -> None:
        created = http(
            "POST",
            f"{self.base}/items",
            json_body={"title": "durable", "description": None},
            headers=write_headers(local_token),
        )
        assert created.status == 201, created.body
        item_id = created.json()["id"]

        local_stack("restart", "api")
        wait_until_healthy(f"{self.base}/health")
        assert http("GET", f"{self.base}/items/{item_id}").json()["title"] == "durable"

        local_stack("down")  # keeps the named volume
        record("local stack up --wait (again, volume kept)", f"{local_stack.timed_up():.1f} s")
        assert http("GET", f"{self.base}/items/{item_id}").json()["title"] == "durable"


# --- 5. the production stack -------------------------------------------------------


@pytest.fixture(scope="class")
def local_token(local_stack: Compose) -> str:
    return issue_write_token(local_stack, "e2e-local")


@pytest.fixture(scope="class")
def prod_stack(runtime_image: str, prod_compose: Compose) -> Iterator[Compose]:
    # What CI pushes and the server pulls, made here by tagging.
    docker("tag", runtime_image, f"{PROD_IMAGE}:{PROD_TAG}")
    try:
        record("production stack up -d --wait", f"{prod_compose.timed_up():.1f} s")
        yield prod_compose
    finally:
        prod_compose.down()


@pytest.fixture(scope="class")
def prod_token(prod_stack: Compose) -> str:
    return issue_write_token(prod_stack, "e2e-prod")


class TestProductionStack:
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{PROD_HTTP_PORT}"

    def test_health_through_the_proxy_reports_production(self, prod_stack: Compose) -> None:
        response = http("GET", f"{self.base}/health")
        assert response.status == 200
        assert response.json() == {"status": "ok", "environment": "production"}

    def test_readiness_is_not_public_but_answers_inside(self, prod_stack: Compose) -> None:
        for path in ("/health/ready", "/health/ready/", "//health/ready", "/HEALTH/READY", "/health/ready?x=1"):
            response = http("GET", f"{self.base}{path}")
            assert response.status == 404, path
            assert b"database" not in response.body, path
        probe = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/health/ready').status)"
        assert prod_stack("exec", "-T", "api", "python", "-c", probe).stdout.strip() == "200"
        assert inspect(prod_stack.container("api"))["State"]["Health"]["Status"] == "healthy"

    def test_writes_without_a_token_are_refused(self, prod_stack: Compose) -> None:
        response = http("POST", f"{self.base}/items", json_body={"title": "anonymous", "description": None})
        assert response.status == 401

    def test_items_round_trip_through_the_proxy(self, prod_token: str) -> None:
        created = http(
            "POST",
            f"{self.base}/items",
            json_body={"title": "prod", "description": "via caddy"},
            headers=write_headers(prod_token),
        )
        assert created.status == 201, created.body
        fetched = http("GET", f"{self.base}/items/{created.json()['id']}")
        assert fetched.status == 200
        assert fetched.json()["description"] == "via caddy"

    def test_proxy_sets_security_headers_and_hides_its_name(self, prod_stack: Compose) -> None:
        headers = {k.lower(): v for k, v in http("GET", f"{self.base}/health").headers.items()}
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "server" not in headers
        assert "strict-transport-security" not in headers, "HSTS belongs to HTTPS only"

    def test_metrics_are_not_public(self, prod_stack: Compose) -> None:
        for path in ("/metrics", "/metrics/", "//metrics", "/metrics?format=text"):
            response = http("GET", f"{self.base}{path}")
            assert response.status == 404, path
            assert b"http_requests_total" not in response.body, path

    def test_proxy_refuses_a_body_over_its_limit(self, prod_token: str) -> None:
        # The app would take 4 MiB here (MAX_CONTENT_LENGTH), so the refusal is the proxy's.
        response = http("POST", f"{self.base}/items", data=b"x" * 2_000_000, headers=write_headers(prod_token))
        # Caddy >= 2.7 answers 413 (2.6 answered 502, caddy#5652; the stand-in runs the pinned 2.11.7).
        assert response.status in (413, 502), response.status
        assert "problem+json" not in response.headers.get("Content-Type", "")

    def test_redis_refuses_clients_without_its_password(self, prod_stack: Compose) -> None:
        # From the api container, on the backend network Grafana and Prometheus share.
        probe = (
            "import os, redis\n"
            "try:\n"
            "    redis.Redis(host='redis', socket_timeout=3, retry=None).ping()\n"
            "    print('open')\n"
            "except redis.AuthenticationError:\n"
            "    print('refused')\n"
            "print(redis.Redis.from_url(os.environ['REDIS_URL'], socket_timeout=3).ping())\n"
        )
        result = prod_stack("exec", "-T", "api", "python", "-c", probe)
        assert result.stdout.split() == ["refused", "True"], result.stdout + result.stderr
        assert inspect(prod_stack.container("redis"))["State"]["Health"]["Status"] == "healthy"

    def test_the_grafana_password_check_refuses_an_empty_password(self, prod_stack: Compose) -> None:
        def check(password: str) -> subprocess.CompletedProcess[str]:
            env = {**(prod_stack.env or {}), "COMPOSE_PROFILES": "observability", "GRAFANA_ADMIN_PASSWORD": password}
            with_profile = Compose(prod_stack.file, prod_stack.env_file, env)
            return with_profile("run", "--rm", "--no-deps", "--pull", "never", "grafana-password-check", check=False)

        refused = check("")
        assert refused.returncode != 0
        assert "GRAFANA_ADMIN_PASSWORD must be set" in refused.stdout + refused.stderr
        assert check("e2e-grafana-password-0123456789").returncode == 0

    def test_api_port_is_not_published(self, prod_stack: Compose) -> None:
        ports = inspect(prod_stack.container("api"))["NetworkSettings"]["Ports"] or {}
        assert all(not bindings for bindings in ports.values()), ports

    def test_api_runs_as_non_root(self, prod_stack: Compose) -> None:
        container = prod_stack.container("api")
        assert prod_stack("exec", "-T", "api", "id", "-u").stdout.strip() == str(APP_UID)
        # Every process (the server and its workers), not only the one exec starts.
        top = docker("top", container, "-o", "pid,user,args").stdout.splitlines()[1:]
        assert top
        assert {line.split()[1] for line in top} <= {str(APP_UID), "app"}, top

    def test_migration_ran_once_and_is_idempotent(self, prod_stack: Compose) -> None:
        assert inspect(prod_stack.container("migrate"))["State"]["ExitCode"] == 0
        rerun = prod_stack("run", "--rm", "--no-deps", "--pull", "never", "migrate")
        assert "head" in rerun.stdout + rerun.stderr

    def test_a_domain_turns_on_https_and_redirects_http(self, prod_stack: Compose) -> None:
        # "localhost" gets a certificate from Caddy's internal CA: no ACME, no traffic out.
        with_domain = Compose(prod_stack.file, prod_stack.env_file, {**(prod_stack.env or {}), "DOMAIN": "localhost"})
        try:
            with_domain.timed_up("proxy")
            secure = http("GET", f"https://localhost:{PROD_HTTPS_PORT}/health")
            assert secure.status == 200
            assert secure.json()["environment"] == "production"
            assert secure.headers["Strict-Transport-Security"].startswith("max-age=")
            redirect = http("GET", f"http://127.0.0.1:{PROD_HTTP_PORT}/health", headers={"Host": "localhost"})
            assert redirect.status in (301, 308)
            assert redirect.headers["Location"].startswith("https://localhost")
        finally:
            prod_stack.timed_up("proxy")

    def test_prometheus_scrapes_the_api_on_the_internal_network(self, prod_stack: Compose) -> None:
        env = {**(prod_stack.env or {}), "COMPOSE_PROFILES": "db,redis,observability"}
        with_monitoring = Compose(prod_stack.file, prod_stack.env_file, env)
        record("prometheus up --wait", f"{with_monitoring.timed_up('prometheus'):.1f} s")
        targets_url = f"http://127.0.0.1:{PROD_PROMETHEUS_PORT}/api/v1/targets"
        deadline = time.monotonic() + 60
        api_targets: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            active = http("GET", targets_url).json()["data"]["activeTargets"]
            api_targets = [t for t in active if t["labels"]["job"] == "items-api"]
            if api_targets and all(t["health"] == "up" for t in api_targets):
                break
            time.sleep(1)
        assert api_targets
        assert all(t["health"] == "up" for t in api_targets), api_targets
        rules = http("GET", f"http://127.0.0.1:{PROD_PROMETHEUS_PORT}/api/v1/rules").json()["data"]["groups"]
        assert rules, "the alert rules did not load"

    def test_docker_stop_drains_the_api_within_the_grace_period(self, prod_stack: Compose) -> None:
        container = prod_stack.container("api")
        grace = inspect(container)["Config"]["StopTimeout"]
        assert grace == 30, "stop_grace_period must outlast SHUTDOWN_DRAIN_SECONDS + GRACEFUL_TIMEOUT (3 + 20 s)"
        started = time.monotonic()
        docker("stop", container, timeout=grace + 30)  # no -t: the compose grace period applies
        elapsed = time.monotonic() - started
        record("docker stop of the api", f"{elapsed:.1f} s (grace period {grace} s)")
        state = inspect(container)["State"]
        assert state["ExitCode"] == 0, "the server did not exit cleanly on SIGTERM"
        assert elapsed < grace
        output = docker("logs", container)
        logs = output.stdout + output.stderr
        assert "SIGTERM: draining" in logs
        assert not re.search(r'\[ERROR\]|"(level|levelname|severity)": ?"(ERROR|CRITICAL)"', logs), logs[-2000:]


def test_nothing_was_pulled(engine: None) -> None:
    """Every image in the engine was built, loaded or tagged here: none carries a registry digest."""
    # The guard of proofs/lib.sh: a pull would have gone to a closed loopback port.
    proxies = docker("info", "--format", "{{.HTTPProxy}} {{.HTTPSProxy}}").stdout.split()
    assert proxies == ["http://127.0.0.1:9", "http://127.0.0.1:9"]
    lines = docker("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}").stdout.splitlines()
    pulled = [line for line in lines if not line.endswith("<none>")]
    assert not pulled, pulled
