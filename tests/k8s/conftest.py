"""Fixtures: the pinned tools and each overlay rendered once per session."""

from __future__ import annotations

import pytest

from tests.k8s.support import K8S, OVERLAYS, Manifest, Tools, install_tools, render


@pytest.fixture(scope="session")
def k8s_tools() -> Tools:
    try:
        return install_tools()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def rendered(k8s_tools: Tools) -> dict[str, list[Manifest]]:
    return {overlay: render(k8s_tools.kubectl, K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(rendered: dict[str, list[Manifest]], overlay: str) -> list[Manifest]:
    return rendered[overlay]
