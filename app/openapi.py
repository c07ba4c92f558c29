"""OpenAPI 3.1 document built from the routes and the pydantic schemas they use.

Views declare their contract with :func:`operation`; nothing here is a hand-kept
copy of a schema. ``/docs`` serves Swagger UI from the app's own assets.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import wraps
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from flask_swagger_ui import get_swaggerui_blueprint
from pydantic import BaseModel

from . import __version__
from .api.parsing import json_body, query_args
from .errors import PROBLEM_JSON
from .schemas import Problem

REF_TEMPLATE = "#/components/schemas/{model}"
BEARER = "bearerAuth"
_PATH_PARAMETER = re.compile(r"<(?:(?P<converter>[a-z_]+):)?(?P<name>\w+)>")

_STRING = {"type": "string"}

F = TypeVar("F", bound=Callable[..., ResponseReturnValue])


@dataclass(frozen=True)
class Operation:
    summary: str
    responses: Mapping[int, type[BaseModel] | None]
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: Mapping[int, Mapping[str, str]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    parameters: tuple[Mapping[str, Any], ...] = ()


def operation(
    summary: str,
    *,
    responses: Mapping[int, type[BaseModel] | None],
    errors: tuple[int, ...] = (),
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    headers: Mapping[int, Mapping[str, str]] | None = None,
    tags: tuple[str, ...] = (),
    parameters: tuple[Mapping[str, Any], ...] = (),
) -> Callable[[F], F]:
    """Declare a view's contract once: documented in OpenAPI, and enforced.

    With ``body`` or ``query``, the view receives the validated ``body=`` / ``query=``
    object (a 4xx problem otherwise). Put it below ``require_scope``: authentication first.
    """

    def decorate(view: F) -> F:
        op = Operation(summary, responses, errors, body, query, headers or {}, tags, parameters)
        if body is None and query is None:
            view.openapi = op  # type: ignore[attr-defined]
            return view

        @wraps(view)
        def validated(*args: Any, **kwargs: Any) -> ResponseReturnValue:
            if query is not None:
                kwargs["query"] = query_args(query)
            if body is not None:
                kwargs["body"] = json_body(body)
            return view(*args, **kwargs)

        validated.openapi = op  # type: ignore[attr-defined]
        return validated  # type: ignore[return-value]

    return decorate


class _SpecBuilder:
    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def ref(self, model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)  # type: ignore[arg-type]
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema
        return {"$ref": REF_TEMPLATE.format(model=model.__name__)}

    def query_parameters(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode="validation")
        required = set(schema.get("required", []))
        parameters = []
        for name, prop in schema["properties"].items():
            description = prop.pop("description", None)
            # A query parameter is absent, never null: drop pydantic's "or null" branch.
            variants = [v for v in prop.pop("anyOf", []) if v != {"type": "null"}]
            if variants:
                prop.update(variants[0] if len(variants) == 1 else {"anyOf": variants})
                if prop.get("default", ...) is None:
                    del prop["default"]
            parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if description:
                parameter["description"] = description
            parameters.append(parameter)
        return parameters

    def operation(self, op: Operation, path_parameters: list[dict[str, Any]], scope: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"summary": op.summary, "responses": {}}
        errors = set(op.errors)
        if scope is not None:
            # Reads are public unless READS_REQUIRE_AUTH; writes always need a write token.
            spec["security"] = [{BEARER: []}] if scope == "write" else [{}, {BEARER: []}]
            errors |= {401, 403, 429}
        if op.tags:
            spec["tags"] = list(op.tags)
        parameters = list(path_parameters)
        if op.query is not None:
            parameters += self.query_parameters(op.query)
        parameters += [dict(parameter) for parameter in op.parameters]
        if parameters:
            spec["parameters"] = parameters
        if op.body is not None:
            spec["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": self.ref(op.body, mode="validation")}},
            }
        for status, model in op.responses.items():
            response: dict[str, Any] = {"description": HTTPStatus(status).phrase}
            if model is not None:
                response["content"] = {"application/json": {"schema": self.ref(model)}}
            if status in op.headers:
                response["headers"] = {
                    name: {"description": text, "schema": {"type": "string"}}
                    for name, text in op.headers[status].items()
                }
            spec["responses"][str(status)] = response
        problem_content = {PROBLEM_JSON: {"schema": self.ref(Problem)}}
        # A query string over MAX_QUERY_STRING_BYTES; a request line over 8190 bytes is
        # refused by the HTTP server itself, before the app (and this contract) applies.
        for status in sorted({*errors, 414, 500, 503}):
            response = {"description": HTTPStatus(status).phrase, "content": problem_content}
            if status in (429, 503):
                response["headers"] = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "string"}}}
            elif status in (401, 403):
                response["headers"] = {
                    "WWW-Authenticate": {"description": "Bearer challenge.", "schema": {"type": "string"}}
                }
            spec["responses"][str(status)] = response
        return spec


def build_spec(app: Flask) -> dict[str, Any]:
    builder = _SpecBuilder()
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        view = app.view_functions[rule.endpoint]
        op: Operation | None = getattr(view, "openapi", None)
        if op is None:
            continue
        path_parameters = [
            {
                "name": match["name"],
                "in": "path",
                "required": True,
                # A converter may describe its values (app/api/items.py: ItemIdConverter).
                "schema": dict(getattr(app.url_map.converters.get(match["converter"]), "openapi_schema", _STRING)),
            }
            for match in _PATH_PARAMETER.finditer(rule.rule)
        ]
        path = _PATH_PARAMETER.sub(r"{\g<name>}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            scope = getattr(view, "required_scope", None)
            paths.setdefault(path, {})[method.lower()] = builder.operation(op, path_parameters, scope)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Items API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(builder.schemas.items())),
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `flask --app app.main:create_app tokens create`.",
                }
            },
        },
    }


docs = Blueprint("openapi", __name__)


@docs.get("/openapi.json")
def openapi_document() -> ResponseReturnValue:
    spec = current_app.extensions.get("openapi_spec")
    if spec is None:
        spec = current_app.extensions["openapi_spec"] = build_spec(current_app)
    return jsonify(spec)


def init_app(app: Flask) -> None:
    app.register_blueprint(docs)
    app.register_blueprint(
        get_swaggerui_blueprint("/docs", "/openapi.json", config={"app_name": "Items API"}),
        url_prefix="/docs",
    )
