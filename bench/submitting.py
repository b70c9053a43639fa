"""A polite API client for whole-system runs (bench/chaos.py, bench/scale_out.py): short
clips of jfk.flac, each submitted with an `Idempotency-Key` until a 202, retrying a refused
or unanswered submit with the same key, on the next API of a list when there are several
(what a load balancer in front of them does)."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.audio import JFK_FLAC, cut

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
PROBLEM_TYPE = "application/problem+json"


@dataclass
class Submission:
    idempotency_key: str
    started: float
    job_id: str | None = None
    attempts: int = 0
    refusals: list[tuple[int, bool]] = field(default_factory=list)
    """(status, body was a problem) of each non-2xx answer"""
    errors: list[str] = field(default_factory=list)
    """transport errors (no answer at all)"""
    job_ids_seen: set[str] = field(default_factory=set)
    accepted_by: str | None = None
    """the base URL of the API that answered 202"""
    accepted_at: float | None = None


def make_clips(seed: int, lengths: tuple[float, float], folder: Path) -> list[bytes]:
    """Ten clips of jfk.flac, each between the given lengths, from across the speech."""
    rng = random.Random(seed)
    clips = []
    for index in range(10):
        length = rng.uniform(*lengths)
        start = rng.uniform(0.0, 10.5 - length)
        clips.append(cut(JFK_FLAC, folder / f"clip-{index}.flac", start, length).read_bytes())
    return clips


def _is_problem(response: httpx.Response) -> bool:
    if not response.headers.get("content-type", "").startswith(PROBLEM_TYPE):
        return False
    with contextlib.suppress(ValueError):
        body = response.json()
        return isinstance(body, dict) and "title" in body and "status" in body
    return False


def submit_until_accepted(
    submission: Submission,
    clip: bytes,
    *,
    api_urls: Sequence[str],
    admin_key: str,
    filename: str,
    callback_url: str,
    give_up_at: float,
    options: Mapping[str, str] | None = None,
) -> None:
    """Submit until a 202, with the same key, backing off; after each refusal or transport
    error the next attempt goes to the next API of `api_urls`. `options`: more form
    fields (beam_size, ...)."""
    headers = {
        "Authorization": f"Bearer {admin_key}",
        "Idempotency-Key": submission.idempotency_key,
    }
    wait = 0.5
    turn = 0
    while time.monotonic() < give_up_at:
        submission.attempts += 1
        api_url = api_urls[turn % len(api_urls)]
        turn += 1
        try:
            with httpx.Client(base_url=api_url, timeout=30) as client:
                response = client.post(
                    "/transcribe",
                    headers=headers,
                    files={"file": (filename, clip, "audio/flac")},
                    data={"model": "tiny.en", "callback_url": callback_url, **(options or {})},
                )
        except httpx.HTTPError as exc:
            submission.errors.append(type(exc).__name__)
        else:
            if response.status_code == 202:
                job_id = str(response.json()["job_id"])
                submission.job_ids_seen.add(job_id)
                submission.job_id = job_id
                submission.accepted_by = api_url
                submission.accepted_at = time.monotonic()
                return
            submission.refusals.append((response.status_code, _is_problem(response)))
            if response.status_code not in RETRYABLE:
                return
            with contextlib.suppress(ValueError):
                wait = max(wait, float(response.headers.get("retry-after", "0")))
        if len(api_urls) > 1 and turn % len(api_urls):
            continue  # another API may answer at once; back off once all have failed
        time.sleep(min(wait, 10.0))
        wait = min(wait * 2, 10.0)


def submission_failures(submissions: Sequence[Submission]) -> list[str]:
    """Every submit ended in one job; every refusal was a problem body."""
    failures = []
    for submission in submissions:
        if submission.job_id is None:
            failures.append(
                f"{submission.idempotency_key}: never accepted ({submission.refusals[-3:]})"
            )
        if len(submission.job_ids_seen) > 1:
            failures.append(
                f"{submission.idempotency_key}: retries made jobs {submission.job_ids_seen}"
            )
        fail_statuses = [status for status, problem in submission.refusals if not problem]
        if fail_statuses:
            failures.append(f"{submission.idempotency_key}: {fail_statuses} without a problem body")
    return failures
