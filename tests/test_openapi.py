"""The OpenAPI document is generated from the code, complete, and valid; /docs works offline."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate

from app.schemas import TITLE_PATTERN, ItemIn, ItemOut, ItemPatch

# Not part of the JSON API: the document itself, its UI, and Prometheus' text format.
UNDOCUMENTED_ENDPOINTS = {"static", "openapi.openapi_document", "swagger_ui.show", "metrics.scrape"}


@pytest.fixture
def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def test_the_document_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_api_route_and_method_is_documented(app: Flask, spec: dict[str, Any]) -> None:
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert method.lower() in spec["paths"].get(path, {}), f"{method} {path} is not documented"


def test_request_and_response_schemas_come_from_the_validating_models(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]

    assert schemas["ItemIn"]["properties"].keys() == ItemIn.model_fields.keys()
    assert schemas["ItemIn"]["additionalProperties"] is False
    assert schemas["ItemIn"]["properties"]["title"]["pattern"] == TITLE_PATTERN
    assert schemas["ItemPatch"]["properties"].keys() == ItemPatch.model_fields.keys()
    assert set(schemas["ItemOut"]["required"]) == set(ItemOut.model_fields)
    post = spec["paths"]["/items"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ItemIn"}


def test_errors_are_documented_as_problem_json(spec: dict[str, Any]) -> None:
    post = spec["paths"]["/items"]["post"]["responses"]

    assert {"201", "400", "413", "415", "422", "500", "503"} <= post.keys()
    assert "application/problem+json" in post["422"]["content"]
    assert "Retry-After" in post["503"]["headers"]


def test_query_parameters_are_documented_without_null(spec: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in spec["paths"]["/items"]["get"]["parameters"]}

    assert parameters["limit"]["schema"]["maximum"] == 100
    assert parameters["cursor"]["schema"]["type"] == "string"


def test_docs_page_loads_its_assets_from_the_app_itself(client: FlaskClient) -> None:
    page = client.get("/docs/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)

    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/docs/"), f"{asset} is not served by the app"
        with client.get(asset) as response:
            assert response.status_code == 200
    assert "/openapi.json" in html
