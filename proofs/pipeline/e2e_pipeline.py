"""Pipeline check: .gitlab-ci.yml validated, its jobs run, and the deploy it ends in.

Run it with `bash proofs/pipeline/run.sh` (`make pipeline-test`), which starts the
private engine and the registry and stops them again. Steps, in file order:
1 the file against GitLab's schema and gitlab-ci-local's parser, rules per
pipeline kind, pins; 2 the test and build jobs under gitlab-ci-local against a
registry on 127.0.0.1 with htpasswd auth (and a wrong password); 3 deploy,
failures and rollback through the deploy jobs, over SSH, to a stand-in VM.
Nothing is pulled from outside; every request goes to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from harness import REPO, docker, http, record, run, wait_until_healthy
from support import (
    IMAGE,
    PROJECT_PATH,
    REGISTRY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    STATE_DIR,
    TOOLS_BIN,
    VM_HTTP_PORT,
    VM_HTTPS_PORT,
    WORK,
    PipelineRun,
    ServiceForwarder,
    Snapshot,
    Vm,
    alembic_head,
    docker_login,
    gitlab_ci,
    gitlab_ci_local,
    loopback_url,
    manifest_digest,
    probe_migration,
    registry_tags,
    running_image,
)

# A version (major.minor at least: postgres tags have no patch number), maybe a variant.
PINNED_TAG = re.compile(r":v?\d+\.\d+(\.\d+)?(-[a-z0-9.-]+)?$")
TOKEN = re.compile(r"\bitm_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\b")
FLASK = "flask --app app.main:create_app"
CHECK_PORT = int(os.environ.get("PL_CHECK_PORT", "28190"))
CACHE_REPOSITORY = f"{PROJECT_PATH}/build-cache"


def image_names(ci: dict[str, Any]) -> dict[str, str]:
    """Every job image and service image, keyed by where it is used."""
    found: dict[str, str] = {}
    for name, job in ci.items():
        if not isinstance(job, dict):
            continue
        image = job.get("image")
        if image is not None:
            found[f"{name}.image"] = image["name"] if isinstance(image, dict) else image
        for index, service in enumerate(job.get("services", [])):
            found[f"{name}.services[{index}]"] = service["name"] if isinstance(service, dict) else service
    return found


def job_names(listed: PipelineRun) -> set[str]:
    """Job names from `gitlab-ci-local --list` (the table after its header line)."""
    lines = listed.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("name "))
    return {line.split()[0] for line in lines[header + 1 :] if line.strip()}


# --- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="session")
def ci() -> dict[str, Any]:
    return gitlab_ci()


@pytest.fixture(scope="session")
def snapshot() -> Snapshot:
    snap = Snapshot()
    snap.refresh()
    snap.seed_template_include()
    return snap


@pytest.fixture(scope="session")
def sha_a(snapshot: Snapshot) -> str:
    return snapshot.git("rev-parse", "HEAD")


@pytest.fixture(scope="session")
def engine() -> None:
    if not os.environ.get("DOCKER_HOST"):
        pytest.fail("no private engine: run this through proofs/pipeline/run.sh")
    docker("version")


@pytest.fixture(scope="session")
def standins(engine: None, ci: dict[str, Any]) -> None:
    dind = ci["build"]["services"][0]["name"]
    started = time.monotonic()
    script = 'source proofs/lib.sh && ct_build_standins && ct_build_pipeline_standins "$1"'
    run(["bash", "-c", script, "-", dind], timeout=480)
    record("stand-in images ready (built or loaded from cache)", f"{time.monotonic() - started:.1f} s")


@pytest.fixture(scope="session")
def engine_login(engine: None) -> None:
    """The harness's own docker CLI, logged in to the registry (to pull back what CI pushed)."""
    docker_login(REGISTRY_USER, REGISTRY_PASSWORD)


