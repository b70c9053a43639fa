"""OpenAI's audio API: `POST /v1/audio/transcriptions`, `/v1/audio/translations`,
`GET /v1/models`, so that the `openai` SDK and the tools built on it work unchanged.

Each request is an ordinary high-priority job (listed in /jobs, cancellable, retried,
dead-lettered like any other); the response waits for it on the status feed and answers
in OpenAI's shape. A client that goes away before the result cancels its job unless
``WHISPERSTREAM_OPENAI_CANCEL_ON_DISCONNECT=false``. Errors under /v1 have OpenAI's body,
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from sqlalchemy.exc import SQLAlchemyError

from db.job_queries import get_job
from producer_api.appkeys import ENGINE_KEY, METRICS_KEY, SETTINGS_KEY, STORE_KEY
from producer_api.middlewares import principal_of
from producer_api.openai_format import GRANULARITIES, RESPONSE_FORMATS, error_body, render
from producer_api.openapi import Access, Operation, json_body
from producer_api.options import parse_options
from producer_api.problems import ProblemError
from producer_api.render import ResultDocumentError
from producer_api.routes_events import FEED_KEY
from producer_api.routes_transcribe import PUBLISHER_KEY, result_document
from producer_api.status_feed import Subscription, SubscriptionEndedError
from producer_api.submission import kafka_unavailable
from producer_api.upload import StoredUpload, shown_filename, stream_upload
from schemas.events import AudioRef, JobStatus
from storage.errors import StorageError
from storage.keys import audio_uri
from stream_workers.engines.base import EngineName
from stream_workers.models.catalog import ModelCatalog
from whisperstream.kafka_producer import PublishError
from whisperstream.settings import Settings

log = logging.getLogger(__name__)

OPENAI_DEFAULT_MODEL = "whisper-1"
MAX_FIELD_BYTES = 8192
_WAIT_STEP_S = 0.25
_POLL_EVERY_S = 5.0
_MODELS_TTL_S = 30.0
# Job failures that were the request's fault: OpenAI answers those with a 400.
_CLIENT_FAILURES = {"AudioUndecodableError", "AudioTooLongError", "InvalidOptionsError"}
_FIELD_NAMES = {"initial_prompt": "prompt", "word_timestamps": "timestamp_granularities[]"}


@dataclass
class OpenAIError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None


class InstalledModels:
    """The model names the workers can load (the same catalog they resolve from)."""

    def __init__(self, settings: Settings) -> None:
        self._catalog = ModelCatalog(
            settings.whisper_model_dir, settings.whisperstream_state_dir / "models"
        )
        self._names: list[str] = []
        self._read_at = -_MODELS_TTL_S

    async def names(self) -> list[str]:
        if time.monotonic() - self._read_at >= _MODELS_TTL_S:
            self._names = await asyncio.to_thread(self._list)
            self._read_at = time.monotonic()
        return self._names

    def _list(self) -> list[str]:
        engines: tuple[EngineName, ...] = ("faster-whisper", "openai-whisper")
        return sorted({s.model for e in engines for s in self._catalog.available(e)})


MODELS_KEY = web.AppKey("installed_models", InstalledModels)


# -- errors in OpenAI's shape -------------------------------------------------------------


def _error_response(status: int, message: str, param: str | None, code: str | None) -> web.Response:
    return web.json_response(
        error_body(message, status=status, param=param, code=code), status=status
    )


def _from_problem(problem: ProblemError) -> web.Response:
    status, param, code = problem.status, None, None
    if problem.errors:
        param = _FIELD_NAMES.get(problem.errors[0].field, problem.errors[0].field)
    if status in (415, 422):  # OpenAI answers a bad field or a non-audio file with 400
        status = 400
        param = param or "file"
    code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
    message = problem.detail
    if param is not None and problem.errors:
        message = f"{param}: {problem.errors[0].message}"
    response = _error_response(status, message, param, code)
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


@web.middleware
async def openai_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Under /v1, every error (authentication included) takes OpenAI's body."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    try:
        return await handler(request)
    except OpenAIError as exc:
        return _error_response(exc.status, exc.message, exc.param, exc.code)
    except ProblemError as problem:
        return _from_problem(problem)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason
        if exc.status == 404:
            message = f"Invalid URL ({request.method} {request.path})"
        return _error_response(exc.status, message, None, None)


# -- the request ----------------------------------------------------------------------------


@dataclass
class _Form:
    fields: dict[str, str] = field(default_factory=dict)
    granularities: set[str] = field(default_factory=set)
    stored: StoredUpload | None = None
    filename: str | None = None


def _stored(form: _Form) -> StoredUpload:
    if form.stored is None:
        raise OpenAIError(400, "you must provide a file: the audio to transcribe", "file")
    return form.stored


def _only_file(form: _Form) -> None:
    if form.stored is not None:
        raise OpenAIError(400, "send exactly one file", "file")


def _part(part: object) -> BodyPartReader:
    if not isinstance(part, BodyPartReader):
        raise OpenAIError(400, "nested multipart bodies are not supported")
    return part


async def _field_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(4096):
        data += chunk
        if len(data) > MAX_FIELD_BYTES:
            raise OpenAIError(400, f"{part.name} is longer than {MAX_FIELD_BYTES} bytes", part.name)
    try:
        return data.decode(part.get_charset("utf-8"))
    except (UnicodeDecodeError, LookupError):
        raise OpenAIError(400, f"{part.name} is not UTF-8 text", part.name) from None


async def _receive(request: web.Request, job_id: str, form: _Form) -> None:
    settings = request.app[SETTINGS_KEY]
    if request.content_type != "multipart/form-data":
        raise OpenAIError(400, "send multipart/form-data with a 'file' field", "file")
    try:
        reader = await request.multipart()
        while (item := await reader.next()) is not None:
            part = _part(item)
            if part.name == "file":
                _only_file(form)
                form.filename = shown_filename(part.filename)
                form.stored = await stream_upload(
                    part,
                    request.app[STORE_KEY],
                    audio_uri(settings.audio_bucket, job_id, part.filename),
                    settings.max_upload_size_mb * 1024 * 1024,
                )
                request.app[METRICS_KEY].upload_bytes.inc(form.stored.size)
            elif part.name in ("timestamp_granularities[]", "timestamp_granularities"):
                form.granularities.add((await _field_text(part)).strip())
            elif part.name:
                # Fields OpenAI added later (include[], chunking_strategy, ...) are read
                # and ignored, as a server of an older API version would.
                form.fields[part.name] = await _field_text(part)
    except (ProblemError, OpenAIError):
        raise
    except (ValueError, AssertionError, HttpProcessingError) as exc:
        raise OpenAIError(400, f"malformed multipart body: {exc}") from exc
    except StorageError as exc:
        raise OpenAIError(503, f"the audio could not be stored: {exc}") from exc


@dataclass(frozen=True)
class _Request:
    model: str
    response_format: str
    temperature: float
    granularities: frozenset[str]


async def _validate(request: web.Request, form: _Form, task: str) -> tuple[_Request, Any]:
    settings = request.app[SETTINGS_KEY]
    _stored(form)
    values = form.fields
    response_format = values.get("response_format", "json").strip() or "json"
    if response_format not in RESPONSE_FORMATS:
        raise OpenAIError(
            400,
            f"response_format must be one of {', '.join(RESPONSE_FORMATS)}, "
            f"got {response_format!r}",
            "response_format",
        )
    unknown = sorted(form.granularities - set(GRANULARITIES))
    if unknown:
        raise OpenAIError(
            400,
            f"timestamp_granularities[] must be word or segment, got {unknown[0]!r}",
            "timestamp_granularities[]",
        )
    if form.granularities and response_format != "verbose_json":
        raise OpenAIError(
            400,
            "timestamp_granularities[] needs response_format verbose_json",
            "timestamp_granularities[]",
        )
    if values.get("stream", "false").strip().lower() == "true":
        raise OpenAIError(400, "streamed transcription is not supported", "stream")
    model = (values.get("model") or "").strip()
    if not model:
        raise OpenAIError(400, "you must provide a model parameter", "model")
    if model == OPENAI_DEFAULT_MODEL:
        model = settings.whisper_model_size
    elif model not in await request.app[MODELS_KEY].names():
        raise OpenAIError(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            "model",
            "model_not_found",
        )
    options = parse_options(
        {
            "priority": "high",
            "model": model,
            "language": values.get("language") if task == "transcribe" else None,
            "task": task,
            "initial_prompt": values.get("prompt"),
            "temperature": values.get("temperature"),
            "word_timestamps": "true" if "word" in form.granularities else "false",
        },
        settings.whisper_model_size,
    )
    wanted = _Request(model, response_format, options.temperature, frozenset(form.granularities))
    return wanted, options


# -- waiting for the job ------------------------------------------------------------------------


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


@dataclass(frozen=True)
class _Outcome:
    status: str
    result_uri: str | None
    error_type: str | None
    error_message: str | None


async def _outcome_from_database(request: web.Request, job_id: str) -> _Outcome | None:
    try:
        row = await get_job(request.app[ENGINE_KEY], uuid.UUID(job_id), owner=None)
    except (SQLAlchemyError, OSError):
        return None
    if row is None or row.status not in {s.value for s in JobStatus if s.is_terminal}:
        return None
    uri = row.result.result_uri if row.result is not None else None
    return _Outcome(row.status, uri, row.error_type, row.error_message)


async def _wait(request: web.Request, job_id: str, subscription: Subscription) -> _Outcome | None:
    """The job's end; None if the client went away first."""
    polled_at = time.monotonic()
    feed_alive = True
    while not _gone(request):
        if feed_alive:
            try:
                record = await subscription.next(_WAIT_STEP_S)
            except SubscriptionEndedError:
                feed_alive = False  # the feed is shutting down or lost us: poll instead
                record = None
            if record is not None and record.event.status.is_terminal:
                event = record.event
                return _Outcome(
                    event.status.value,
                    event.result.result_uri if event.result is not None else None,
                    event.error.type if event.error is not None else None,
                    event.error.message if event.error is not None else None,
                )
        else:
            await asyncio.sleep(_WAIT_STEP_S)
        # A safety net for a feed that cannot read the status topic: ask Postgres.
        if time.monotonic() - polled_at >= _POLL_EVERY_S:
            polled_at = time.monotonic()
            outcome = await _outcome_from_database(request, job_id)
            if outcome is not None:
                return outcome
    return None


