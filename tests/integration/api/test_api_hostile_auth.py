"""Every route x every kind of caller: the expected status, and no other owner's data.

The routes are read from the running app's router, so a route added later is covered
without editing this test; a route with no declared access fails it.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import aiohttp

from producer_api.appkeys import OPERATIONS_KEY
from producer_api.openapi import Access, canonical_path
from tests.integration.api.helpers import RESULT_DOCUMENT, complete, submit
from tests.integration.api.hostile import api_with
from whisperstream.settings import Settings

MALFORMED_KEYS = ({"Authorization": "Bearer ' OR 1=1 --"}, {"X-API-Key": "ws_" + "A" * 4000})


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]


async def _body(response: aiohttp.ClientResponse) -> str:
    """The whole body, or what an event stream sends in its first moments."""
    if response.content_type != "text/event-stream":
        return await response.text(errors="replace")
    received = b""
    while True:
        try:
            chunk = await asyncio.wait_for(response.content.readany(), 0.5)
        except TimeoutError:
            break
        if not chunk:
            break
        received += chunk
    return received.decode(errors="replace")


def _expected(access: Access, caller: str, path: str) -> set[int] | None:
    """The allowed statuses; None: any status below 500 except 401 and 403."""
    if access is Access.PUBLIC:
        return None
    if caller in {"no key", "malformed key"}:
        return {401}
    if access is Access.ADMIN:
        return None if caller == "admin key" else {403}
    if caller == "another user's key" and "{job_id}" in path:
        return {404}  # someone else's job does not exist, as far as this caller can tell
    return None


async def test_every_route_answers_every_caller_as_expected(
    api_settings: Settings, jfk_bytes: bytes
) -> None:
    # failures from the no-key callers would otherwise be throttled (tested below)
    async with api_with(api_settings, api_auth_failure_burst=10_000) as api:
        canary = f"CANARY{uuid.uuid4().hex}"
        job_id = await submit(api, jfk_bytes, key=api.other_key, filename=f"{canary}.flac")
        await complete(api, job_id, {**RESULT_DOCUMENT, "text": f"{canary} ask not."})

        callers = [
            Caller("no key", {}),
            *(Caller("malformed key", headers) for headers in MALFORMED_KEYS),
            Caller("another user's key", api.auth(api.user_key)),
            Caller("admin key", api.auth(api.admin_key)),
        ]
        app = api.client.app
        assert app is not None
        operations = app[OPERATIONS_KEY]
        routes = {
            (route.method, canonical_path(route.resource.canonical))
            for route in app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
        assert len(routes) >= 20, routes
        wrong: list[str] = []
        for method, template in sorted(routes):
            access = operations.access_for(method, template)
            if access is None:
                wrong.append(f"{method} {template}: no declared access")
                continue
            path = (
                template.replace("{job_id}", job_id)
                .replace("{error_id}", str(uuid.uuid4()))
                .replace("{name}", "x")
            )
            for caller in callers:
                async with api.client.request(method, path, headers=caller.headers) as response:
                    body = await _body(response)
                expected = _expected(access, caller.name, template)
                status_ok = (
                    response.status in expected
                    if expected is not None
                    else response.status < 500 and response.status not in {401, 403}
                )
                if not status_ok:
                    wrong.append(f"{method} {path} as {caller.name}: {response.status} {body}")
                if canary in body and caller.name != "admin key":
                    wrong.append(f"{method} {path} as {caller.name}: the canary in {body}")
                if "Traceback" in body:
                    wrong.append(f"{method} {path} as {caller.name}: a stack trace")
        assert not wrong, "\n".join(wrong)


async def test_repeated_failed_authentication_is_throttled_per_address(
    api_settings: Settings,
) -> None:
    async with api_with(api_settings, api_auth_failure_burst=3, api_auth_failures_per_min=6) as api:
        bad = {"Authorization": "Bearer not-a-key"}
        for _ in range(3):
            response = await api.client.get("/jobs", headers=bad)
            assert response.status == 401
        refused = await api.client.get("/jobs", headers=bad)
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 1
        problem = await refused.json()
        assert problem["status"] == 429
        assert "invalid API key" in problem["detail"]

        # while the address cools down even a valid key is refused: guessing gets nowhere
        valid = await api.client.get("/jobs", headers=api.auth())
        assert valid.status == 429
        # the OpenAI routes answer in OpenAI's error shape
        openai = await api.client.get("/v1/models", headers=bad)
        assert openai.status == 429
        assert "Retry-After" in openai.headers
        error = (await openai.json())["error"]
        assert "invalid API key" in error["message"]
        # public routes stay open
        assert (await api.client.get("/health")).status == 200


async def test_valid_keys_are_not_throttled_by_the_failure_limit(api_settings: Settings) -> None:
    async with api_with(api_settings, api_auth_failure_burst=1) as api:
        for _ in range(5):
            response = await api.client.get("/jobs", headers=api.auth())
            assert response.status == 200
