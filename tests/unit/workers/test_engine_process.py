"""A model in its own engine process: the protocol around the engine, with a real child.

The engine's results through a child process are covered beside the in-process ones in
test_engines.py; this file covers what only the child brings: errors crossing the pipe,
a child that dies, a stopped job leaving the model usable, and the child's end.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from stream_workers import audio
from stream_workers.engines.base import ModelKey, Samples, TranscribeRequest
from stream_workers.engines.process import EngineSpec, ProcessTranscriber, _portable
from stream_workers.errors import InvalidOptionsError, JobCancelledError, ModelUnusableError
from stream_workers.models.catalog import ModelCatalog

KEY = ModelKey("openai-whisper", "tiny.en", "float32")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> EngineSpec:
    catalog = ModelCatalog(None, tmp_path_factory.mktemp("model-cache"))
    return EngineSpec(KEY, catalog.resolve(KEY.engine, KEY.model), "cpu", 1, 8)


@pytest.fixture(scope="module")
def samples(jfk_flac: Path) -> Samples:
    return audio.decode(jfk_flac, max_seconds=60)


@pytest.fixture
def model(spec: EngineSpec) -> Iterator[ProcessTranscriber]:
    transcriber = ProcessTranscriber(spec)
    try:
        yield transcriber
    finally:
        transcriber.close()


def _ignore(_done: float, _total: float) -> None:
    return None


def test_the_model_runs_in_a_child_process_that_close_ends(spec: EngineSpec) -> None:
    transcriber = ProcessTranscriber(spec)
    pid = transcriber.pid
    assert pid is not None
    assert pid != os.getpid()
    assert psutil.Process(pid).ppid() == os.getpid()
    transcriber.close()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_stopped_job_leaves_the_model_usable(model: ProcessTranscriber, samples: Samples) -> None:
    def cancel(_done: float, _total: float) -> None:
        raise JobCancelledError("cancelled by the test")

    with pytest.raises(JobCancelledError, match="cancelled by the test"):
        model.transcribe(samples, TranscribeRequest(), cancel)
    result = model.transcribe(samples, TranscribeRequest(), _ignore)
    assert "country" in result.text


def test_an_engine_error_keeps_its_type_and_carries_the_child_traceback(
    model: ProcessTranscriber, samples: Samples
) -> None:
    with pytest.raises(InvalidOptionsError, match="English-only") as caught:
        model.transcribe(samples, TranscribeRequest(language="fr"), _ignore)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "in the engine process" in notes
    assert "Traceback" in notes
    # the failure was the job's, not the model's
    assert "country" in model.transcribe(samples, TranscribeRequest(), _ignore).text


def test_a_child_that_dies_makes_the_model_unusable(
    model: ProcessTranscriber, samples: Samples
) -> None:
    assert model.pid is not None
    os.kill(model.pid, signal.SIGKILL)
    with pytest.raises(ModelUnusableError, match="died"):
        model.transcribe(samples, TranscribeRequest(), _ignore)
    with pytest.raises(ModelUnusableError, match="gone"):
        model.transcribe(samples, TranscribeRequest(), _ignore)


def test_a_load_failure_is_raised_by_the_constructor(tmp_path: Path) -> None:
    missing = EngineSpec(KEY, tmp_path / "no-such-model", "cpu", 1, 8)
    with pytest.raises(Exception, match="no-such-model") as caught:
        ProcessTranscriber(missing)
    assert not isinstance(caught.value, ModelUnusableError)
    assert "in the engine process" in "\n".join(getattr(caught.value, "__notes__", []))


class _TwoArgumentError(Exception):
    def __init__(self, first: str, second: str) -> None:
        super().__init__(f"{first} and {second}")


def test_an_exception_that_cannot_cross_the_pipe_arrives_as_its_text() -> None:
    try:
        raise _TwoArgumentError("this", "that")
    except _TwoArgumentError as exc:
        portable = _portable(exc)
    assert isinstance(portable, RuntimeError)
    assert "_TwoArgumentError: this and that" in str(portable)
    assert "in the engine process" in portable.__notes__[0]