@pytest.fixture(scope="session")
def ci_variables(ci: dict[str, Any], snapshot: Snapshot) -> dict[str, str]:
    """What GitLab would provide (registry credentials) and what differs on this machine.

    DOCKER_HOST/DOCKER_TLS_*: the job talks to the private engine over its
    socket instead of the dind service (which cannot run here: it would need
    a privileged engine inside the engine and a TLS handshake with
    certificates the runner shares); the dind service itself is an idle
    stand-in. TEST_*_URL: the yml's URLs with the service alias replaced by the
    loopback port the service is published on (a shell job runs on the host).
    """
    config = WORK / "job-docker-config"
    config.mkdir(parents=True, exist_ok=True)
    test_vars = ci["test"]["variables"]
    return {
        # Jobs with an image get /builds/... from gitlab-ci-local; a shell job runs here.
        "CI_PROJECT_DIR": str(snapshot.path),
        "CI_REGISTRY": REGISTRY,
        "CI_REGISTRY_IMAGE": IMAGE,
        "CI_REGISTRY_USER": REGISTRY_USER,
        "CI_REGISTRY_PASSWORD": REGISTRY_PASSWORD,
        "DOCKER_HOST": os.environ["DOCKER_HOST"],
        "DOCKER_TLS_VERIFY": "",
        "DOCKER_CERT_PATH": "",
        "DOCKER_TLS_CERTDIR": "",
        "DOCKER_CONFIG": str(config),
        "TEST_DATABASE_URL": loopback_url(test_vars["TEST_DATABASE_URL"], "postgres"),
        "TEST_REDIS_URL": loopback_url(test_vars["TEST_REDIS_URL"], "redis"),
    }


@pytest.fixture(scope="session")
def first_run(standins: None, snapshot: Snapshot, sha_a: str, ci_variables: dict[str, str]) -> PipelineRun:
    # The first build of a fresh engine has no cache: its RUN steps need the
    # package mirrors, which only --network host reaches on this engine.
    variables = ci_variables | {"DOCKER_BUILD_OPTS": "--network host"}
    with ServiceForwarder() as forwarder:
        result = gitlab_ci_local(
            "hadolint", "test", "build", snapshot=snapshot, variables=variables, timeout=900, log_name="pipeline-a"
        )
    record("gitlab-ci-local hadolint + test + build (SHA A)", f"{result.seconds:.1f} s")
    assert forwarder.log, result.output[-3000:]
    return result


@pytest.fixture(scope="session")
def sha_b(first_run: PipelineRun, snapshot: Snapshot, ci_variables: dict[str, str]) -> str:
    """A second commit, one backward-compatible migration ahead, built by the build job from the cache."""
    versions = snapshot.path / "migrations" / "versions"
    (versions / "29991231_9999_pipeline_probe.py").write_text(probe_migration(alembic_head(versions)))
    sha = snapshot.commit("Pipeline check: a second commit with a new table")
    # No --network host: every RUN step must come from the --cache-from images the
    # script pulled (given --cache-from, the classic builder uses no other cache).
    result = gitlab_ci_local("build", snapshot=snapshot, variables=ci_variables, timeout=600, log_name="pipeline-b")
    record("gitlab-ci-local build (SHA B, from the registry cache)", f"{result.seconds:.1f} s")
    assert result.returncode == 0, result.output[-4000:]
    assert result.job_passed("build"), result.output[-4000:]
    return sha


# --- 1. the file ----------------------------------------------------------------