def _failure(outcome: _Outcome) -> OpenAIError:
    message = outcome.error_message or f"the transcription {outcome.status}"
    if outcome.status == JobStatus.CANCELLED.value:
        return OpenAIError(500, "the transcription job was cancelled", None, "job_cancelled")
    if outcome.error_type == "ModelNotInstalledError":
        return OpenAIError(404, message, "model", "model_not_found")
    if outcome.error_type in _CLIENT_FAILURES:
        return OpenAIError(400, message, "file", None)
    return OpenAIError(500, message, None, None)


async def _abandon(request: web.Request, job_id: str) -> None:
    """The client went away before its result: cancel the job, unless told not to."""
    if not request.app[SETTINGS_KEY].whisperstream_openai_cancel_on_disconnect:
        log.info("the client of job %s went away; the job goes on", job_id)
        return
    log.info("the client of job %s went away: cancelling it", job_id)
    with contextlib.suppress(PublishError):
        await request.app[PUBLISHER_KEY].cancel(principal_of(request), job_id)


async def _transcribe(request: web.Request, task: str) -> web.StreamResponse:
    principal = principal_of(request)
    feed = request.app[FEED_KEY]
    job_id = str(uuid.uuid4())
    form = _Form()
    subscription: Subscription | None = None
    try:
        try:
            await _receive(request, job_id, form)
            wanted, options = await _validate(request, form, task)
            stored = _stored(form)
            audio = AudioRef(
                uri=str(stored.uri),
                size_bytes=stored.size,
                sha256=stored.sha256,
                content_type=stored.content_type,
                original_filename=form.filename or "audio",
            )
            await feed.wait_ready(5.0)  # not ready: _wait falls back to Postgres
            subscription = feed.subscribe_job(job_id)  # before the job exists: no race
            feed.remember_owner(job_id, principal.owner)
            await request.app[PUBLISHER_KEY].request(principal, job_id, audio, options, None)
        except BaseException as exc:
            if form.stored is not None:
                with contextlib.suppress(StorageError):
                    await asyncio.to_thread(request.app[STORE_KEY].delete, form.stored.uri)
            if isinstance(exc, PublishError):
                problem = kafka_unavailable(exc)
                raise OpenAIError(503, problem.detail) from exc
            raise
        try:
            outcome = await _wait(request, job_id, subscription)
        except asyncio.CancelledError:
            # a server that cancels handlers when their client goes away (aiohttp's
            # handler_cancellation); `run_app` leaves it off, and _wait notices instead
            await asyncio.shield(_abandon(request, job_id))
            raise
    finally:
        if subscription is not None:
            subscription.close()
    if outcome is None:
        await _abandon(request, job_id)
        return web.Response(status=499)  # nobody reads it; aiohttp needs a response
    if outcome.status != JobStatus.COMPLETED.value or outcome.result_uri is None:
        raise _failure(outcome)
    try:
        document = await result_document(request, outcome.result_uri)
        body, content_type = render(
            document,
            wanted.response_format,
            task=task,
            temperature=wanted.temperature,
            granularities=wanted.granularities,
        )
    except ProblemError as problem:
        raise OpenAIError(problem.status, problem.detail) from problem
    except ResultDocumentError as exc:
        raise OpenAIError(502, f"the stored result is malformed: {exc}") from exc
    headers = {"X-Whisperstream-Job-Id": job_id}
    if isinstance(body, dict):
        return web.json_response(body, headers=headers, dumps=_dumps)
    return web.Response(text=body, content_type=content_type, charset="utf-8", headers=headers)


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


