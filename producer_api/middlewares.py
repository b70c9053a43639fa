"""Request middlewares: metrics, problem+json errors, authentication, rate limiting."""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from producer_api.appkeys import (
    AUTH_FAILURE_LIMITER_KEY,
    LIMITER_KEY,
    METRICS_KEY,
    OPERATIONS_KEY,
)
from producer_api.auth import Authenticator, AuthUnavailableError, Principal, key_from_headers
from producer_api.openapi import Access
from producer_api.problems import ProblemError, from_problem, problem_response
from producer_api.ratelimit import retry_after_header

log = logging.getLogger(__name__)

PRINCIPAL_KEY = web.RequestKey("principal", Principal)
AUTHENTICATOR_KEY = web.AppKey("authenticator", Authenticator)

_UNMATCHED = "unmatched"


def principal_of(request: web.Request) -> Principal:
    return request[PRINCIPAL_KEY]


def _route_label(request: web.Request) -> str:
    route = request.match_info.route
    if request.match_info.http_exception is not None:
        return _UNMATCHED
    info = route.resource.canonical if route.resource is not None else _UNMATCHED
    return info.rstrip("/") or "/"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        status = exc.status
        raise
    else:
        status = response.status
        return response
    finally:
        request.app[METRICS_KEY].observe_request(
            _route_label(request), request.method, status, time.perf_counter() - started
        )


_AIOHTTP_TITLES = {
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as problem:
        return from_problem(request, problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
        detail = exc.text or exc.reason
        if exc.status == 404:
            detail = f"no route for {request.method} {request.path}"
        elif exc.status == 405:
            detail = f"{request.method} is not allowed on {request.path}; allowed: " + (
                headers.get("Allow", "") or "none"
            )
        return problem_response(
            request,
            exc.status,
            _AIOHTTP_TITLES.get(exc.status, exc.reason),
            detail.removeprefix(f"{exc.status}: "),
            headers=headers,
        )
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem_response(
            request, 500, "Internal Server Error", "an unexpected error; it has been logged"
        )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        return await handler(request)  # 404/405 need no key
    route = request.match_info.route
    template = route.resource.canonical if route.resource is not None else request.path
    access = request.app[OPERATIONS_KEY].access_for(request.method, template)
    if access is None or access is Access.PUBLIC:
        return await handler(request)

    failures = request.app[AUTH_FAILURE_LIMITER_KEY]
    client = request.remote or "unknown"
    # An address that keeps failing is refused before its key is even looked at, so
    # guessing keys (or hammering Postgres with lookups) gets nowhere.
    if (cooling_s := failures.wait_s(client)) > 0:
        raise _too_many_failures(cooling_s)
    key = key_from_headers(request.headers.get("Authorization"), request.headers.get("X-API-Key"))
    if key is None:
        failures.acquire(client)
        raise _unauthorized(
            "an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'"
        )
    try:
        principal = await request.app[AUTHENTICATOR_KEY].authenticate(key)
    except AuthUnavailableError as exc:
        raise ProblemError(
            503,
            "Service Unavailable",
            "API keys cannot be checked right now",
            slug="auth-unavailable",
            headers={"Retry-After": "5"},
        ) from exc
    if principal is None:
        failures.acquire(client)
        raise _unauthorized("the API key is not valid")
    if access is Access.ADMIN and not principal.is_admin:
        raise ProblemError(403, "Forbidden", "this route needs an admin API key", slug="forbidden")

    wait_s = request.app[LIMITER_KEY].acquire(principal.owner)
    if wait_s > 0:
        raise ProblemError(
            429,
            "Too Many Requests",
            f"rate limit exceeded for this API key; retry in {wait_s:.2f} s",
            slug="rate-limited",
            headers={"Retry-After": retry_after_header(wait_s)},
        )
    request[PRINCIPAL_KEY] = principal
    return await handler(request)


def _too_many_failures(wait_s: float) -> ProblemError:
    return ProblemError(
        429,
        "Too Many Requests",
        "too many requests with a missing or invalid API key from this address; "
        f"retry in {wait_s:.2f} s",
        slug="auth-throttled",
        headers={"Retry-After": retry_after_header(wait_s)},
    )


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "Unauthorized",
        detail,
        slug="unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="whisperstream"'},
    )
