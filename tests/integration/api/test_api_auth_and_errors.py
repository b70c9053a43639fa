from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import insert

from db.models import projector_lag_table
from schemas.events import utc_now
from tests.integration.api.conftest import ENV_ADMIN_KEY, Api, start_api
from whisperstream.settings import Settings

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"


async def _problem(response: aiohttp.ClientResponse, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


async def test_keys_are_required_and_checked(api: Api) -> None:
    body = await _problem(await api.client.get("/jobs"), 401)
    assert "API key" in body["detail"]
    await _problem(await api.client.get("/jobs", headers={"X-API-Key": "wsk_wrong"}), 401)
    await _problem(await api.client.get("/jobs", headers={"Authorization": "Basic abc"}), 401)
    assert (await api.client.get("/jobs", headers={"X-API-Key": api.user_key})).status == 200
    assert (await api.client.get("/jobs", headers=api.auth())).status == 200

    forbidden = await _problem(await api.client.get("/admin/errors", headers=api.auth()), 403)
    assert "admin" in forbidden["detail"]
    assert (await api.client.get("/admin/errors", headers=api.auth(api.admin_key))).status == 200
    env_admin = {"X-API-Key": ENV_ADMIN_KEY}
    assert (await api.client.get("/admin/errors/", headers=env_admin)).status == 200

    for open_path in ("/health", "/health/", "/openapi.json", "/docs", "/metrics"):
        assert (await api.client.get(open_path)).status == 200, open_path


async def test_router_errors_are_problems(api: Api) -> None:
    body = await _problem(await api.client.get("/nowhere"), 404)
    assert "/nowhere" in body["detail"]
    not_allowed = await api.client.put("/transcribe", headers=api.auth())
    body = await _problem(not_allowed, 405)
    assert "POST" in not_allowed.headers["Allow"]
    unknown_job = await api.client.get(
        "/transcribe/00000000-0000-0000-0000-000000000000", headers=api.auth()
    )
    await _problem(unknown_job, 404)


async def test_bad_submissions(api: Api, jfk_bytes: bytes) -> None:
    async def post(data: Any, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
        return await api.client.post(
            "/transcribe", data=data, headers={**api.auth(), **(headers or {})}
        )

    text_form = aiohttp.FormData()
    text_form.add_field("file", io.BytesIO(b"hello, this is not audio\n"), filename="a.wav")
    body = await _problem(await post(text_form), 415)
    assert "plain text" in body["detail"]

    png = aiohttp.FormData()
    png.add_field("file", io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(100)), filename="a.png")
    assert "PNG image" in (await _problem(await post(png), 415))["detail"]

    no_file = aiohttp.FormData()
    no_file.add_field("priority", "high")
    no_file.add_field("x", io.BytesIO(b""), filename="y")  # forces multipart
    body = await _problem(await post(no_file), 422)
    assert body["errors"][0]["field"] == "x"

    only_options = aiohttp.FormData()
    only_options.add_field("priority", "high")
    only_options.add_field("model", io.BytesIO(b"tiny.en"), filename="m")
    body = await _problem(await post(only_options), 422)
    assert body["errors"][0]["field"] == "file"

    for field, value in (
        ("priority", "urgent"),
        ("task", "summarise"),
        ("engine", "vosk"),
        ("language", "english!"),
        ("word_timestamps", "maybe"),
        ("callback_url", "ftp://x"),
        ("model", "../../etc"),
    ):
        data = aiohttp.FormData()
        data.add_field(field, value)
        data.add_field("file", io.BytesIO(jfk_bytes), filename="jfk.flac")
        body = await _problem(await post(data), 422)
        assert body["errors"][0]["field"] == field, field

    body = await _problem(await post(b"raw", headers={"Content-Type": "text/plain"}), 415)
    assert "multipart/form-data" in body["detail"]
    await _problem(
        await api.client.post(
            "/transcribe",
            data=b"{not json",
            headers={**api.auth(), "Content-Type": "application/json"},
        ),
        400,
    )
    body = await _problem(
        await api.client.post(
            "/transcribe",
            json={"audio_uri": "s3://a"},
            headers={**api.auth(), "Idempotency-Key": " "},
        ),
        422,
    )
    assert body["errors"][0]["field"] == "Idempotency-Key"


async def test_every_route_is_in_the_openapi_document(api: Api) -> None:
    spec = await (await api.client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    app = api.client.app
    assert isinstance(app, web.Application)
    registered = set()
    for route in app.router.routes():
        info = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD":
            continue
        registered.add((route.method.lower(), info.rstrip("/") or "/"))
        if info == "/":
            continue  # the web page: the root has no slash-less form
        # every route answers with and without the trailing slash
        assert any(
            r.method == route.method
            and r.resource is not None
            and r.resource.canonical == (info[:-1] if info.endswith("/") else info + "/")
            for r in app.router.routes()
        ), info
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert registered == documented
    submit = spec["paths"]["/transcribe"]["post"]
    assert {"202", "401", "413", "415", "422", "503"} <= set(submit["responses"])
    assert "multipart/form-data" in submit["requestBody"]["content"]
    docs = await (await api.client.get("/docs")).text()
    assert 'src="/docs/static/swagger-ui-bundle.js"' in docs
    bundle = await api.client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status == 200
    assert bundle.content_type == "application/javascript"
    assert "SwaggerUIBundle" in await bundle.text()
    init = await (await api.client.get("/docs/static/docs-init.js")).text()
    assert "url: '/openapi.json'" in init
    for missing in ("index.html", "..%2F..%2Fetc%2Fpasswd"):
        response = await api.client.get(f"/docs/static/{missing}")
        assert response.status == 404
        assert response.content_type == "application/problem+json"


async def test_metrics_count_requests_uploads_and_produce_latency(
    api: Api, jfk_bytes: bytes
) -> None:
    from tests.integration.api.helpers import submit  # noqa: PLC0415

    await submit(api, jfk_bytes)
    await api.client.get("/nowhere")
    text = await (await api.client.get("/metrics")).text()
    assert (
        'whisperstream_api_requests_total{method="POST",route="/transcribe",status="202"} 1.0'
        in text
    )
    assert 'route="unmatched",status="404"' in text
    [uploaded] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("whisperstream_api_upload_bytes_total ")
    ]
    assert uploaded == len(jfk_bytes)
    assert "whisperstream_api_kafka_produce_seconds_count" in text
    assert (
        'whisperstream_api_request_seconds_bucket{le="0.05",method="POST",route="/transcribe"}'
        in text
    )


async def test_rate_limit_answers_429_with_retry_after(api_settings: Settings) -> None:
    settings = api_settings.model_copy(
        update={"api_rate_limit_per_s": 0.5, "api_rate_limit_burst": 2}
    )
    client, engine, store, (user, other, _) = await start_api(settings)
    try:
        headers = {"X-API-Key": user}
        assert (await client.get("/jobs", headers=headers)).status == 200
        assert (await client.get("/jobs", headers=headers)).status == 200
        limited = await client.get("/jobs", headers=headers)
        body = await _problem(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert "rate limit" in body["detail"]
        # buckets are per key
        assert (await client.get("/jobs", headers={"X-API-Key": other})).status == 200
    finally:
        await client.close()
        store.close()
        await engine.dispose()


async def test_metrics_show_the_projectors_lag(api: Api) -> None:
    async with api.engine.begin() as connection:
        await connection.execute(
            insert(projector_lag_table).values(
                consumer_group=api.settings.projector_group_id,
                topic="transcription.status",
                partition=2,
                next_offset=10,
                high_watermark=17,
                lag=7,
                updated_at=utc_now(),
            )
        )
    text = await (await api.client.get("/metrics")).text()
    assert 'whisperstream_projector_lag{partition="2",topic="transcription.status"} 7.0' in text