async def create_transcription(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, "transcribe")


async def create_translation(request: web.Request) -> web.StreamResponse:
    return await _transcribe(request, "translate")


async def list_models(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS_KEY]
    names = [OPENAI_DEFAULT_MODEL, *await request.app[MODELS_KEY].names()]
    return web.json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "whisperstream"
                    if name != OPENAI_DEFAULT_MODEL
                    else f"whisperstream ({settings.whisper_model_size})",
                }
                for name in names
            ],
        }
    )


# -- the route table ------------------------------------------------------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


def _form(task: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary"},
        "model": {
            "type": "string",
            "description": f"{OPENAI_DEFAULT_MODEL} (the server's WHISPER_MODEL_SIZE) or an "
            "installed model (GET /v1/models)",
        },
        "prompt": {"type": "string"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "json"},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1, "default": 0},
    }
    if task == "transcribe":
        properties["language"] = {"type": "string", "description": "ISO-639-1 code"}
        properties["timestamp_granularities[]"] = {
            "type": "array",
            "items": {"type": "string", "enum": list(GRANULARITIES)},
            "description": "with response_format verbose_json",
        }
    return {"type": "object", "required": ["file", "model"], "properties": properties}


def _responses(what: str) -> dict[int, tuple[str, dict[str, Any] | None]]:
    error = {"application/json": _ERROR_SCHEMA}
    return {
        200: (
            f"The {what}: JSON for json and verbose_json, text for text, srt and vtt",
            {"application/json": {"type": "object"}, "text/plain": {"type": "string"}},
        ),
        400: ("A bad field, a missing file or not audio (OpenAI's error body)", error),
        404: ("model_not_found (OpenAI's error body)", error),
        500: ("The job failed or was cancelled (OpenAI's error body)", error),
        503: ("Kafka or S3 unavailable; nothing was created", error),
    }


def operations() -> tuple[Operation, ...]:
    summary = (
        "OpenAI-compatible {}: a high-priority job; the response waits for its result. "
        "A client that disconnects cancels the job (WHISPERSTREAM_OPENAI_CANCEL_ON_DISCONNECT)."
    )
    return (
        Operation(
            "POST",
            "/v1/audio/transcriptions",
            create_transcription,
            summary.format("transcription"),
            "openai",
            Access.KEY,
            request_body={"multipart/form-data": _form("transcribe")},
            responses=_responses("transcription"),
        ),
        Operation(
            "POST",
            "/v1/audio/translations",
            create_translation,
            summary.format("translation into English"),
            "openai",
            Access.KEY,
            request_body={"multipart/form-data": _form("translate")},
            responses=_responses("translation"),
        ),
        Operation(
            "GET",
            "/v1/models",
            list_models,
            "The installed models in OpenAI's list shape; whisper-1 is the server's default",
            "openai",
            Access.KEY,
            responses={
                200: json_body(
                    "The models",
                    {
                        "type": "object",
                        "properties": {
                            "object": {"const": "list"},
                            "data": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                )
            },
        ),
    )
