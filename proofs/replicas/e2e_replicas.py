"""Replica proof: the production stack with 3 api replicas behind Caddy, under load.

Run it with `bash proofs/replicas/run.sh` (`make replicas-test`), which starts a private
dockerd with the container check's stand-in images. In file order: the Caddyfile means
the same to Caddy 2.6 and the pinned release; the stack comes up with
`--scale api=3`; (a) load reaches every replica; (b) `docker stop` of one replica
mid-load loses no acknowledged write and errors stay inside a short window; (c) the
replica serves again after `docker start`. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_container import issue_write_token
from harness import DOCKER_DIR, Compose, docker, inspect, record, run
from load import Load, Outcome, errors_of
from report import Report
from stack import (
    DRAIN_S,
    HTTP_PORT,
    REPLICAS,
    Replica,
    psql,
    replicas,
    replicas_env,
    served_by,
    server_stop,
    wait_for_log,
)

PROD_FILE = DOCKER_DIR / "docker-compose.prod.yml"
CADDYFILE = DOCKER_DIR / "Caddyfile"
PINNED_CADDY = os.environ.get("CT_CADDY_PINNED_BIN", "")
STEADY_S = 8.0  # phase (a)
BEFORE_STOP_S = 3.0  # phase (b): load before `docker stop`, and after the replica has exited
AFTER_STOP_S = 4.0
AFTER_REJOIN_S = 4.0  # phase (c): load after the restarted replica served its first request
# How long after a replica is gone the proxy may still pick its address: the DNS
# refresh (1 s) and the dial timeout (1 s) of docker/Caddyfile, plus a request.
GONE_S = 3.0

REPORT = Report()


# --- the proxy configuration, without an engine ------------------------------


def adapt(command: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """The reverse_proxy handler of the site block, from `caddy adapt`."""
    config = json.loads(run(command, env=env).stdout)
    site = next(s for s in config["apps"]["http"]["servers"].values() if ":80" in s["listen"])
    handlers = [h for route in site["routes"] for h in _handlers(route)]
    return next(h for h in handlers if h["handler"] == "reverse_proxy")


def _handlers(route: dict[str, object]) -> Iterator[dict[str, object]]:
    for handler in route.get("handle", []):  # type: ignore[attr-defined]
        yield handler
        for sub in handler.get("routes", []):
            yield from _handlers(sub)


def test_the_pinned_caddy_reads_the_caddyfile_as_intended() -> None:
    env = {"SITE_ADDRESS": ":80", "MAX_BODY_SIZE": "1MB"}
    pinned = adapt([PINNED_CADDY, "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"], env)
    # The DNS name of the containers in rotation comes from a file scripts/deploy.sh
    # switches ("api", every replica, between deploys); static "api" is the fallback.
    assert pinned["dynamic_upstreams"] == {
        "source": "a",
        "name": "{file./etc/caddy/rotation/upstream}",
        "port": "8000",
        "refresh": 1_000_000_000,
    }
    assert pinned["upstreams"] == [{"dial": "api:8000"}]
    assert (CADDYFILE.parent / "rotation" / "upstream").read_text() == "api\n"
    balancing = pinned["load_balancing"]
    assert balancing["try_duration"] > 0  # type: ignore[index,operator]
    # After a failed round trip only safe methods are replayed (after a failed connect, any).
    assert balancing["retry_match"] == [{"method": ["GET", "HEAD"]}]  # type: ignore[index]
    # Caddy does not run active health checks on dynamic upstreams: none may pretend to.
    assert "active" not in pinned.get("health_checks", {})  # type: ignore[operator]


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Compose:
    path: Path = tmp_path_factory.mktemp("replicas") / "prod.env"
    path.write_text("".join(f"{key}={value}\n" for key, value in replicas_env().items()))
    path.chmod(0o600)
    return Compose(PROD_FILE, env_file=path, env={"ENV_FILE": str(path)})


def test_api_service_scales_without_fixed_names_or_ports(compose: Compose) -> None:
    default = Compose(compose.file, compose.env_file, {**(compose.env or {}), "EXPECTED_REPLICAS": ""})
    api = json.loads(default("config", "--format", "json").stdout)["services"]["api"]
    assert "container_name" not in api
    assert not api.get("ports")
    assert api["deploy"]["replicas"] == 1, "one replica unless EXPECTED_REPLICAS or --scale says otherwise"


# --- the stack -----------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(compose: Compose) -> Iterator[Compose]:
    env = replicas_env()
    started = time.monotonic()
    # --network host: the private engine has no default bridge for RUN steps.
    docker(
        "build", "--network", "host", "-t", f"{env['IMAGE']}:{env['IMAGE_TAG']}", str(DOCKER_DIR.parent), timeout=420
    )
    record("image build", f"{time.monotonic() - started:.1f} s")
    try:
        took = compose.timed_up("--scale", f"api={REPLICAS}")
        record(f"production stack up -d --wait --scale api={REPLICAS}", f"{took:.1f} s")
        caddy = compose("exec", "-T", "proxy", "caddy", "version").stdout.split()[0]
        REPORT.heading = (
            f"Replica proof: {REPLICAS} api replicas x {env['WEB_CONCURRENCY']} server workers behind Caddy "
            f"{caddy}; 3 reader + 3 writer threads on 127.0.0.1:{HTTP_PORT}"
        )
        yield compose
    finally:
        compose.down()
        REPORT.write()


@pytest.fixture(scope="module")
def token(stack: Compose) -> str:
    return issue_write_token(stack, "replica-proof")


@pytest.fixture(scope="module")
def loads() -> dict[str, Load]:
    """Each phase's load, for the final database check."""
    return {}


