"""`/transcribe`: submit (upload or S3 URI), status and results, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from sqlalchemy.exc import SQLAlchemyError

from db.api_support import get_owned_job
from db.job_queries import get_job
from db.rows import JobRow
from producer_api.appkeys import ENGINE_KEY, METRICS_KEY, SETTINGS_KEY, STORE_KEY
from producer_api.middlewares import principal_of
from producer_api.openapi import Access, Operation, Param, json_body, problem
from producer_api.options import OPTION_FIELDS, OPTIONS_SCHEMA, parse_idempotency_key, parse_options
from producer_api.problems import ProblemError, not_found, validation_error
from producer_api.render import FORMATS, RENDERERS, ResultDocumentError
from producer_api.submission import (
    IdempotencyGuard,
    Publisher,
    database_unavailable,
    kafka_unavailable,
)
from producer_api.upload import StoredUpload, shown_filename, stream_upload
from producer_api.views import ACCEPTED_SCHEMA, JOB_SCHEMA, accepted_view, job_view
from schemas.events import AudioRef
from storage.errors import InvalidS3UriError, ObjectNotFoundError, StorageError
from storage.keys import S3Uri, audio_uri
from whisperstream.kafka_producer import PublishError

PUBLISHER_KEY = web.AppKey("publisher", Publisher)
IDEMPOTENCY_KEY = web.AppKey("idempotency", IdempotencyGuard)

MAX_FIELD_BYTES = 8192


def _accepted(job_id: str, status: str = "pending", *, replayed: bool = False) -> web.Response:
    headers = {"Location": f"/transcribe/{job_id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(accepted_view(job_id, status), status=202, headers=headers)


async def submit_transcription(request: web.Request) -> web.Response:
    principal = principal_of(request)
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    if key is None:
        return await _submit(request, None)
    guard = request.app[IDEMPOTENCY_KEY]
    try:
        async with guard.lock(principal.owner, key):
            existing = await guard.existing(principal.owner, key)
            if existing is not None:
                row = await find_job(request, existing)
                return _accepted(str(existing), row.status if row else "pending", replayed=True)
            return await _submit(request, key)
    finally:
        guard.release(principal.owner, key)


async def _submit(request: web.Request, idempotency_key: str | None) -> web.Response:
    if request.content_type == "multipart/form-data":
        return await _submit_upload(request, idempotency_key)
    if request.content_type == "application/json":
        return await _submit_uri(request, idempotency_key)
    raise ProblemError(
        415,
        "Unsupported Media Type",
        f"received Content-Type {request.content_type!r}; send multipart/form-data with a "
        "'file' field, or application/json with an 'audio_uri'",
        slug="unsupported-body",
    )


async def _read_field(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(4096):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise validation_error(part.name or "field", f"longer than {MAX_FIELD_BYTES} bytes")
    try:
        return data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise validation_error(part.name or "field", "is not UTF-8 text") from None


@dataclass
class _Received:
    fields: dict[str, object] = field(default_factory=dict)
    stored: StoredUpload | None = None
    filename: str | None = None


async def _receive(request: web.Request, job_id: str, received: _Received) -> None:
    """Read the multipart body: the file streams to S3, the other fields are kept."""
    settings = request.app[SETTINGS_KEY]
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise validation_error("file", "nested multipart bodies are not supported")
        if part.name == "file":
            if received.stored is not None:
                raise validation_error("file", "send exactly one file")
            received.filename = shown_filename(part.filename)
            received.stored = await stream_upload(
                part,
                request.app[STORE_KEY],
                audio_uri(settings.audio_bucket, job_id, part.filename),
                settings.max_upload_size_mb * 1024 * 1024,
            )
            request.app[METRICS_KEY].upload_bytes.inc(received.stored.size)
        elif part.name in OPTION_FIELDS:
            received.fields[part.name] = await _read_field(part)
        else:
            raise validation_error(part.name or "(unnamed part)", "unknown field")


async def _submit_upload(request: web.Request, idempotency_key: str | None) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    job_id = str(uuid.uuid4())
    received = _Received()
    try:
        try:
            await _receive(request, job_id, received)
        except ProblemError:
            raise
        except (ValueError, AssertionError, HttpProcessingError) as exc:
            # aiohttp's parser errors (a control character in a part's header, say) are
            # HttpProcessingError, not ValueError: they were answered with 500
            raise ProblemError(
                400, "Bad Request", f"malformed multipart body: {exc}", slug="bad-multipart"
            ) from exc
        except StorageError as exc:
            raise ProblemError(
                503,
                "Service Unavailable",
                f"the audio could not be stored: {exc}",
                slug="storage-unavailable",
                headers={"Retry-After": "5"},
            ) from exc
        stored = _require_file(received.stored)
        options = parse_options(received.fields, settings.whisper_model_size)
        audio = AudioRef(
            uri=str(stored.uri),
            size_bytes=stored.size,
            sha256=stored.sha256,
            content_type=stored.content_type,
            original_filename=received.filename or "audio",
        )
        await request.app[PUBLISHER_KEY].request(
            principal_of(request), job_id, audio, options, idempotency_key
        )
    except BaseException as exc:
        if received.stored is not None:
            with contextlib.suppress(StorageError):
                await asyncio.to_thread(request.app[STORE_KEY].delete, received.stored.uri)
        if isinstance(exc, PublishError):
            raise kafka_unavailable(exc) from exc
        raise
    return _accepted(job_id)


def _require_file(stored: StoredUpload | None) -> StoredUpload:
    if stored is None:
        raise validation_error("file", "required: the audio file to transcribe")
    return stored


async def _submit_uri(request: web.Request, idempotency_key: str | None) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProblemError(
            400, "Bad Request", f"the body is not JSON: {exc}", slug="bad-json"
        ) from exc
    if not isinstance(body, dict):
        raise validation_error("body", "must be a JSON object")
    raw_uri = body.pop("audio_uri", None)
    if not isinstance(raw_uri, str):
        raise validation_error("audio_uri", "required: an s3://bucket/key string")
    try:
        uri = S3Uri.parse(raw_uri)
    except InvalidS3UriError as exc:
        raise validation_error("audio_uri", str(exc)) from exc
    allowed = (settings.audio_bucket,)
    if uri.bucket not in allowed:
        raise validation_error(
            "audio_uri", f"bucket {uri.bucket!r} is not allowed; allowed: {', '.join(allowed)}"
        )
    options = parse_options(body, settings.whisper_model_size)
    try:
        info = await asyncio.to_thread(request.app[STORE_KEY].stat, uri)
    except ObjectNotFoundError as exc:
        raise validation_error("audio_uri", f"no such object: {uri}") from exc
    except StorageError as exc:
        raise ProblemError(
            503, "Service Unavailable", str(exc), slug="storage-unavailable"
        ) from exc
    if info.size > settings.max_upload_size_mb * 1024 * 1024:
        raise validation_error("audio_uri", "the object is larger than MAX_UPLOAD_SIZE_MB")
    job_id = str(uuid.uuid4())
    audio = AudioRef(
        uri=str(uri),
        size_bytes=info.size,
        sha256="",
        content_type=info.content_type or "application/octet-stream",
        original_filename=uri.key.rsplit("/", 1)[-1],
    )
    try:
        await request.app[PUBLISHER_KEY].request(
            principal_of(request), job_id, audio, options, idempotency_key
        )
    except PublishError as exc:
        raise kafka_unavailable(exc) from exc
    return _accepted(job_id)


def job_id_of(request: web.Request) -> uuid.UUID:
    text = request.match_info["job_id"]
    try:
        return uuid.UUID(text)
    except ValueError:
        raise not_found(f"no job {text!r}") from None


async def find_job(request: web.Request, job_id: uuid.UUID) -> JobRow | None:
    principal = principal_of(request)
    engine = request.app[ENGINE_KEY]
    try:
        if principal.is_admin:  # admins see every job, e.g. ones upstream systems produced
            return await get_job(engine, job_id, owner=None)
        return await get_owned_job(engine, job_id, principal.owner)
    except (SQLAlchemyError, OSError) as exc:
        raise database_unavailable("jobs cannot be read") from exc


async def get_transcription(request: web.Request) -> web.Response:
    fmt = request.query.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ProblemError(
            400,
            "Bad Request",
            f"format: unknown format {fmt!r}; use one of {', '.join(FORMATS)}",
            slug="validation",
            errors=[],
        )
    job_id = job_id_of(request)
    row = await find_job(request, job_id)
    if row is None:
        raise not_found(f"no job {job_id}")
    if fmt is None:
        return web.json_response(job_view(row))
    if row.status != "completed":
        raise ProblemError(
            409, "Conflict", f"job {job_id} is {row.status}, not completed", slug="not-completed"
        )
    if row.result is None or row.result.result_uri is None:
        raise ProblemError(409, "Conflict", f"job {job_id} has no stored result", slug="no-result")
    document = await result_document(request, row.result.result_uri)
    try:
        text = RENDERERS[fmt](document)
    except ResultDocumentError as exc:
        raise ProblemError(
            502, "Bad Gateway", f"the stored result is malformed: {exc}", slug="bad-result"
        ) from exc
    content_type = FORMATS[fmt]
    return web.Response(text=text, content_type=content_type, charset="utf-8")


async def result_document(request: web.Request, raw_uri: str) -> dict[str, Any]:
    try:
        document = await asyncio.to_thread(request.app[STORE_KEY].get_json, S3Uri.parse(raw_uri))
    except (InvalidS3UriError, ObjectNotFoundError) as exc:
        raise ProblemError(
            502, "Bad Gateway", f"the result document is missing: {exc}", slug="bad-result"
        ) from exc
    except StorageError as exc:
        raise ProblemError(
            503, "Service Unavailable", str(exc), slug="storage-unavailable"
        ) from exc
    except ValueError as exc:
        raise ProblemError(
            502, "Bad Gateway", f"the result document is not JSON: {exc}", slug="bad-result"
        ) from exc
    if not isinstance(document, dict):
        raise ProblemError(
            502, "Bad Gateway", "the result document is not an object", slug="bad-result"
        )
    return document


async def cancel_transcription(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    row = await find_job(request, job_id)
    if row is None:
        raise not_found(f"no job {job_id}")
    if row.status in ("completed", "failed", "cancelled"):
        raise ProblemError(
            409, "Conflict", f"job {job_id} is already {row.status}", slug="job-terminal"
        )
    try:
        await request.app[PUBLISHER_KEY].cancel(principal_of(request), str(job_id))
    except PublishError as exc:
        raise kafka_unavailable(exc) from exc
    return web.json_response(
        {"job_id": str(job_id), "status": row.status, "cancel_requested": True}, status=202
    )


_JOB_ID = Param("job_id", "path", {"type": "string", "format": "uuid"})
_UPLOAD_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"}, **OPTIONS_SCHEMA},
}
_URI_SCHEMA = {
    "type": "object",
    "required": ["audio_uri"],
    "properties": {
        "audio_uri": {"type": "string", "example": "s3://audio/uploads/x.wav"},
        **OPTIONS_SCHEMA,
    },
}


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "POST",
            "/transcribe",
            submit_transcription,
            "Submit audio (multipart upload or an s3:// URI) for transcription",
            "transcription",
            Access.KEY,
            params=(
                Param(
                    "Idempotency-Key",
                    "header",
                    {"type": "string", "maxLength": 255},
                    "the same key within 24 h returns the same job",
                ),
            ),
            request_body={"multipart/form-data": _UPLOAD_SCHEMA, "application/json": _URI_SCHEMA},
            responses={
                202: json_body("Queued: the event is confirmed by Kafka", ACCEPTED_SCHEMA),
                400: problem("Malformed body"),
                413: problem("Larger than MAX_UPLOAD_SIZE_MB"),
                415: problem("Not audio"),
                422: problem("Invalid field"),
                503: problem("Kafka, S3 or Postgres unavailable; nothing was created"),
            },
        ),
        Operation(
            "GET",
            "/transcribe/{job_id}",
            get_transcription,
            "Job status, or its result rendered with ?format=",
            "transcription",
            Access.KEY,
            params=(
                _JOB_ID,
                Param("format", "query", {"type": "string", "enum": list(FORMATS)}),
            ),
            responses={
                200: (
                    "The job, or the rendered result",
                    {
                        "application/json": JOB_SCHEMA,
                        **{
                            t: {"type": "string"}
                            for t in FORMATS.values()
                            if t != "application/json"
                        },
                    },
                ),
                400: problem("Unknown format"),
                404: problem("No such job for this key"),
                409: problem("A format was asked for but the job is not completed"),
            },
        ),
        Operation(
            "DELETE",
            "/transcribe/{job_id}",
            cancel_transcription,
            "Cancel a pending or processing job",
            "transcription",
            Access.KEY,
            params=(_JOB_ID,),
            responses={
                202: json_body("Cancel requested", {"type": "object"}),
                404: problem("No such job for this key"),
                409: problem("The job has already ended"),
                503: problem("Kafka unavailable"),
            },
        ),
    )