def test_gitlab_ci_validates_against_gitlabs_ci_schema() -> None:
    run([str(TOOLS_BIN / "check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci",
         "--data-transform", "gitlab-ci", str(REPO / ".gitlab-ci.yml")])  # fmt: skip


def test_gitlab_ci_local_parses_every_job_into_its_stage(snapshot: Snapshot) -> None:
    listed = gitlab_ci_local("--list", snapshot=snapshot)
    assert listed.returncode == 0, listed.output
    rows = {
        line.split()[0]: line.split()
        for line in listed.stdout.splitlines()[1:]
        if line
        and line.split()[0]
        in {"lint", "hadolint", "test", "build", "container_scanning", "pip-audit", "deploy", "rollback"}
    }
    stages = {name: row[1] for name, row in rows.items()}
    assert stages == {
        "lint": "lint", "hadolint": "lint", "test": "test", "build": "build",
        "container_scanning": "scan", "pip-audit": "scan", "deploy": "deploy", "rollback": "deploy",
    }  # fmt: skip
    assert rows["deploy"][2] == "manual"
    assert rows["rollback"][2] == "manual"
    assert "production" in rows["deploy"]
    assert "production" in rows["rollback"]
    assert "[build]" in rows["container_scanning"], "the scan must wait for the image it scans"


@pytest.mark.parametrize(
    ("kind", "variables", "expected"),
    [
        ("default branch", {}, "all"),
        ("feature branch", {"CI_COMMIT_BRANCH": "feature/x", "CI_COMMIT_REF_NAME": "feature/x"}, "checks"),
        (
            "merge request",
            {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_COMMIT_BRANCH": "", "CI_MERGE_REQUEST_IID": "7"},
            "checks",
        ),
        ("tag", {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "v1.2.3", "CI_COMMIT_REF_NAME": "v1.2.3"}, "all"),
    ],
)
def test_jobs_of_each_pipeline_kind(snapshot: Snapshot, kind: str, variables: dict[str, str], expected: str) -> None:
    """Lint and test everywhere; build, scan and deploy only for the default branch and tags."""
    listed = gitlab_ci_local("--list", snapshot=snapshot, variables=variables)
    assert listed.returncode == 0, listed.output
    checks = {"lint", "hadolint", "test"}
    release = {"build", "container_scanning", "pip-audit", "deploy", "rollback"}
    assert job_names(listed) == (checks | release if expected == "all" else checks), kind


@pytest.mark.parametrize(
    ("kind", "variables", "pipeline"),
    [
        ("branch push", {"CI_COMMIT_BRANCH": "feature/x", "CI_PIPELINE_SOURCE": "push"}, True),
        (
            "branch push with an open MR",
            {
                "CI_COMMIT_BRANCH": "feature/x",
                "CI_PIPELINE_SOURCE": "push",
                "CI_OPEN_MERGE_REQUESTS": "group/items-api!7",
            },
            False,
        ),
        ("merge request", {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "7"}, True),
        ("tag", {"CI_COMMIT_TAG": "v1.2.3", "CI_PIPELINE_SOURCE": "push"}, True),
    ],
)
def test_workflow_rules_make_one_pipeline_per_push(
    snapshot: Snapshot, ci: dict[str, Any], kind: str, variables: dict[str, str], pipeline: bool
) -> None:
    """gitlab-ci-local does not apply workflow:rules' `when: never`; its rule engine decides as a job's rules here."""
    probe = snapshot.path / ".gitlab-ci-local" / "workflow-probe.yml"
    probe.write_text(
        yaml.safe_dump(
            {"stages": ["probe"], "pipeline": {"stage": "probe", "script": ["true"], "rules": ci["workflow"]["rules"]}}
        )
    )
    defaults = {"CI_COMMIT_BRANCH": "", "CI_COMMIT_TAG": "", "CI_OPEN_MERGE_REQUESTS": "", "CI_MERGE_REQUEST_IID": ""}
    listed = gitlab_ci_local(
        "--list", "--file", ".gitlab-ci-local/workflow-probe.yml", snapshot=snapshot, variables=defaults | variables
    )
    assert listed.returncode == 0, listed.output
    assert ("pipeline" in job_names(listed)) is pipeline, kind


def test_every_image_is_pinned_and_matches_the_dockerfile_and_compose(ci: dict[str, Any]) -> None:
    images = image_names(ci)
    for where, name in images.items():
        assert "latest" not in name, where
        assert PINNED_TAG.search(name), f"{where}: {name} is not pinned to a version"
    dockerfile_base = re.search(r"^FROM (\S+) AS base", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_base
    assert images[".python.image"] == dockerfile_base.group(1)
    assert ci["test"]["extends"] == ci["lint"]["extends"] == ci["pip-audit"]["extends"] == ".python"
    compose = (REPO / "docker" / "docker-compose.prod.yml").read_text()
    for service in ci["test"]["services"]:
        assert f"image: {service['name']}" in compose, service["name"]
    cli, dind = images["build.image"], images["build.services[0]"]
    assert cli.removesuffix("-cli") == dind.removesuffix("-dind"), "docker CLI and dind versions differ"
    # GitLab's analyzer: its major version (the image carries the vulnerability database).
    assert ci["variables"]["CS_ANALYZER_IMAGE"].endswith("/container-scanning:8")


def test_test_job_runs_the_readme_command_and_publishes_reports(ci: dict[str, Any]) -> None:
    job = ci["test"]
    assert "make test" in job["script"]
    assert "--junitxml=junit.xml" in job["variables"]["PYTEST_ARGS"]
    assert "--cov-report=xml:coverage.xml" in job["variables"]["PYTEST_ARGS"]
    reports = job["artifacts"]["reports"]
    assert reports["junit"] == "junit.xml"
    assert reports["coverage_report"] == {"coverage_format": "cobertura", "path": "coverage.xml"}
    assert ci[".python"]["cache"]["key"]["files"] == ["requirements.txt", "requirements-dev.txt"]
    pattern = job["coverage"].strip("/")
    assert re.search(pattern, "TOTAL                       1520     41    310     22    96%").group(1) == "96%"
    assert re.search(pattern, "TOTAL  100  0  100%").group(1) == "100%"


def test_ci_scripts_are_posix_sh_and_shellcheck_clean() -> None:
    scripts = sorted(str(p) for p in (REPO / "scripts" / "ci").glob("*.sh"))
    assert scripts
    run([str(TOOLS_BIN / "shellcheck"), "--shell=sh", *scripts])
    for script in scripts:
        run(["dash", "-n", script])
    run([str(TOOLS_BIN / "shellcheck"), "--shell=bash", str(REPO / "scripts" / "deploy.sh")])


# --- 2. the test and build jobs ---------------------------------------------------


def test_test_and_build_jobs_pass_on_the_default_branch(first_run: PipelineRun, snapshot: Snapshot) -> None:
    assert first_run.returncode == 0, first_run.output[-6000:]
    for job in ("hadolint", "test", "build"):
        assert first_run.job_passed(job), f"{job} did not pass:\n{first_run.output[-6000:]}"
    junit = ET.parse(snapshot.path / "junit.xml").getroot()  # noqa: S314
    suite = junit if junit.tag == "testsuite" else junit[0]
    tests, failures, errors = (int(suite.get(key, "0")) for key in ("tests", "failures", "errors"))
    assert tests > 100, tests
    assert (failures, errors) == (0, 0)
    assert "database backends: postgresql" in first_run.output, "the suite did not use the PostgreSQL service"
    coverage = ET.parse(snapshot.path / "coverage.xml").getroot()  # noqa: S314
    assert coverage.tag == "coverage"
    assert float(coverage.get("line-rate", "0")) > 0.5
    # The job's `coverage:` regex, applied by gitlab-ci-local to the job log.
    percent = first_run.coverage("test")
    assert percent is not None, "the coverage regex found no percentage in the test job's log"
    assert float(percent) > 50
    record("test job: tests, coverage", f"{tests}, {percent}%")


def test_registry_lists_the_sha_and_latest(first_run: PipelineRun, sha_a: str) -> None:
    assert {sha_a, "latest"} <= registry_tags(), registry_tags()
    assert manifest_digest("latest") == manifest_digest(sha_a)
    assert "builder" in registry_tags(CACHE_REPOSITORY)


def test_pushed_image_pulls_back_and_answers_health(first_run: PipelineRun, engine_login: None, sha_a: str) -> None:
    reference = f"{IMAGE}:{sha_a}"
    docker("rmi", reference, f"{IMAGE}:latest")
    docker("pull", "--quiet", reference)
    labels = docker("inspect", "--format", "{{json .Config.Labels}}", reference).stdout
    assert f'"org.opencontainers.image.revision":"{sha_a}"' in labels
    docker("network", "create", "pl-pullback")
    try:
        # Production settings; the database and Redis are closed loopback ports in
        # the container: /health is liveness and touches neither.
        docker(
            "run", "-d", "--name", "pl-pullback", "--network", "pl-pullback", "-p", f"127.0.0.1:{CHECK_PORT}:8000",
            "-e", "APP_ENV=production", "-e", "SECRET_KEY=pipeline-check-secret-key-0123456789abcdef",
            "-e", "DATABASE_URL=postgresql+psycopg://items:unused@127.0.0.1:9/items",
            "-e", "REDIS_URL=redis://127.0.0.1:9/0", reference,
        )  # fmt: skip
        try:
            body = wait_until_healthy(f"http://127.0.0.1:{CHECK_PORT}/health", 60).json()
        except AssertionError as error:
            logs = docker("logs", "pl-pullback", check=False)
            raise AssertionError(f"{error}\n{(logs.stdout + logs.stderr)[-3000:]}") from None
        assert body == {"status": "ok", "environment": "production"}
        assert docker("exec", "pl-pullback", "printenv", "GIT_SHA").stdout.strip() == sha_a
    finally:
        docker("rm", "-f", "pl-pullback", check=False)
        docker("network", "rm", "pl-pullback", check=False)


def test_a_wrong_registry_password_fails_the_build_job(
    first_run: PipelineRun, snapshot: Snapshot, ci_variables: dict[str, str]
) -> None:
    before = registry_tags()
    result = gitlab_ci_local(
        "build", snapshot=snapshot, variables=ci_variables | {"CI_REGISTRY_PASSWORD": "not-the-password"},
        timeout=300, log_name="pipeline-wrong-password",
    )  # fmt: skip
    assert result.returncode != 0, result.output[-3000:]
    assert result.job_failed("build"), result.output[-3000:]
    assert "docker login to" in result.output
    assert "failed" in result.output
    assert registry_tags() == before


def test_the_next_commit_builds_from_the_registry_cache_and_moves_latest(sha_b: str, sha_a: str) -> None:
    tags = registry_tags()
    assert {sha_a, sha_b, "latest"} <= tags, tags
    assert manifest_digest("latest") == manifest_digest(sha_b) != manifest_digest(sha_a)
    log = (WORK / "logs" / "pipeline-b.log").read_text()
    assert f"cache: {IMAGE}/build-cache:builder" in log
    assert f"cache: {IMAGE}:latest" in log


def test_a_tag_pipeline_promotes_the_commits_image_and_leaves_latest(
    sha_b: str, sha_a: str, snapshot: Snapshot, ci_variables: dict[str, str]
) -> None:
    a_digest = manifest_digest(sha_a)
    snapshot.checkout(sha_a)
    tag = {"CI_COMMIT_TAG": "v9.9.9", "CI_COMMIT_BRANCH": "", "CI_COMMIT_REF_NAME": "v9.9.9"}
    result = gitlab_ci_local("build", snapshot=snapshot, variables=ci_variables | tag, log_name="pipeline-tag")
    record("gitlab-ci-local build (tag v9.9.9 on SHA A)", f"{result.seconds:.1f} s")
    assert result.returncode == 0, result.output[-4000:]
    assert result.job_passed("build"), result.output[-4000:]
    # The image the default branch built for A, promoted: not rebuilt, so A's SHA tag is unchanged.
    assert "is already in the registry: not rebuilding it" in result.output
    assert manifest_digest("v9.9.9") == manifest_digest(sha_a) == a_digest
    assert manifest_digest("latest") == manifest_digest(sha_b), "a tag pipeline must not move latest"


# --- 3. deploy, failures, rollback ------------------------------------------------


def vm_env() -> dict[str, str]:
    """The server's .env: the documented variables (.env.prod.example), test values."""
    return {
        "IMAGE": IMAGE,
        "IMAGE_TAG": "latest",
        "DOMAIN": "",
        "PUBLISH_IP": "127.0.0.1",
        "HTTP_PORT": str(VM_HTTP_PORT),
        "HTTPS_PORT": str(VM_HTTPS_PORT),
        "COMPOSE_PROFILES": "db,redis",
        "POSTGRES_USER": "items",
        "POSTGRES_PASSWORD": "pipeline-db-password-0123456789",
        "POSTGRES_DB": "items",
        "DATABASE_URL": "postgresql+psycopg://items:${POSTGRES_PASSWORD}@db:5432/items",
        "REDIS_PASSWORD": "pipeline-redis-password-0123456789",
        "REDIS_URL": "redis://:${REDIS_PASSWORD}@redis:6379/0",
        "SECRET_KEY": "pipeline-secret-key-not-used-anywhere-else-0123456789",
        "WEB_CONCURRENCY": "2",
    }


@pytest.fixture(scope="session")
def vm(sha_b: str) -> Vm:
    machine = Vm(WORK / "vm")
    machine.start(vm_env())
    return machine


@pytest.fixture(scope="session")
def deploy_variables(ci_variables: dict[str, str], vm: Vm) -> dict[str, str]:
    """The deploy jobs' CI/CD variables; SSH_PRIVATE_KEY as a File variable (a path)."""
    return ci_variables | {
        "DEPLOY_HOST": "127.0.0.1",
        "DEPLOY_PORT": str(os.environ.get("PL_SSH_PORT", "22222")),
        "DEPLOY_USER": "root",
        "DEPLOY_PATH": str(vm.deploy_path),
        "SSH_PRIVATE_KEY": str(vm.key),
        "KNOWN_HOSTS": vm.known_hosts,
        # GitLab's gitlab-deploy-token (read_registry): the VM logs in with it.
        "CI_DEPLOY_USER": REGISTRY_USER,
        "CI_DEPLOY_PASSWORD": REGISTRY_PASSWORD,
    }


BASE = f"http://127.0.0.1:{VM_HTTP_PORT}"


def run_deploy_job(job: str, snapshot: Snapshot, sha: str, variables: dict[str, str], log_name: str) -> PipelineRun:
    snapshot.checkout(sha)
    result = gitlab_ci_local(job, snapshot=snapshot, variables=variables, timeout=600, log_name=log_name)
    record(f"gitlab-ci-local {job} ({log_name})", f"{result.seconds:.1f} s")
    return result


def service_container(service: str) -> str:
    """The id of the running container of a service of the VM's stack."""
    found = docker("ps", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=items-api",
                   "--filter", f"label=com.docker.compose.service={service}").stdout.split()  # fmt: skip
    assert len(found) == 1, (service, found)
    return found[0]


def schema_revision() -> str:
    db = service_container("db")
    return docker("exec", db, "psql", "-U", "items", "-d", "items", "-tAc",
                  "SELECT version_num FROM alembic_version").stdout.strip()  # fmt: skip


class TestDeployAndRollback:
    item: dict[str, Any] = {}  # noqa: RUF012 (state shared by the ordered steps of this class)
    token = ""
    db_container = ""

    def assert_serving(self, sha: str) -> None:
        assert running_image() == f"{IMAGE}:{sha}"
        assert wait_until_healthy(f"{BASE}/health", 30).json()["status"] == "ok"
        if self.item:
            got = http("GET", f"{BASE}/items/{self.item['id']}")
            assert got.status == 200, got.body
            assert got.json()["title"] == self.item["title"]

    def test_deploy_job_deploys_sha_a_over_ssh(
        self, vm: Vm, snapshot: Snapshot, sha_a: str, deploy_variables: dict[str, str]
    ) -> None:
        result = run_deploy_job("deploy", snapshot, sha_a, deploy_variables, "deploy-a")
        assert result.returncode == 0, result.output[-5000:]
        assert result.job_passed("deploy"), result.output[-5000:]
        self.assert_serving(sha_a)
        assert (vm.deploy_path / ".deploy" / "current").read_text() == f"{sha_a}\n"
        type(self).db_container = service_container("db")
        assert (vm.deploy_path / "docker-compose.prod.yml").read_bytes() == (
            REPO / "docker" / "docker-compose.prod.yml"
        ).read_bytes()

    def test_an_item_written_on_sha_a(self, vm: Vm) -> None:
        out = vm.compose(f"exec -T api {FLASK} tokens create --name pipeline-check --scope write").stdout
        tokens = TOKEN.findall(out)
        assert len(tokens) == 1, out
        type(self).token = tokens[0]
        created = http(
            "POST", f"{BASE}/items", json_body={"title": "survives deploys", "description": "made on SHA A"},
            headers={"Authorization": f"Bearer {tokens[0]}"},
        )  # fmt: skip
        assert created.status == 201, created.body
        type(self).item = created.json()

    def test_a_tag_that_does_not_exist_changes_nothing(self, vm: Vm, sha_a: str) -> None:
        history = (vm.deploy_path / ".deploy" / "history").read_text()
        result = vm.deploy_sh("0" * 40, check=False)
        assert result.returncode != 0, result.stderr[-2000:]
        assert "nothing was changed" in result.stderr, result.stderr[-2000:]
        assert (vm.deploy_path / ".deploy" / "history").read_text() == history
        self.assert_serving(sha_a)

    def test_a_failing_migration_leaves_the_running_version_serving(
        self, vm: Vm, sha_a: str, engine_login: None
    ) -> None:
        # The builder stage: a venv with flask but no app, so `flask db upgrade` fails.
        broken = f"{IMAGE}:broken-migration"
        docker("tag", f"{IMAGE}/build-cache:builder", broken)
        docker("push", "--quiet", broken)
        started = time.monotonic()
        result = vm.deploy_sh("broken-migration", check=False)
        record("deploy.sh with a failing migration (refused)", f"{time.monotonic() - started:.1f} s")
        assert result.returncode != 0, result.stderr[-2000:]
        assert "migration of broken-migration failed" in result.stderr, result.stderr[-2000:]
        self.assert_serving(sha_a)

    def test_an_unhealthy_release_is_replaced_by_the_running_one(self, vm: Vm, sha_a: str) -> None:
        # Same image, migration skipped: the API container exits, `up --wait` fails.
        started = time.monotonic()
        result = vm.deploy_sh("broken-migration", env="MIGRATE=never WAIT_TIMEOUT=40", check=False)
        record("deploy.sh of an unhealthy release (restored)", f"{time.monotonic() - started:.1f} s")
        assert result.returncode != 0, result.stderr[-2000:]
        assert f"restored {sha_a}" in result.stderr, result.stderr[-3000:]
        self.assert_serving(sha_a)
        assert (vm.deploy_path / ".deploy" / "current").read_text() == f"{sha_a}\n"

    def test_deploy_job_deploys_sha_b_and_its_migration(
        self, vm: Vm, snapshot: Snapshot, sha_b: str, deploy_variables: dict[str, str]
    ) -> None:
        result = run_deploy_job("deploy", snapshot, sha_b, deploy_variables, "deploy-b")
        assert result.returncode == 0, result.output[-5000:]
        assert result.job_passed("deploy"), result.output[-5000:]
        self.assert_serving(sha_b)
        assert schema_revision() == "pipeline_probe"

    def test_rollback_job_returns_to_sha_a_on_the_newer_schema(
        self, vm: Vm, snapshot: Snapshot, sha_a: str, sha_b: str, deploy_variables: dict[str, str]
    ) -> None:
        result = run_deploy_job("rollback", snapshot, sha_b, deploy_variables, "rollback")
        assert result.returncode == 0, result.output[-5000:]
        assert result.job_passed("rollback"), result.output[-5000:]
        self.assert_serving(sha_a)
        # Not downgraded: the old code runs on the newer (backward-compatible) schema, and writes.
        assert schema_revision() == "pipeline_probe"
        created = http(
            "POST", f"{BASE}/items", json_body={"title": "written after the rollback"},
            headers={"Authorization": f"Bearer {self.token}"},
        )  # fmt: skip
        assert created.status == 201, created.body
        # Releases replace the API only: PostgreSQL kept running through all of them.
        assert service_container("db") == self.db_container
        status = vm.deploy_sh("--status").stdout
        assert f"running:  {sha_a}\n" in status, status
        assert "previous: \n" in status, status


def test_nothing_was_pulled_from_outside(engine: None) -> None:
    """Every image was built, loaded or tagged here, or pulled from the loopback registry."""
    proxies = docker("info", "--format", "{{.HTTPProxy}} {{.HTTPSProxy}}").stdout.split()
    assert proxies == ["http://127.0.0.1:9", "http://127.0.0.1:9"]
    lines = docker("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}").stdout.splitlines()
    pulled = [line for line in lines if not line.endswith("<none>") and not line.startswith(f"{REGISTRY}/")]
    assert not pulled, pulled
    assert Path(STATE_DIR).is_dir()
