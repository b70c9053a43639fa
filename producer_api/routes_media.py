"""`GET /transcribe/{id}/audio`: a short-lived presigned S3 URL of the job's own audio.

The browser plays the audio straight from S3 (with range requests for seeking), so the
URL is signed for the host browsers reach: ``S3_PUBLIC_ENDPOINT``, else ``S3_ENDPOINT``.
Only the job's owner (or an admin key) gets a URL.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import web

from producer_api.appkeys import STORE_KEY
from producer_api.openapi import Access, Operation, Param, json_body, problem
from producer_api.problems import ProblemError, not_found
from producer_api.routes_transcribe import find_job, job_id_of
from schemas.events import utc_now
from storage.errors import InvalidS3UriError, ObjectNotFoundError, StorageError
from storage.keys import S3Uri
from storage.s3 import ObjectStore
from whisperstream.settings import Settings

AUDIO_URL_TTL = timedelta(hours=1)
AUDIO_SIGNER_KEY = web.AppKey("audio_signer", ObjectStore)
"""Signs URLs for S3_PUBLIC_ENDPOINT (the API's own store when that is unset)."""


def audio_signer(settings: Settings, store: ObjectStore) -> ObjectStore:
    """The client that signs audio URLs: one for S3_PUBLIC_ENDPOINT, else ``store``.
    (Signing is local: with the region configured, it needs no connection to S3.)"""
    public = settings.s3_public_endpoint
    if public is None:
        return store
    return ObjectStore.from_settings(settings.model_copy(update={"s3_endpoint": public}))


def _storage_unavailable(exc: StorageError) -> ProblemError:
    return ProblemError(
        503,
        "Service Unavailable",
        f"the audio cannot be read: {exc}",
        slug="storage-unavailable",
        headers={"Retry-After": "5"},
    )


async def job_audio(request: web.Request) -> web.Response:
    job_id = job_id_of(request)
    row = await find_job(request, job_id)
    if row is None:
        raise not_found(f"no job {job_id}")
    if not row.audio_uri:
        raise not_found(f"job {job_id} has no stored audio")
    store = request.app[STORE_KEY]
    try:
        uri = S3Uri.parse(row.audio_uri)
        # a URL of a deleted object would only fail later, in the player
        info = await asyncio.to_thread(store.stat, uri)
        signer = request.app[AUDIO_SIGNER_KEY]
        url = await asyncio.to_thread(signer.presigned_get_url, uri, AUDIO_URL_TTL)
    except (InvalidS3UriError, ObjectNotFoundError):
        raise not_found(f"the audio of job {job_id} is no longer stored") from None
    except StorageError as exc:
        raise _storage_unavailable(exc) from exc
    return web.json_response(
        {
            "url": url,
            "expires_at": (utc_now() + AUDIO_URL_TTL).isoformat(),
            "content_type": info.content_type or row.content_type,
            "size_bytes": info.size,
        },
        headers={"Cache-Control": "no-store"},
    )


def operations() -> tuple[Operation, ...]:
    return (
        Operation(
            "GET",
            "/transcribe/{job_id}/audio",
            job_audio,
            "A presigned S3 URL (valid one hour) of the job's audio, for playing it",
            "transcription",
            Access.KEY,
            params=(Param("job_id", "path", {"type": "string", "format": "uuid"}),),
            responses={
                200: json_body(
                    "The URL",
                    {
                        "type": "object",
                        "required": ["url", "expires_at"],
                        "properties": {
                            "url": {"type": "string", "format": "uri"},
                            "expires_at": {"type": "string", "format": "date-time"},
                            "content_type": {"type": ["string", "null"]},
                            "size_bytes": {"type": "integer"},
                        },
                    },
                ),
                404: problem("No such job for this key, or its audio is gone"),
                503: problem("S3 unavailable"),
            },
        ),
    )
