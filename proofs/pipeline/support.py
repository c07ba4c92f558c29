"""Helpers of the pipeline check: a git snapshot of the work tree, gitlab-ci-local, the registry, the VM.

Everything talks to the private engine in DOCKER_HOST (started by run.sh) and to
127.0.0.1 only. Shared helpers (run, docker, http, record) come from the
container check's harness.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from harness import REPO, docker, run

HERE = Path(__file__).resolve().parent
GITLAB_CI = REPO / ".gitlab-ci.yml"
TOOLS_BIN = Path(os.environ.get("CT_TOOLS_BIN", ""))
GITLAB_CI_LOCAL = os.environ.get("CT_GITLAB_CI_LOCAL", "")
STATE_DIR = Path(os.environ.get("CT_STATE_DIR", "/nonexistent"))
WORK = Path(os.environ.get("PL_WORK_DIR", "/nonexistent"))
# Kept between runs (like a runner's cache): the snapshot's pip cache and
# gitlab-ci-local's state; the work tree itself is replaced on every run.
SNAPSHOT_DIR = Path(os.environ.get("PL_SNAPSHOT_DIR", "/var/cache/items-api-container/pipeline-snapshot"))

REGISTRY = os.environ.get("PL_REGISTRY", "127.0.0.1:5000")
REGISTRY_USER = os.environ.get("PL_REGISTRY_USER", "")
REGISTRY_PASSWORD = os.environ.get("PL_REGISTRY_PASSWORD", "")
PROJECT_PATH = "group/items-api"
IMAGE = f"{REGISTRY}/{PROJECT_PATH}"
REMOTE_URL = f"https://gitlab.example.com/{PROJECT_PATH}.git"

# Loopback ports below the ephemeral range, clear of the machine's services and
# of the container check's (25432, 28000, 28080, 28443, 29090).
SERVICE_PORTS = {
    "postgres": int(os.environ.get("PL_PG_PORT", "25532")),
    "redis": int(os.environ.get("PL_REDIS_PORT", "26479")),
}
VM_SSH_PORT = int(os.environ.get("PL_SSH_PORT", "22222"))
VM_HTTP_PORT = int(os.environ.get("PL_HTTP_PORT", "28180"))
VM_HTTPS_PORT = int(os.environ.get("PL_HTTPS_PORT", "28543"))
CHECK_PORT = int(os.environ.get("PL_CHECK_PORT", "28190"))

FORWARD_IMAGE = "items-api-pipeline/forward:local"
VM_IMAGE = "items-api-pipeline/vm:local"
VM_CONTAINER = "items-api-pipeline-vm"


def gitlab_ci() -> dict[str, Any]:
    """.gitlab-ci.yml, with GitLab's !reference tags kept as plain lists."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!reference", lambda loader, node: loader.construct_sequence(node))  # type: ignore[arg-type]
    data: dict[str, Any] = yaml.load(GITLAB_CI.read_text(), Loader=Loader)  # noqa: S506 (SafeLoader subclass)
    return data


# --- the snapshot: what gitlab-ci-local runs on ------------------------------


