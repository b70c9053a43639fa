"""Logging: JSON lines with service/job/worker fields, third-party chatter, the activity log."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from whisperstream.errors import SettingsError
from whisperstream.logs import (
    activity_logger,
    configure_logging,
    job_log_context,
    set_worker_id,
)
from whisperstream.settings import load_settings


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for logger in (root, activity_logger()):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _configure(
    log_level: str = "INFO", log_format: str = "text"
) -> tuple[io.StringIO, io.StringIO]:
    full, terminal = io.StringIO(), io.StringIO()
    settings = load_settings(log_level=log_level, log_format=log_format)
    configure_logging(settings, "worker", full=full, activity=terminal)
    return full, terminal


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_lines_carry_service_job_and_worker() -> None:
    full, terminal = _configure(log_format="json")
    set_worker_id("worker-7")
    try:
        with job_log_context("job-42"):
            logging.getLogger("stream_workers.job").info("transcribing %s", "jfk.flac")
            activity_logger().info("job job-42 completed")
        logging.getLogger("stream_workers.pool").warning("outside any job")
    finally:
        set_worker_id(None)
    lines = _json_lines(full.getvalue())
    assert [line["message"] for line in lines] == [
        "transcribing jfk.flac",
        "job job-42 completed",
        "outside any job",
    ]
    assert all(line["service"] == "worker" and line["worker_id"] == "worker-7" for line in lines)
    assert lines[0]["job_id"] == lines[1]["job_id"] == "job-42"
    assert lines[0]["level"] == "INFO"
    assert lines[0]["logger"] == "stream_workers.job"
    assert "time" in lines[0]
    # unknown is left out, not written as null
    assert "job_id" not in lines[2]
    # the terminal gets the activity line only, as JSON too
    assert [line["message"] for line in _json_lines(terminal.getvalue())] == [
        "job job-42 completed"
    ]


def test_an_explicit_job_id_wins_over_the_context() -> None:
    full, _terminal = _configure(log_format="json")
    with job_log_context("another-job"):
        activity_logger().info("job j-1 accepted", extra={"job_id": "j-1"})
    (line,) = _json_lines(full.getvalue())
    assert line["job_id"] == "j-1"
    assert "worker_id" not in line


def test_third_party_info_is_hidden_at_info() -> None:
    full, terminal = _configure(log_level="INFO")
    logging.getLogger("aiokafka.consumer").info("joined group")
    logging.getLogger("faust.transport").info("starting")
    logging.getLogger("aiokafka.consumer").warning("heartbeat failed")
    logging.getLogger("producer_api.submission").info("our own line")
    text = full.getvalue()
    assert "joined group" not in text
    assert "starting" not in text
    assert "heartbeat failed" in text
    assert "our own line" in text
    assert terminal.getvalue() == ""


def test_a_library_that_sets_its_own_level_stays_quiet() -> None:
    full, _terminal = _configure(log_level="INFO")
    chatty = logging.getLogger("faust.chatty")
    chatty.setLevel(logging.DEBUG)
    try:
        chatty.info("banner")
    finally:
        chatty.setLevel(logging.NOTSET)
    assert "banner" not in full.getvalue()


def test_everything_is_shown_at_debug() -> None:
    full, _terminal = _configure(log_level="DEBUG")
    logging.getLogger("aiokafka.consumer").info("joined group")
    logging.getLogger("aiokafka.consumer").debug("fetch request")
    text = full.getvalue()
    assert "joined group" in text
    assert "fetch request" in text


def test_activity_lines_show_even_when_the_level_asks_for_less() -> None:
    full, terminal = _configure(log_level="WARNING")
    logging.getLogger("stream_workers.job").info("detail")
    activity_logger().info("job j-2 completed in 1.0s (faster-whisper tiny.en)")
    assert "detail" not in full.getvalue()
    assert "job j-2 completed" in full.getvalue()
    (line,) = terminal.getvalue().splitlines()
    # text format on the terminal: time, service, message
    assert line.endswith("worker    job j-2 completed in 1.0s (faster-whisper tiny.en)")


def test_an_unknown_log_format_is_rejected_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="LOG_FORMAT") as caught:
        load_settings()
    assert "'text' or 'json'" in str(caught.value)
