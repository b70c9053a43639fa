"""Process-wide logging set-up, called once by each composition root.

Two audiences. The full log (stderr; under `whisperstream up` that is the service's file
in STATE_DIR/logs/) carries our own loggers at LOG_LEVEL and other libraries' loggers at
WARNING, or everything when LOG_LEVEL=DEBUG. The activity log, the logger named
`ACTIVITY_LOGGER`, says one line per service start/ready/restart and per job; it goes to
the full log too, and under `up` also to up's terminal (WHISPERSTREAM_ACTIVITY_FD).
LOG_FORMAT=json writes one JSON object per line, with `service`, and `job_id` and
`worker_id` where known.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

from whisperstream.settings import Settings

ACTIVITY_LOGGER = "whisperstream.activity"
# loggers under these names are ours; every other one is a third-party library's
OWN_PACKAGES = (
    "whisperstream",
    "producer_api",
    "stream_workers",
    "db",
    "schemas",
    "storage",
    "ops",
    "__main__",
)
FULL_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACTIVITY_TEXT_FORMAT = "%(asctime)s %(service)-9s %(message)s"
JSON_FIELDS = "{levelname}{service}{name}{message}{job_id}{worker_id}"
# fields a JSON line leaves out when they are not known
OPTIONAL_FIELDS = ("job_id", "worker_id")

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
_process: dict[str, str | None] = {"service": None, "worker_id": None}


def activity_logger() -> logging.Logger:
    return logging.getLogger(ACTIVITY_LOGGER)


@contextlib.contextmanager
def job_log_context(job_id: str) -> Iterator[None]:
    """Every record logged in this context (task, and threads started with to_thread)."""
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def set_worker_id(worker_id: str | None) -> None:
    _process["worker_id"] = worker_id


def is_own_logger(name: str) -> bool:
    return any(name == package or name.startswith(f"{package}.") for package in OWN_PACKAGES)


class ContextFilter(logging.Filter):
    """Adds `service`, `job_id` and `worker_id` to every record a handler sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = _process["service"] or "-"
        if getattr(record, "job_id", None) is None:
            record.job_id = _job_id.get()
        if getattr(record, "worker_id", None) is None:
            record.worker_id = _process["worker_id"]
        return True


class ThirdPartyFilter(logging.Filter):
    """Other libraries' records below WARNING are dropped (their chatter, not ours).

    A filter on the handler, not logger levels: some libraries set their own loggers'
    levels, which would bypass a level set on the root logger.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or is_own_logger(record.name)


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line; `job_id` and `worker_id` only where known."""

    def __init__(self) -> None:
        super().__init__(
            JSON_FIELDS,
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        for name in OPTIONAL_FIELDS:
            if log_data.get(name) is None:
                log_data.pop(name, None)
        return log_data


def _formatter(log_format: str, text_format: str, datefmt: str | None) -> logging.Formatter:
    if log_format == "json":
        return JsonLineFormatter()
    return logging.Formatter(text_format, datefmt=datefmt)


def _handler(
    stream: TextIO, formatter: logging.Formatter, *, hide_third_party: bool
) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    if hide_third_party:
        handler.addFilter(ThirdPartyFilter())
    handler.setFormatter(formatter)
    return handler


def activity_stream(settings: Settings) -> TextIO | None:
    """Up's terminal, when `whisperstream up` passed its file descriptor."""
    fd = settings.whisperstream_activity_fd
    if fd is None:
        return None
    try:
        return os.fdopen(fd, "w", buffering=1, closefd=False)
    except OSError:
        return None  # started with the variable but without the descriptor


def configure_logging(
    settings: Settings,
    service: str,
    *,
    full: TextIO | None = None,
    activity: TextIO | None = None,
) -> None:
    """Set up this process's logging; `activity` defaults to up's terminal, if given."""
    _process["service"] = service
    _process["worker_id"] = None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(settings.log_level)
    debug = settings.log_level == "DEBUG"
    full_handler = _handler(
        full or sys.stderr,
        _formatter(settings.log_format, FULL_TEXT_FORMAT, None),
        hide_third_party=not debug,
    )
    root.addHandler(full_handler)
    logger = activity_logger()
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    # the activity lines are INFO: shown even when LOG_LEVEL asks for less elsewhere
    logger.setLevel(logging.INFO)
    terminal = activity or activity_stream(settings)
    if terminal is not None:
        logger.addHandler(
            _handler(
                terminal,
                _formatter(settings.log_format, ACTIVITY_TEXT_FORMAT, "%H:%M:%S"),
                hide_third_party=False,
            )
        )
