"""Render the kustomize overlays with the tools scripts/check-k8s.sh pins, and pick objects."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("staging", "production")
CHECK_SCRIPT = ROOT / "scripts" / "check-k8s.sh"

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    kubectl: str
    validator: str
    versions: tuple[str, ...]


def install_tools() -> Tools:
    """Locate kubectl and install the pinned validator (cached), through the CI script."""
    done = subprocess.run(["bash", str(CHECK_SCRIPT), "--tools"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scripts/check-k8s.sh --tools failed:\n{done.stdout}{done.stderr}")
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return Tools(found["kubectl"], found["validator"], tuple(found["versions"].split()))


def render(kubectl: str, directory: Path) -> list[Manifest]:
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def pod_spec(workload: Manifest) -> Manifest:
    job = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    spec: Manifest = job["template"]["spec"]
    return spec


def config_data(objects: list[Manifest]) -> dict[str, str]:
    """The generated ConfigMap (items-api-config-<hash>) the pods read their settings from."""
    maps = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("items-api-config-")]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data
