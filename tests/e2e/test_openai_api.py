"""Issue 14: the OpenAI-compatible audio API on the running system, driven by the real
`openai` SDK: every response_format, word and segment granularities, translations,
/v1/models, and the errors the SDK raises as its own exception classes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import openai
import pytest
from openai.types.audio import Transcription, TranscriptionVerbose, Translation

from tests.e2e.test_whole_system import parse_srt, parse_vtt
from tests.support.audio import JFK_REFERENCE, JFK_SECONDS, word_error_rate
from tests.support.system import System, UserKey

pytestmark = pytest.mark.e2e

MAX_WER = 0.05


@pytest.fixture(scope="module")
def caller(system: System) -> UserKey:
    return system.create_key("openai-sdk")


@pytest.fixture(scope="module")
def client(system: System, caller: UserKey) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{system.api_url}/v1", api_key=caller.key, max_retries=0, timeout=300
    ) as sdk:
        yield sdk


def _close_to_reference(text: str) -> None:
    assert word_error_rate(JFK_REFERENCE, text) <= MAX_WER, text


def test_json_is_a_transcription_and_the_request_is_an_ordinary_job(
    system: System, client: openai.OpenAI, jfk_flac: Path
) -> None:
    raw = client.audio.transcriptions.with_raw_response.create(file=jfk_flac, model="whisper-1")
    result = raw.parse()
    assert isinstance(result, Transcription)
    _close_to_reference(result.text)
    assert set(json.loads(raw.text)) <= {"text", "usage", "logprobs"}
    # a high-priority job of the caller's key, listed like any other
    job_id = raw.headers["x-whisperstream-job-id"]
    job = system.wait_for_job(job_id)  # Postgres follows the status topic shortly
    assert job["status"] == "completed"
    assert job["priority"] == "high"
    assert job["model"] == system.settings.whisper_model_size


@pytest.mark.parametrize("response_format", ["text", "srt", "vtt"])
def test_text_formats_come_back_as_text(
    client: openai.OpenAI, jfk_flac: Path, response_format: Literal["text", "srt", "vtt"]
) -> None:
    body = client.audio.transcriptions.create(
        file=jfk_flac, model="whisper-1", response_format=response_format
    )
    assert isinstance(body, str)
    if response_format == "text":
        _close_to_reference(body)
        return
    cues = parse_srt(body) if response_format == "srt" else parse_vtt(body)
    assert cues, body
    assert cues[-1].end_ms <= JFK_SECONDS * 1000 + 500
    _close_to_reference(" ".join(cue.text for cue in cues))


def test_verbose_json_has_openais_segments(client: openai.OpenAI, jfk_flac: Path) -> None:
    result = client.audio.transcriptions.create(
        file=jfk_flac, model="whisper-1", response_format="verbose_json", temperature=0.0
    )
    assert isinstance(result, TranscriptionVerbose)
    assert result.language == "english"
    assert result.duration == pytest.approx(JFK_SECONDS, abs=0.5)
    _close_to_reference(result.text)
    assert result.segments
    assert result.words is None
    for index, segment in enumerate(result.segments):
        assert segment.id == index
        assert segment.seek == round(segment.start * 100)
        assert 0 <= segment.start < segment.end <= JFK_SECONDS + 0.5
        assert segment.tokens
        assert segment.temperature == 0.0
        assert segment.avg_logprob < 0
        assert segment.compression_ratio > 0
        assert 0 <= segment.no_speech_prob <= 1


@pytest.mark.parametrize(
    "granularities", [["word"], ["word", "segment"]], ids=["word", "word+segment"]
)
def test_word_and_segment_granularities(
    client: openai.OpenAI, jfk_flac: Path, granularities: list[Literal["word", "segment"]]
) -> None:
    result = client.audio.transcriptions.create(
        file=jfk_flac,
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=granularities,
    )
    assert isinstance(result, TranscriptionVerbose)
    assert result.words
    spoken = " ".join(word.word.strip() for word in result.words)
    _close_to_reference(spoken)
    starts = [word.start for word in result.words]
    assert starts == sorted(starts)
    assert all(word.start <= word.end for word in result.words)
    if "segment" in granularities:
        assert result.segments
    else:
        assert result.segments is None


def test_translation_and_an_installed_model_by_name(client: openai.OpenAI, jfk_flac: Path) -> None:
    translated = client.audio.translations.create(file=jfk_flac, model="tiny.en")
    assert isinstance(translated, Translation)
    _close_to_reference(translated.text)
    verbose = client.audio.translations.create(
        file=jfk_flac, model="whisper-1", response_format="verbose_json"
    )
    assert verbose.language == "english"


def test_models_lists_whisper_1_and_the_installed_models(client: openai.OpenAI) -> None:
    models = client.models.list()
    names = [model.id for model in models]
    assert names[0] == "whisper-1"
    assert "tiny.en" in names
    assert all(model.object == "model" for model in models)


def test_an_unknown_model_is_model_not_found(client: openai.OpenAI, jfk_flac: Path) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        client.audio.transcriptions.create(file=jfk_flac, model="whisper-9-enormous")
    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"
    assert raised.value.type == "invalid_request_error"


def test_a_request_without_a_file_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.post(
            "/audio/transcriptions",
            body={"model": "whisper-1"},
            cast_to=Transcription,
            options={"headers": {"Content-Type": "multipart/form-data"}},
        )
    assert raised.value.param == "file"
    assert raised.value.type == "invalid_request_error"


def test_a_file_that_is_not_audio_is_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.audio.transcriptions.create(
            file=("notes.txt", b"these are not the sounds you are looking for\n" * 20),
            model="whisper-1",
        )
    assert raised.value.param == "file"
    assert "audio" in raised.value.message


def test_a_wrong_key_is_an_authentication_error(system: System, jfk_flac: Path) -> None:
    with (
        openai.OpenAI(base_url=f"{system.api_url}/v1", api_key="wsk_wrong", max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as raised,
    ):
        sdk.audio.transcriptions.create(file=jfk_flac, model="whisper-1")
    assert raised.value.code == "invalid_api_key"
    body = raised.value.body
    assert isinstance(body, dict)
    assert set(body) == {"message", "type", "param", "code"}
