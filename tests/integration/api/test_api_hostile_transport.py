"""Slow bodies, oversized headers and hostile file names, over raw HTTP."""

from __future__ import annotations

import asyncio
import json
import uuid

from tests.integration.api.conftest import Api
from tests.integration.api.hostile import (
    api_with,
    raw_connection,
    read_one_response,
    read_response,
    read_status_line,
    uploads,
)
from whisperstream.settings import Settings

BOUNDARY = "hostile-boundary-1234"


def _multipart_head(filename: bytes, parameter: bytes | None = None) -> bytes:
    disposition = parameter if parameter is not None else b'filename="' + filename + b'"'
    return (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; '
        + disposition
        + b"\r\nContent-Type: audio/flac\r\n\r\n"
    )


def _request_head(api: Api, path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {api.user_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


async def test_a_slow_upload_is_cut_off_without_holding_up_other_clients(
    api_settings: Settings, jfk_bytes: bytes
) -> None:
    async with api_with(
        api_settings, api_body_timeout_s=1.0, api_body_min_rate_bytes_s=100_000
    ) as api:
        before = uploads(api)
        head = _multipart_head(b"slow.flac")
        reader, writer = await raw_connection(api)
        # a real upload starts (past the sniffing), then trickles a few bytes a second
        writer.write(_request_head(api, "/transcribe", len(head) + len(jfk_bytes) + 100))
        writer.write(head + jfk_bytes[:65_536])
        await writer.drain()

        async def trickle() -> None:
            for byte in jfk_bytes[65_536:65_600]:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.3)

        trickling = asyncio.create_task(trickle())
        try:
            # another client is served while the slow one trickles
            health = await api.client.get("/health")
            assert health.status == 200
            jobs = await api.client.get("/jobs", headers=api.auth(api.other_key))
            assert jobs.status == 200
            status_line = await read_status_line(reader)
            assert status_line.startswith("HTTP/1.1 408"), status_line
            assert not trickling.done(), "the body was cut off only after it had all been sent"
        finally:
            trickling.cancel()
            writer.close()
        assert uploads(api) == before, "the aborted upload left an object behind"


async def test_a_slow_json_body_is_cut_off(api_settings: Settings) -> None:
    async with api_with(
        api_settings, api_body_timeout_s=1.0, api_body_min_rate_bytes_s=1000
    ) as api:
        reader, writer = await raw_connection(api)
        writer.write(
            (
                f"POST /transcribe HTTP/1.1\r\nHost: api\r\nAuthorization: Bearer {api.user_key}"
                "\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
            ).encode()
        )
        await writer.drain()
        try:
            status_line = await read_status_line(reader)
            assert status_line.startswith("HTTP/1.1 408"), status_line
        finally:
            writer.close()

        # under /v1 the refusal takes OpenAI's error shape
        reader, writer = await raw_connection(api)
        writer.write(_request_head(api, "/v1/audio/transcriptions", 5000) + b"--")
        await writer.drain()
        try:
            response = await read_one_response(reader)
        finally:
            writer.close()
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), response
        assert "slower than" in json.loads(payload)["error"]["message"]


async def test_oversized_headers_are_refused_without_a_stack_trace(api: Api) -> None:
    too_many = b"\r\n".join(b"X-%d: 1" % n for n in range(200))
    for header in (b"X-Big: " + b"a" * 20_000, b"X-" + b"n" * 20_000 + b": 1", too_many):
        reader, writer = await raw_connection(api)
        writer.write(b"GET /health HTTP/1.1\r\nHost: api\r\n" + header + b"\r\n\r\n")
        await writer.drain()
        try:
            response = await read_response(reader)
        finally:
            writer.close()
        status_line = response.split(b"\r\n", 1)[0].decode()
        assert status_line.split()[1] in {"400", "431"}, status_line
        assert b"Traceback" not in response
    # the server is still there for everyone else
    assert (await api.client.get("/health")).status == 200


HOSTILE_NAMES = (
    b'filename="../../../etc/passwd.flac"',
    b'filename="..\\..\\windows\\x.flac"',
    ('filename="' + "\u00e9\u4e2d" * 400 + '.flac"').encode(),
    b'filename="\xff\xfe\xc3(bad.flac"',
    b'filename="<script>alert(1)</script>.flac"',
    # control characters that pass the header parser, percent-encoded (RFC 5987)
    b"filename*=UTF-8''a%01b%1Bc%7F%0D%0Ad%2F..%2F.flac",
)


async def _post_raw(api: Api, path: str, body: bytes) -> bytes:
    reader, writer = await raw_connection(api)
    writer.write(_request_head(api, path, len(body)) + body)
    await writer.drain()
    try:
        return await read_response(reader)
    finally:
        writer.close()


async def test_raw_control_characters_in_a_part_header_are_a_400_not_a_500(
    api: Api, jfk_bytes: bytes
) -> None:
    before = uploads(api)
    body = _multipart_head(b"a\x01b\x1bc.flac") + jfk_bytes + f"\r\n--{BOUNDARY}--\r\n".encode()
    response = await _post_raw(api, "/transcribe", body)
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response
    assert json.loads(payload)["status"] == 400
    response = await _post_raw(api, "/v1/audio/transcriptions", body)
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response
    assert "malformed multipart" in json.loads(payload)["error"]["message"]
    assert uploads(api) == before


async def test_hostile_file_names_stay_inside_the_jobs_prefix_and_are_shown_safely(
    api: Api, jfk_bytes: bytes
) -> None:
    for name in HOSTILE_NAMES:
        body = _multipart_head(b"", name) + jfk_bytes + f"\r\n--{BOUNDARY}--\r\n".encode()
        response = await _post_raw(api, "/transcribe", body)
        head, _, payload = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 202"), (name, response)
        job_id = json.loads(payload)["job_id"]
        uuid.UUID(job_id)
        keys = [k for k in uploads(api) if k.startswith(f"uploads/{job_id}/")]
        assert len(keys) == 1, keys
        last = keys[0].removeprefix(f"uploads/{job_id}/")
        assert "/" not in last
        assert not last.startswith(".")
        assert all(c.isascii() and c.isprintable() for c in last), last

        shown = await api.client.get(f"/transcribe/{job_id}", headers=api.auth())
        assert shown.status == 200
        raw = await shown.read()
        document = json.loads(raw)  # valid JSON whatever the name was
        assert all(0x20 <= b < 0x7F or b >= 0x80 for b in raw.replace(b"\n", b"")), raw
        assert isinstance(document["original_filename"], str)
        assert "\x1b" not in document["original_filename"]
