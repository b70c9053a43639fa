"""Issue 8, end to end: the system as a user meets it, over HTTP, Kafka and the CLI only.

jfk.flac through each engine and every output format; a request produced straight to
Kafka by an upstream system, and who may see it in `GET /jobs`.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.audio import JFK_REFERENCE, JFK_SECONDS, word_error_rate
from tests.support.system import System, UserKey

pytestmark = pytest.mark.e2e

MAX_WER = 0.05
ENGINES = ("faster-whisper", "openai-whisper")
UPSTREAM_PRODUCER = Path(__file__).resolve().parents[2] / "examples" / "upstream_producer.py"
MAX_LIST_PAGES = 50
_SRT_TIME = r"(\d\d):(\d\d):(\d\d),(\d{3})"
_VTT_TIME = r"(\d\d):(\d\d):(\d\d)\.(\d{3})"
SRT_CUE = re.compile(rf"^(\d+)\n{_SRT_TIME} --> {_SRT_TIME}\n(.+)$")
VTT_CUE = re.compile(rf"^{_VTT_TIME} --> {_VTT_TIME}\n(.+)$")


@dataclass(frozen=True)
class Cue:
    start_ms: int
    end_ms: int
    text: str


def _ms(hours: str, minutes: str, seconds: str, millis: str) -> int:
    return ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1000 + int(millis)


def _blocks(body: str) -> list[str]:
    return [block for block in body.strip("\n").split("\n\n") if block]


def parse_srt(body: str) -> list[Cue]:
    cues = []
    for number, block in enumerate(_blocks(body), start=1):
        match = SRT_CUE.match(block)
        assert match is not None, f"not an SRT cue: {block!r}"
        assert int(match.group(1)) == number, f"cue numbers must count from 1: {body!r}"
        cues.append(Cue(_ms(*match.group(2, 3, 4, 5)), _ms(*match.group(6, 7, 8, 9)), match[10]))
    return cues


def parse_vtt(body: str) -> list[Cue]:
    assert body.startswith("WEBVTT\n\n"), body[:40]
    cues = []
    for block in _blocks(body.removeprefix("WEBVTT\n\n")):
        match = VTT_CUE.match(block)
        assert match is not None, f"not a WebVTT cue: {block!r}"
        cues.append(Cue(_ms(*match.group(1, 2, 3, 4)), _ms(*match.group(5, 6, 7, 8)), match[9]))
    return cues


def parse_tsv(body: str) -> list[Cue]:
    assert body.endswith("\n")
    header, *rows = body.removesuffix("\n").split("\n")
    assert header == "start\tend\ttext"
    cues = []
    for row in rows:
        fields = row.split("\t")
        assert len(fields) == 3, f"a TSV row has start, end and text: {row!r}"
        assert fields[0].isdigit(), row
        assert fields[1].isdigit(), row
        cues.append(Cue(int(fields[0]), int(fields[1]), fields[2]))
    return cues


def segment_cues(document: dict[str, Any]) -> list[Cue]:
    """What every timed format should show: the JSON document's segments, in ms."""
    return [
        Cue(round(s["start"] * 1000), round(s["end"] * 1000), s["text"].strip())
        for s in document["segments"]
    ]


def assert_timeline(cues: list[Cue], audio_seconds: float) -> None:
    assert cues
    assert all(0 <= cue.start_ms <= cue.end_ms for cue in cues), cues
    assert all(a.start_ms <= b.start_ms for a, b in itertools.pairwise(cues)), cues
    assert cues[-1].end_ms <= (audio_seconds + 0.5) * 1000, cues


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


