"""RFC 9457 problem details: the one error format of every API response."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://whisperstream.dev/problems/"


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass
class ProblemError(Exception):
    """Raised by handlers; the error middleware turns it into a problem response."""

    status: int
    title: str
    detail: str
    slug: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"


def validation_error(field_name: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Validation failed",
        f"{field_name}: {message}",
        slug="validation",
        errors=[FieldError(field_name, message)],
    )


def not_found(detail: str) -> ProblemError:
    return ProblemError(404, "Not Found", detail, slug="not-found")


def problem_response(
    request: web.Request,
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + slug if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    if extra:
        body.update(extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode("utf-8"),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def from_problem(request: web.Request, problem: ProblemError) -> web.Response:
    return problem_response(
        request,
        problem.status,
        problem.title,
        problem.detail,
        slug=problem.slug,
        errors=problem.errors,
        headers=problem.headers,
        extra=problem.extra,
    )