def share(outcomes: list[Outcome], owners: dict[str, list[str]], reps: list[Replica]) -> dict[str, int]:
    served = {r.name: 0 for r in reps}
    for outcome in outcomes:
        for name in owners.get(outcome.request_id, []):
            served[name] += 1
    return served


class TestReplicas:
    def test_three_replicas_are_healthy_behind_the_caddy_under_test(self, stack: Compose) -> None:
        reps = replicas(stack)
        assert len(reps) == REPLICAS
        assert all(inspect(r.id)["State"]["Health"]["Status"] == "healthy" for r in reps)
        version = stack("exec", "-T", "proxy", "caddy", "version").stdout
        # The release docker-compose.prod.yml pins, e.g. caddy:2.11.7-alpine -> v2.11.7.
        pinned = inspect(stack.container("proxy"))["Config"]["Image"].split(":")[1].split("-")[0]
        assert version.startswith(f"v{pinned} "), version

    def test_a_load_through_the_proxy_reaches_every_replica(
        self, stack: Compose, token: str, loads: dict[str, Load]
    ) -> None:
        reps = replicas(stack)
        with Load(HTTP_PORT, token, "a") as load:
            time.sleep(STEADY_S)
        loads["a"] = load
        ok = [o for o in load.outcomes if o.ok]
        owners = served_by(reps)
        served = share(ok, owners, reps)
        errors = errors_of(load.outcomes)
        REPORT.phase(f"(a) steady load, {STEADY_S:.0f} s", load.outcomes, errors, served)
        assert errors.count == 0, errors
        assert all(o.echoed for o in ok), "a response lost its X-Request-ID"
        unowned = [o.request_id for o in ok if o.request_id not in owners]
        assert not unowned, f"2xx responses no replica logged: {unowned[:5]}"
        # Round robin over three: each gets about a third; a quarter leaves room for noise.
        assert all(n >= len(ok) / (REPLICAS + 1) for n in served.values()), served

    def test_b_stopping_a_replica_mid_load_loses_no_acknowledged_write(
        self, stack: Compose, token: str, loads: dict[str, Load]
    ) -> None:
        reps = replicas(stack)
        victim = reps[1]
        with Load(HTTP_PORT, token, "b") as load:
            time.sleep(BEFORE_STOP_S)
            sigterm, sigterm_epoch = time.monotonic(), time.time()
            docker("stop", victim.id, timeout=60)  # no -t: the compose stop_grace_period applies
            exited = time.monotonic()
            time.sleep(AFTER_STOP_S)
        loads["b"] = load
        state = inspect(victim.id)["State"]
        owners = served_by(reps)
        errors = errors_of(load.outcomes)
        after_sigterm = [
            o for o in load.outcomes if o.ok and o.sent >= sigterm and victim.name in owners.get(o.request_id, [])
        ]
        ok = [o for o in load.outcomes if o.ok]
        REPORT.phase(f"(b) docker stop {victim.name} mid-load", load.outcomes, errors, share(ok, owners, reps))
        REPORT.stop(victim.name, sigterm, exited, errors, len(after_sigterm), load)
        timeline = server_stop(victim)
        if timeline is not None:
            REPORT.server(timeline[0] - sigterm_epoch, timeline[1] - sigterm_epoch)
        assert state["ExitCode"] == 0, state
        assert not state["OOMKilled"], state
        assert exited - sigterm >= DRAIN_S, "the replica did not drain before stopping"
        assert exited - sigterm < inspect(victim.id)["Config"]["StopTimeout"], "SIGKILLed: no graceful stop"
        assert not load.gave_up, f"creates never acknowledged: {load.gave_up[:5]}"
        # The proxy retries reads; a create it cannot resend is retried by its client.
        assert "GET" not in errors.by_method, errors
        if errors.count:
            assert errors.first_sent is not None
            assert errors.last_done is not None
            # Nothing fails while the replica drains (it still serves), only once
            # the server closes its socket, and not long after the replica is gone.
            assert errors.first_sent >= sigterm + DRAIN_S - 0.5, f"an error while draining: {errors}"
            assert errors.last_done <= exited + GONE_S, f"errors went on after the replica was gone: {errors}"

    def test_c_the_stopped_replica_rejoins(self, stack: Compose, token: str, loads: dict[str, Load]) -> None:
        reps = replicas(stack)
        victim = reps[1]
        with Load(HTTP_PORT, token, "c") as load:
            time.sleep(1.0)
            started = time.monotonic()
            docker("start", victim.id)
            first = wait_for_log(victim, "rp-c-", 60)
            assert first is not None, f"{victim.name} served nothing within 60 s of docker start"
            time.sleep(AFTER_REJOIN_S)
        loads["c"] = load
        owners = served_by(reps)
        errors = errors_of(load.outcomes)
        after = [o for o in load.outcomes if o.ok and o.sent >= first]
        served_after = share(after, owners, reps)
        ok = [o for o in load.outcomes if o.ok]
        REPORT.phase(f"(c) docker start {victim.name}", load.outcomes, errors, share(ok, owners, reps))
        REPORT.rejoin(victim.name, started, first, errors, served_after)
        assert served_after[victim.name] >= len(after) / (REPLICAS + 2), served_after
        assert not load.gave_up, f"creates never acknowledged: {load.gave_up[:5]}"
        assert "GET" not in errors.by_method, errors
        if errors.count:
            # Only while the replica is in Docker's DNS answer but not listening yet.
            assert errors.first_sent is not None
            assert errors.last_done is not None
            assert errors.first_sent >= started, errors
            assert errors.last_done <= first + 1.0, f"errors after the replica served: {errors}"

    def test_every_acknowledged_write_exists_exactly_once(self, stack: Compose, loads: dict[str, Load]) -> None:
        acked = {key: item for load in loads.values() for key, item in load.acked.items()}
        assert acked, "no write was acknowledged"
        rows = psql(stack, "SELECT title, count(*), min(id) FROM items WHERE title LIKE 'rp-%' GROUP BY title")
        stored = {title: (int(count), int(first)) for title, count, first in rows}
        duplicated = {title: n for title, (n, _) in stored.items() if n != 1}
        missing = [key for key in acked if key not in stored]
        wrong_id = [key for key, item in acked.items() if key in stored and stored[key][1] != item]
        REPORT.writes(len(acked), len(stored), len(duplicated), len(missing))
        assert not missing, f"acknowledged writes missing from the database: {missing[:5]}"
        assert not duplicated, f"writes stored more than once: {list(duplicated.items())[:5]}"
        assert not wrong_id, f"stored under another id than the 201 said: {wrong_id[:5]}"


def test_nothing_was_pulled() -> None:
    lines = docker("images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}").stdout.splitlines()
    pulled = [line for line in lines if not line.endswith("<none>")]
    assert not pulled, pulled
    assert docker("info", "--format", "{{.HTTPProxy}}").stdout.strip() == "http://127.0.0.1:9"
