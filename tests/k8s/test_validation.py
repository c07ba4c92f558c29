"""Every rendered object is a valid Kubernetes object, and deploy.sh renders what it applies."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.k8s.support import CHECK_SCRIPT, K8S, OVERLAYS, Manifest, Tools, one, pod_spec

DEPLOY = K8S / "deploy.sh"


def test_check_script_validates_every_object_of_every_overlay_strictly(
    k8s_tools: Tools, rendered: dict[str, list[Manifest]]
) -> None:
    done = subprocess.run(["bash", str(CHECK_SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = [line for line in done.stdout.splitlines() if " passed for resource " in line]
    # Every object of every overlay plus the Secret template, once per pinned version.
    objects = sum(len(rendered[overlay]) for overlay in OVERLAYS)
    assert len(passed) == (objects + 1) * len(k8s_tools.versions)
    assert "all objects valid" in done.stderr


def test_validator_rejects_an_unknown_field(k8s_tools: Tools, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "x"},
                "spec": {"ports": [{"port": 8000, "targetPortt": 8000}]},
            }
        )
    )
    done = subprocess.run(
        [k8s_tools.validator, "--strict", "-k", k8s_tools.versions[0], str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "targetPortt" in done.stdout + done.stderr


def test_deploy_script_renders_the_pipeline_image_for_the_given_sha(k8s_tools: Tools) -> None:
    image = "registry.gitlab.com/acme/project-01-container-api"
    done = subprocess.run(
        ["bash", str(DEPLOY), "production", "sha-0123abcd", "--render"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": f"{Path(k8s_tools.kubectl).parent}:/usr/bin:/bin", "IMAGE": image},
    )
    assert done.returncode == 0, done.stderr
    objects = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    for kind in ("Deployment", "Job"):
        assert pod_spec(one(objects, kind))["containers"][0]["image"] == f"{image}:sha-0123abcd"


def test_deploy_script_refuses_a_moving_tag() -> None:
    done = subprocess.run(["bash", str(DEPLOY), "production", "latest"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert "refusing tag 'latest'" in done.stderr