def submit(client: httpx.Client, audio: Path, **fields: str) -> str:
    response = client.post(
        "/transcribe",
        data=fields,
        files={"file": (audio.name, audio.read_bytes(), "audio/flac")},
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "pending"
    job_id: str = accepted["job_id"]
    return job_id


def list_job_ids(client: httpx.Client, **params: str) -> set[str]:
    """Every job id `GET /jobs` shows this key, following the cursor page by page."""
    found: set[str] = set()
    query: dict[str, str | int] = {"limit": 100, **params}
    for _ in range(MAX_LIST_PAGES):
        response = client.get("/jobs", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        found.update(item["job_id"] for item in page["items"])
        if page["next_cursor"] is None:
            return found
        query["cursor"] = page["next_cursor"]
    raise AssertionError(f"GET /jobs still had pages after {MAX_LIST_PAGES}")


@pytest.mark.parametrize("engine", ENGINES)
def test_jfk_over_http_with_each_engine_in_every_format(
    system: System, jfk_flac: Path, engine: str
) -> None:
    with system.http() as client:
        job_id = submit(client, jfk_flac, engine=engine, model="tiny.en")
        job = system.wait_for_job(job_id)
        assert job["status"] == "completed", job
        assert job["error"] is None
        assert job["progress"] == 1.0
        assert job["started_at"] is not None
        assert moment(job["created_at"]) <= moment(job["started_at"]) <= moment(job["completed_at"])
        result = job["result"]
        assert result["engine"] == engine
        assert result["model_used"] == "tiny.en"
        assert result["language"] == "en"
        assert result["duration"] == pytest.approx(JFK_SECONDS, abs=0.1)
        assert word_error_rate(JFK_REFERENCE, result["text"]) <= MAX_WER, result["text"]

        bodies: dict[str, httpx.Response] = {}
        for fmt in ("json", "text", "srt", "vtt", "tsv"):
            bodies[fmt] = client.get(f"/transcribe/{job_id}", params={"format": fmt})
            assert bodies[fmt].status_code == 200, (fmt, bodies[fmt].text)

    expected_types = {
        "json": "application/json",
        "text": "text/plain",
        "srt": "application/x-subrip",
        "vtt": "text/vtt",
        "tsv": "text/tab-separated-values",
    }
    for fmt, content_type in expected_types.items():
        assert bodies[fmt].headers["content-type"].split(";")[0] == content_type, fmt

    document = json.loads(bodies["json"].text)
    assert document["job_id"] == job_id
    assert document["engine"] == engine
    assert document["model"] == "tiny.en"
    assert document["language"] == "en"
    assert word_error_rate(JFK_REFERENCE, document["text"]) <= MAX_WER
    for segment in document["segments"]:
        assert isinstance(segment["start"], int | float)
        assert isinstance(segment["end"], int | float)
        assert isinstance(segment["text"], str)
    expected = segment_cues(document)
    assert_timeline(expected, JFK_SECONDS)
    joined = " ".join(cue.text for cue in expected)
    assert word_error_rate(JFK_REFERENCE, joined) <= MAX_WER, joined

    text = bodies["text"].text
    assert text.endswith("\n")
    assert text.strip() == document["text"].strip()
    assert word_error_rate(JFK_REFERENCE, text) <= MAX_WER, text

    # each timed format shows exactly the document's segments, times to the millisecond
    for fmt, parse in (("srt", parse_srt), ("vtt", parse_vtt), ("tsv", parse_tsv)):
        cues = parse(bodies[fmt].text)
        assert cues == expected, (fmt, bodies[fmt].text)


def test_request_produced_to_kafka_completes_and_is_listed_for_its_owner_only(
    system: System, jfk_flac: Path
) -> None:
    owner = system.create_key("upstream-owner")
    stranger = system.create_key("another-user")
    settings = system.settings
    produced = subprocess.run(
        [
            sys.executable,
            str(UPSTREAM_PRODUCER),
            str(jfk_flac),
            "--bootstrap",
            settings.kafka_bootstrap_servers,
            "--topic",
            settings.topic_requests_normal,
            "--s3-endpoint",
            settings.s3_endpoint,
            "--access-key",
            settings.s3_access_key,
            "--secret-key",
            settings.s3_secret_key.get_secret_value(),
            "--bucket",
            settings.audio_bucket,
            "--owner",
            owner.owner,
        ],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert produced.returncode == 0, produced.stdout + produced.stderr
    job_id = produced.stdout.strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", job_id), produced.stdout

    job = system.wait_for_job(job_id)
    assert job["status"] == "completed", job
    assert job["original_filename"] == "jfk.flac"
    assert word_error_rate(JFK_REFERENCE, job["result"]["text"]) <= MAX_WER, job

    assert_listed(system, owner, stranger, job_id)


def assert_listed(system: System, owner: UserKey, stranger: UserKey, job_id: str) -> None:
    with system.http(owner.key) as client:
        assert job_id in list_job_ids(client)
        assert job_id in list_job_ids(client, status="completed")
        own = client.get(f"/transcribe/{job_id}")
        assert own.status_code == 200, own.text
        assert own.json()["status"] == "completed"
        assert client.get(f"/transcribe/{job_id}", params={"format": "text"}).status_code == 200
    with system.http() as admin:
        assert job_id in list_job_ids(admin)
        assert list_job_ids(admin, owner=owner.owner) == {job_id}
        assert list_job_ids(admin, owner=stranger.owner) == set()
    with system.http(stranger.key) as client:
        assert job_id not in list_job_ids(client)
        hidden = client.get(f"/transcribe/{job_id}")
        assert hidden.status_code == 404, hidden.text
        assert client.delete(f"/transcribe/{job_id}").status_code == 404