@dataclass
class Snapshot:
    """A git repository holding the work tree as it is (committed or not), at a fixed path.

    gitlab-ci-local takes the commit SHA, branch and project path from git, and
    a clean commit is what GitLab checks out. Untracked files that .gitignore
    does not exclude are included, so the check runs before anything is committed.
    """

    path: Path = SNAPSHOT_DIR
    keep: tuple[str, ...] = (".gitlab-ci-local", ".cache")

    def refresh(self) -> str:
        self.path.mkdir(parents=True, exist_ok=True)
        for child in self.path.iterdir():
            if child.name not in self.keep:
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
        files = sorted({name for name in listed.split("\0") if name and (REPO / name).is_file()})
        (self.path / ".files").write_text("\0".join(files))
        run(["tar", "--null", "-T", str(self.path / ".files"), "-cf", str(self.path / ".files.tar")])
        run(["tar", "-C", str(self.path), "-xf", str(self.path / ".files.tar")])
        (self.path / ".files").unlink()
        (self.path / ".files.tar").unlink()
        self.git("init", "-q", "-b", "main")
        exclude = self.path / ".git" / "info" / "exclude"
        exclude.write_text("".join(f"/{name}/\n" for name in self.keep))
        self.git("remote", "add", "origin", REMOTE_URL)
        return self.commit("Snapshot of the work tree for the pipeline check")

    def git(self, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "pipeline-check",
            "GIT_AUTHOR_EMAIL": "pipeline-check@localhost",
            "GIT_COMMITTER_NAME": "pipeline-check",
            "GIT_COMMITTER_EMAIL": "pipeline-check@localhost",
        }
        return run(["git", *args], cwd=self.path, env=env).stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        # The default branch, as gitlab-ci-local reads it (origin/HEAD).
        self.git("update-ref", "refs/remotes/origin/main", "HEAD")
        self.git("symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
        return self.git("rev-parse", "HEAD")

    def checkout(self, sha: str) -> None:
        self.git("checkout", "-q", "-B", "main", sha)
        self.git("update-ref", "refs/remotes/origin/main", "HEAD")

    def seed_template_include(self) -> None:
        """Put the Container-Scanning stand-in where gitlab-ci-local caches template includes."""
        target = (
            self.path / ".gitlab-ci-local/includes/gitlab.com/gitlab-org/gitlab/-/raw/HEAD/lib/gitlab/ci/templates/Jobs"
        )
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(HERE / "standins/gitlab-templates/Jobs/Container-Scanning.gitlab-ci.yml", target)


def alembic_head(versions: Path) -> str:
    """The one revision no other revision revises."""
    revisions: dict[str, str | None] = {}
    for path in versions.glob("*.py"):
        text = path.read_text()
        revision = re.search(r'^revision[^=]*=\s*"([^"]+)"', text, re.MULTILINE)
        down = re.search(r'^down_revision[^=]*=\s*(?:"([^"]+)"|None)', text, re.MULTILINE)
        if revision and down:
            revisions[revision.group(1)] = down.group(1)
    heads = set(revisions) - {down for down in revisions.values() if down}
    assert len(heads) == 1, f"expected one Alembic head, got {heads}"
    return heads.pop()


def probe_migration(down_revision: str) -> str:
    """A backward-compatible migration (a new table) for the second commit."""
    return f'''"""Pipeline check only: a new table, so SHA B is one migration ahead of SHA A.

Revision ID: pipeline_probe
Revises: {down_revision}
"""

import sqlalchemy as sa
from alembic import op

revision = "pipeline_probe"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("pipeline_probe", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("pipeline_probe")
'''


# --- gitlab-ci-local --------------------------------------------------------


@dataclass
class PipelineRun:
    returncode: int
    output: str
    seconds: float
    stdout: str = ""

    def job_passed(self, job: str) -> bool:
        """gitlab-ci-local's summary line: ` PASS  test     98% coverage`."""
        return re.search(rf"^\s*PASS\s+{re.escape(job)}(\s|$)", self.output, re.MULTILINE) is not None

    def job_failed(self, job: str) -> bool:
        return re.search(rf"^\s*FAIL\s+{re.escape(job)}(\s|$)", self.output, re.MULTILINE) is not None

    def coverage(self, job: str) -> str | None:
        """The percentage gitlab-ci-local took from the job log with the job's `coverage:` regex."""
        found = re.search(rf"^\s*PASS\s+{re.escape(job)}\s+(\S+)% coverage", self.output, re.MULTILINE)
        return found.group(1) if found else None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def gitlab_ci_local(
    *args: str,
    snapshot: Snapshot,
    variables: Mapping[str, str] | None = None,
    timeout: float = 600,
    log_name: str | None = None,
) -> PipelineRun:
    """Run gitlab-ci-local in the snapshot; it can reach nothing but loopback.

    The proxy variables point gitlab-ci-local's own downloads (remote includes)
    at a closed loopback port; jobs get the host's (empty) proxy settings.
    """
    assert GITLAB_CI_LOCAL, "CT_GITLAB_CI_LOCAL is not set: run proofs/pipeline/run.sh"
    home = WORK / "gcl-home"
    home.mkdir(parents=True, exist_ok=True)
    # Jobs run on this machine (services still as containers); nothing is pulled.
    cmd = ["node", GITLAB_CI_LOCAL, "--home", str(home), "--force-shell-executor", "--pull-policy", "if-not-present"]
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
    }
    env |= {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "FORCE_COLOR": "0"}
    # Shell jobs inherit this environment, as a shell runner's jobs inherit the
    # runner's: the tools venv (hadolint) at the end of PATH, and the host's
    # proxy settings (none here) instead of the guard. Not as CI variables:
    # those also reach the service containers (a host PATH would break them).
    env["PATH"] = f"{env.get('PATH', '/usr/bin:/bin')}{os.pathsep}{TOOLS_BIN}"
    job_variables = {key: os.environ.get(key, "") for key in ("HTTPS_PROXY", "HTTP_PROXY")} | dict(variables or {})
    for key, value in job_variables.items():
        cmd += ["--variable", f"{key}={value}"]
    env["GCL_IGNORE_PREDEFINED_VARS"] = ",".join(sorted(job_variables))
    started = time.monotonic()
    result = subprocess.run(
        [*cmd, *args], cwd=snapshot.path, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = _ANSI.sub("", result.stdout + result.stderr)
    if log_name:
        (WORK / "logs").mkdir(parents=True, exist_ok=True)
        (WORK / "logs" / f"{log_name}.log").write_text(output)
    return PipelineRun(result.returncode, output, time.monotonic() - started, _ANSI.sub("", result.stdout))


# --- services: published on loopback for shell-executor jobs ----------------


@dataclass
class ServiceForwarder:
    """Publishes the job's service containers on 127.0.0.1, before the job starts.

    gitlab-ci-local starts services on a network of their own and, per service,
    a wait-for-it container on that network. Our wait-for-it stand-in only
    finishes once /tmp/forwarded exists in it; this watcher, on that container's
    start, runs a socat container on the same network publishing ALIAS:PORT on
    127.0.0.1:<local port> (docker's userland proxy, as for any published port)
    and then creates the file. So the job, which runs on the host, reaches its
    services on loopback, and the yml's service definitions are what it uses.
    """

    ports: Mapping[str, int] = field(default_factory=lambda: dict(SERVICE_PORTS))
    log: list[str] = field(default_factory=list)
    _process: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> ServiceForwarder:
        self._process = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--filter", "event=start", "--format", "{{json .}}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process:
            self._process.terminate()
            self._process.wait(timeout=10)
        if self._thread:
            self._thread.join(timeout=10)
        if self._process and self._process.stdout:
            self._process.stdout.close()
        self.remove_forwards()

    def _watch(self) -> None:
        assert self._process
        assert self._process.stdout
        for line in self._process.stdout:
            try:
                event = json.loads(line)
                name = event.get("Actor", {}).get("Attributes", {}).get("name", "")
                if name.startswith("gcl-wait-for-it-"):
                    self._forward_for(name)
            except Exception as error:
                self.log.append(f"forwarder error: {error!r}")

    def _forward_for(self, wait_container: str) -> None:
        info = json.loads(docker("inspect", wait_container).stdout)[0]
        alias, _, port = info["Args"][0].rpartition(":")
        network = next(iter(info["NetworkSettings"]["Networks"]))
        if alias in self.ports:
            name = f"pl-forward-{alias}"
            docker("rm", "-f", name, check=False)
            docker(
                "run", "-d", "--name", name, "--label", "items-api-pipeline=forward",
                "--network", network, "-p", f"127.0.0.1:{self.ports[alias]}:{port}",
                FORWARD_IMAGE, f"TCP-LISTEN:{port},fork,reuseaddr", f"TCP:{alias}:{port}",
            )  # fmt: skip
            self.log.append(f"{alias}:{port} on 127.0.0.1:{self.ports[alias]} ({network})")
        docker("exec", wait_container, "touch", "/tmp/forwarded")  # noqa: S108 (inside the container)

    @staticmethod
    def remove_forwards() -> None:
        ids = docker("ps", "-aq", "--filter", "label=items-api-pipeline=forward").stdout.split()
        if ids:
            docker("rm", "-f", *ids, check=False)
        # gitlab-ci-local could not remove a job network a forwarder was still on.
        docker("network", "prune", "-f", check=False)


def loopback_url(url: str, alias: str) -> str:
    """The yml's service URL (host = the service alias) as the local run reaches it."""
    pattern = rf"@{re.escape(alias)}:\d+/|//{re.escape(alias)}:\d+/"
    assert re.search(pattern, url), f"{url} does not name the service {alias}"
    local = f"127.0.0.1:{SERVICE_PORTS[alias]}/"
    return re.sub(rf"(@|//){re.escape(alias)}:\d+/", rf"\g<1>{local}", url, count=1)


# --- the registry -----------------------------------------------------------


def registry_get(path: str, *, password: str | None = None, accept: str | None = None) -> tuple[int, Any]:
    """GET http://REGISTRY/v2/<path> with basic auth; (status, parsed JSON or None)."""
    url = f"http://{REGISTRY}/v2/{path}"
    assert url.startswith("http://127.0.0.1:"), url
    token = base64.b64encode(f"{REGISTRY_USER}:{password or REGISTRY_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, None


def registry_tags(repository: str = PROJECT_PATH) -> set[str]:
    status, body = registry_get(f"{repository}/tags/list")
    if status == 404:
        return set()
    assert status == 200, status
    return set(body.get("tags") or [])


def manifest_digest(tag: str, repository: str = PROJECT_PATH) -> str:
    """The config digest of a tag: equal digests mean the same image."""
    status, body = registry_get(
        f"{repository}/manifests/{tag}", accept="application/vnd.docker.distribution.manifest.v2+json"
    )
    assert status == 200, (tag, status)
    digest: str = body["config"]["digest"]
    return digest


# --- the stand-in VM --------------------------------------------------------


@dataclass
class Vm:
    """The production VM: a container with sshd on 127.0.0.1:VM_SSH_PORT driving the private engine."""

    root: Path
    deploy_path: Path = field(init=False)
    key: Path = field(init=False)
    known_hosts: str = field(init=False)

    def __post_init__(self) -> None:
        self.deploy_path = self.root / "srv" / "items-api"
        self.key = self.root / "client" / "id_ed25519"

    def start(self, env_file: Mapping[str, str]) -> None:
        keys = self.root / "run"
        keys.mkdir(parents=True, mode=0o700)
        self.key.parent.mkdir(parents=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ci-deploy", "-f", str(self.key)])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vm", "-f", str(keys / "ssh_host_ed25519_key")])
        shutil.copy(self.key.with_suffix(".pub"), keys / "authorized_keys")
        host_key = (keys / "ssh_host_ed25519_key.pub").read_text().split()
        self.known_hosts = f"[127.0.0.1]:{VM_SSH_PORT} {host_key[0]} {host_key[1]}"
        # The server's one-time set-up (docker/README.md): the directory and its .env.
        self.deploy_path.mkdir(parents=True)
        env = self.deploy_path / ".env"
        env.write_text("".join(f"{key}={value}\n" for key, value in env_file.items()))
        env.chmod(0o600)
        docker(
            "run", "-d", "--name", VM_CONTAINER, "--network", "host", "-e", f"SSH_PORT={VM_SSH_PORT}",
            "-v", f"{STATE_DIR / 'docker.sock'}:/var/run/docker.sock",
            "-v", f"{keys}:/run/vm:ro",
            "-v", f"{self.deploy_path}:{self.deploy_path}",
            VM_IMAGE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while self.ssh("true", check=False).returncode != 0:
            assert time.monotonic() < deadline, docker("logs", VM_CONTAINER, check=False).stderr[-2000:]
            time.sleep(0.5)

    def ssh(self, command: str, *, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        known = self.root / "client" / "known_hosts"
        known.write_text(self.known_hosts + "\n")
        return run(
            [
                "ssh", "-F", "/dev/null", "-i", str(self.key), "-p", str(VM_SSH_PORT),
                "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known}", "-o", "ConnectTimeout=5",
                "root@127.0.0.1", command,
            ],
            check=check,
            timeout=timeout,
        )  # fmt: skip

    def deploy_sh(self, arguments: str, *, env: str = "", check: bool = True) -> subprocess.CompletedProcess[str]:
        """scripts/deploy.sh on the VM, as the deploy job runs it (the copy in DEPLOY_PATH)."""
        return self.ssh(f"cd {self.deploy_path} && {env} bash ./deploy.sh {arguments}", check=check)

    def compose(self, arguments: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ssh(f"cd {self.deploy_path} && docker compose -f docker-compose.prod.yml {arguments}", check=check)


def running_image(service: str = "api", project: str = "items-api") -> str:
    """The image reference of the one running container of a compose service."""
    out = docker(
        "ps", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Image}}",
    ).stdout.split()  # fmt: skip
    assert len(out) == 1, f"expected one running {service} container, got {out}"
    return out[0]


def docker_login(user: str, password: str) -> None:
    """docker login to the loopback registry, the password on stdin."""
    result = subprocess.run(
        ["docker", "login", "--username", user, "--password-stdin", REGISTRY],
        input=password, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
