"""The policy facts of every rendered overlay: probes, non-root, limits, tags, budgets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.config import load_settings
from tests.k8s.support import K8S, Manifest, config_data, one, pod_spec

APP_UID = 10001  # the image's fixed non-root user (Dockerfile)
API_PORT = 8000
IMMUTABLE_TAG = re.compile(r"sha-(?:[0-9a-f]{7,40}|REPLACE_ME)")
SECRET_KEYS = {"DATABASE_URL", "SECRET_KEY", "REDIS_URL"}
# Stand-ins for the Secret's values, so the rendered config can be loaded as production settings.
PRODUCTION_SECRETS = {
    "DATABASE_URL": "postgresql+psycopg://items:pw@db.example:5432/items?sslmode=verify-full",
    "SECRET_KEY": "x" * 48,
    "REDIS_URL": "rediss://redis.example:6379/0",
}
NAMESPACES = {"staging": "items-api-staging", "production": "items-api"}


def _workloads(objects: list[Manifest]) -> list[Manifest]:
    return [
        one(objects, "Deployment", "items-api"),
        one(objects, "Job", "items-api-migrate"),
        one(objects, "CronJob", "items-api-idempotency-prune"),
    ]


def _api(objects: list[Manifest]) -> Manifest:
    container: Manifest = pod_spec(one(objects, "Deployment", "items-api"))["containers"][0]
    return container


def _labels_match(selector: Manifest, labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def test_overlay_renders_every_kind_in_its_own_namespace(objects: list[Manifest], overlay: str) -> None:
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Job",
            "CronJob",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "NetworkPolicy",
            "Ingress",
        ]
    )
    namespace = one(objects, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACES[overlay]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {NAMESPACES[overlay]}


def test_api_has_liveness_readiness_and_startup_probes_on_the_app_port(objects: list[Manifest]) -> None:
    api = _api(objects)
    assert api["ports"] == [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"}]
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert api["startupProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob"])
def test_pods_run_as_the_image_user_without_privileges(objects: list[Manifest], kind: str) -> None:
    workload = next(w for w in _workloads(objects) if w["kind"] == kind)
    spec = pod_spec(workload)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == APP_UID
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("kind", ["Deployment", "Job", "CronJob"])
def test_writable_paths_are_empty_dirs(objects: list[Manifest], kind: str) -> None:
    spec = pod_spec(next(w for w in _workloads(objects) if w["kind"] == kind))
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
    metrics_dir = config_data(objects)["PROMETHEUS_MULTIPROC_DIR"]
    assert mounts["/tmp"] in empty_dirs  # noqa: S108 (a mount path in the manifest, not a file we write)
    assert mounts[metrics_dir] in empty_dirs


def test_every_container_has_requests_and_limits(objects: list[Manifest]) -> None:
    for workload in _workloads(objects):
        for container in pod_spec(workload)["containers"]:
            for bound in ("requests", "limits"):
                assert set(container["resources"][bound]) == {"cpu", "memory"}, (workload["kind"], bound)


def test_images_carry_an_immutable_tag_never_latest(objects: list[Manifest]) -> None:
    for workload in _workloads(objects):
        image = pod_spec(workload)["containers"][0]["image"]
        repository, _, tag = image.rpartition(":")
        assert repository.startswith("registry.gitlab.com/")
        assert repository.endswith("/project-01-container-api")
        assert tag != "latest"
        assert IMMUTABLE_TAG.fullmatch(tag), image


def test_the_hpa_owns_the_replica_count_and_the_pdb_leaves_room_to_drain(objects: list[Manifest]) -> None:
    deployment = one(objects, "Deployment", "items-api")
    hpa = one(objects, "HorizontalPodAutoscaler", "items-api")
    pdb = one(objects, "PodDisruptionBudget", "items-api")
    assert "replicas" not in deployment["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "items-api"}
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_termination_grace_covers_the_prestop_pause_and_the_servers_drain(objects: list[Manifest]) -> None:
    spec = pod_spec(one(objects, "Deployment", "items-api"))
    pause = spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    settings = load_settings(environ={**config_data(objects), **PRODUCTION_SECRETS})
    assert pause >= 5
    assert spec["terminationGracePeriodSeconds"] > pause + settings.shutdown_drain_seconds + settings.graceful_timeout


def test_selectors_reach_the_api_pods(objects: list[Manifest]) -> None:
    labels = one(objects, "Deployment", "items-api")["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service", "items-api")
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert _labels_match(one(objects, "PodDisruptionBudget")["spec"]["selector"], labels)
    assert _labels_match(one(objects, "NetworkPolicy", "items-api")["spec"]["podSelector"], labels)
    job_labels = one(objects, "Job")["spec"]["template"]["metadata"]["labels"]
    assert not all(job_labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_only_the_ingress_controller_and_prometheus_reach_the_api_port(objects: list[Manifest]) -> None:
    deny = one(objects, "NetworkPolicy", "default-deny-ingress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    policy = one(objects, "NetworkPolicy", "items-api")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    sources = []
    for rule in policy["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": API_PORT}]
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            sources.append(peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"])
    assert sorted(sources) == ["ingress-nginx", "monitoring"]


def test_egress_is_denied_except_dns_postgresql_and_redis(objects: list[Manifest]) -> None:
    deny = one(objects, "NetworkPolicy", "default-deny-egress")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Egress"]}
    policy = one(objects, "NetworkPolicy", "items-api-egress")
    assert "app.kubernetes.io/component" not in policy["metadata"]["labels"]  # deploy.sh applies it before the Job
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Egress"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "items-api"}}
    for workload in _workloads(objects):
        labels = workload["spec"].get("jobTemplate", workload)["spec"]["template"]["metadata"]["labels"]
        assert _labels_match(spec["podSelector"], labels), workload["kind"]
    dns, databases = spec["egress"]
    assert {(p["protocol"], p["port"]) for p in dns["ports"]} == {("UDP", 53), ("TCP", 53)}
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    assert {(p["protocol"], p["port"]) for p in databases["ports"]} == {("TCP", 5432), ("TCP", 6379)}
    blocks = [peer["ipBlock"] for peer in databases["to"] if "ipBlock" in peer]
    v4 = next(block for block in blocks if block["cidr"] == "0.0.0.0/0")
    assert "169.254.0.0/16" in v4["except"], "the cloud metadata endpoint must stay unreachable"


def test_the_migration_job_runs_flask_db_upgrade_before_the_rollout(objects: list[Manifest]) -> None:
    job = one(objects, "Job", "items-api-migrate")
    assert job["metadata"]["annotations"]["argocd.argoproj.io/hook"] == "PreSync"
    assert pod_spec(job)["restartPolicy"] == "Never"
    assert pod_spec(job)["containers"][0]["command"] == ["flask", "--app", "app.main:create_app", "db", "upgrade"]
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "migration"


def test_a_cronjob_prunes_idempotency_keys_hourly_without_overlap(objects: list[Manifest]) -> None:
    cronjob = one(objects, "CronJob", "items-api-idempotency-prune")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    minute, hour, *_ = cronjob["spec"]["schedule"].split()
    assert minute.isdigit()
    assert hour == "*"
    spec = pod_spec(cronjob)
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["command"] == ["flask", "--app", "app.main:create_app", "idempotency", "prune"]


def test_pods_read_the_generated_config_and_the_secret(objects: list[Manifest]) -> None:
    config_name = next(o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap")
    for workload in _workloads(objects):
        sources = pod_spec(workload)["containers"][0]["envFrom"]
        assert sources == [{"configMapRef": {"name": config_name}}, {"secretRef": {"name": "items-api"}}]
    assert not [o for o in objects if o["kind"] == "Secret"], "a rendered Secret would overwrite the real one"


def test_the_secret_template_names_every_secret_and_holds_no_real_value() -> None:
    template = yaml.safe_load((K8S / "base" / "secret.template.yaml").read_text())
    assert template["metadata"]["name"] == "items-api"
    assert set(template["stringData"]) == SECRET_KEYS
    assert template["stringData"]["SECRET_KEY"] == "REPLACE_ME"
    assert "PASSWORD@" in template["stringData"]["DATABASE_URL"]
    assert "sslmode=verify-full" in template["stringData"]["DATABASE_URL"]
    assert "secret.template.yaml" not in (K8S / "base" / "kustomization.yaml").read_text().split("resources:")[1]


def test_the_app_accepts_the_config_as_production_settings(objects: list[Manifest], tmp_path: Path) -> None:
    environ = {**config_data(objects), **PRODUCTION_SECRETS}
    settings = load_settings(instance_path=tmp_path, environ=environ)
    assert settings.is_production
    assert settings.port == API_PORT
    assert str(settings.metrics_dir) == environ["PROMETHEUS_MULTIPROC_DIR"]


def test_the_connection_budget_fits_the_database(objects: list[Manifest]) -> None:
    """(HPA max + surge) x workers x (pool + overflow) <= max_connections - reserve."""
    config = config_data(objects)
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    surge = one(objects, "Deployment")["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    most_pods = hpa["maxReplicas"] + surge
    per_pod = int(config["WEB_CONCURRENCY"]) * (int(config["DB_POOL_SIZE"]) + int(config["DB_MAX_OVERFLOW"]))
    assert int(config["EXPECTED_REPLICAS"]) >= most_pods
    assert int(config["EXPECTED_REPLICAS"]) * per_pod <= int(config["DB_MAX_CONNECTIONS"]) - int(
        config["DB_RESERVED_CONNECTIONS"]
    )


def test_the_ingress_routes_the_public_paths_but_not_metrics_or_readiness(objects: list[Manifest]) -> None:
    rule = one(objects, "Ingress")["spec"]["rules"][0]
    paths = {p["path"]: p["pathType"] for p in rule["http"]["paths"]}
    assert paths == {"/items": "Prefix", "/health": "Exact", "/openapi.json": "Exact", "/docs": "Prefix"}
    backends = [p["backend"]["service"] for p in rule["http"]["paths"]]
    assert all(backend == {"name": "items-api", "port": {"name": "http"}} for backend in backends)
