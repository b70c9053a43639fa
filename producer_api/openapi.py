"""The route table: every operation is declared once, with its schemas, next to its
handler; the router and the OpenAPI document are both built from it, so they agree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = dict[str, Any]

PROBLEM_SCHEMA: Schema = {"$ref": "#/components/schemas/Problem"}


class Access(StrEnum):
    PUBLIC = "public"
    KEY = "key"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    location: str  # "query", "path" or "header"
    schema: Schema
    description: str = ""
    required: bool = False


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    access: Access
    params: tuple[Param, ...] = ()
    request_body: Mapping[str, Schema] | None = None
    """Content type -> schema."""
    responses: Mapping[int, tuple[str, Mapping[str, Schema] | None]] = field(default_factory=dict)
    """Status -> (description, content type -> schema, or None for no body)."""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def canonical_path(path: str) -> str:
    return path.rstrip("/") or "/"


class OperationTable:
    def __init__(self) -> None:
        self._operations: list[Operation] = []
        self._access: dict[tuple[str, str], Access] = {}

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(self._operations)

    def add(self, *operations: Operation) -> None:
        for op in operations:
            key = (op.method, canonical_path(op.path))
            if key in self._access:
                raise ValueError(f"{op.method} {op.path} declared twice")
            self._operations.append(op)
            self._access[key] = op.access

    def access_for(self, method: str, path_template: str) -> Access | None:
        key = (method if method != "HEAD" else "GET", canonical_path(path_template))
        return self._access.get(key)

    def register(self, router: web.UrlDispatcher) -> None:
        """Add every operation with and without a trailing slash."""
        for op in self._operations:
            base = canonical_path(op.path)
            router.add_route(op.method, base, op.handler)
            if base != "/":
                router.add_route(op.method, base + "/", op.handler)

    def spec(self, title: str, version: str) -> dict[str, Any]:
        paths: dict[str, dict[str, Any]] = {}
        for op in self._operations:
            paths.setdefault(canonical_path(op.path), {})[op.method.lower()] = _operation(op)
        return {
            "openapi": "3.1.0",
            "info": {
                "title": title,
                "version": version,
                "description": "Every path also answers with a trailing slash.",
            },
            "paths": paths,
            "components": {
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                },
                "schemas": {"Problem": _PROBLEM},
            },
        }


_PROBLEM: Schema = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "x-access": op.access.value,
    }
    if op.params:
        doc["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required or p.location == "path",
                "description": p.description,
                "schema": p.schema,
            }
            for p in op.params
        ]
    if op.request_body is not None:
        doc["requestBody"] = {
            "required": True,
            "content": {ctype: {"schema": schema} for ctype, schema in op.request_body.items()},
        }
    responses: dict[str, Any] = {}
    for status, (description, content) in sorted(op.responses.items()):
        entry: dict[str, Any] = {"description": description}
        if content is not None:
            entry["content"] = {ctype: {"schema": s} for ctype, s in content.items()}
        responses[str(status)] = entry
    problems = {401: "Missing or unknown API key", 429: "Rate limit exceeded"}
    if op.access is Access.ADMIN:
        problems[403] = "Not an admin key"
    if op.access is not Access.PUBLIC:
        for status, description in problems.items():
            responses.setdefault(
                str(status),
                {
                    "description": description,
                    "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}},
                },
            )
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    doc["responses"] = responses
    return doc


def problem(description: str) -> tuple[str, Mapping[str, Schema]]:
    return description, {"application/problem+json": PROBLEM_SCHEMA}


def json_body(description: str, schema: Schema) -> tuple[str, Mapping[str, Schema]]:
    return description, {"application/json": schema}
