"""A Server-Sent Events reader for tests: parses the stream as a browser's EventSource
would (id, event, data; comments and the retry field kept apart) on a thread of its own."""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SseEvent:
    id: str | None
    event: str
    data: dict[str, Any]


def parse_lines(
    lines: Iterator[str],
    on_event: Callable[[SseEvent], None],
    on_comment: Callable[[str], None] = lambda _line: None,
) -> None:
    """Feed each complete event to ``on_event`` and each comment line to ``on_comment``."""
    event_id: str | None = None
    name = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                on_event(SseEvent(event_id, name, json.loads("\n".join(data))))
            name, data = "message", []
            continue
        if line.startswith(":"):
            on_comment(line)
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "id":
            event_id = value
        elif key == "event":
            name = value
        elif key == "data":
            data.append(value)


class SseStream:
    """Reads ``url`` on a thread; ``until`` waits for the events the test needs."""

    def __init__(self, base_url: str, path: str, key: str, last_event_id: str | None = None):
        headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self._client = httpx.Client(
            base_url=base_url, headers=headers, timeout=httpx.Timeout(30, read=None)
        )
        self._path = path
        self._queue: queue.Queue[SseEvent | None] = queue.Queue()
        self.events: list[SseEvent] = []
        self.status: int | None = None
        self.comments = 0
        self.ended = threading.Event()
        self.commented = threading.Event()
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> SseStream:
        self._thread.start()
        assert self._opened.wait(30), f"{self._path} did not answer"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.close()
        self._thread.join(10)

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self._path) as response:
                self.status = response.status_code
                self._opened.set()
                if response.status_code == 200:
                    parse_lines(response.iter_lines(), self._queue.put, self._comment)
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by __exit__
        finally:
            self._opened.set()
            self.ended.set()
            self._queue.put(None)

    def _comment(self, _line: str) -> None:
        self.comments += 1
        self.commented.set()

    def until(self, done: Callable[[SseEvent], bool], timeout: float = 180) -> list[SseEvent]:
        """Events read so far and up to the first that is ``done``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no such event after {timeout}s: {self.events}"
            with contextlib.suppress(queue.Empty):
                item = self._queue.get(timeout=min(remaining, 1.0))
                if item is None:
                    raise AssertionError(f"the stream ended first: {self.events}")
                self.events.append(item)
                if done(item):
                    return list(self.events)

    def rest(self, timeout: float = 60) -> list[SseEvent]:
        """Every event until the server ends the stream."""
        assert self.ended.wait(timeout), f"the stream did not end: {self.events}"
        while (item := self._queue.get(timeout=5)) is not None:
            self.events.append(item)
        return list(self.events)


def completed_job(job_id: str) -> Callable[[SseEvent], bool]:
    return lambda e: e.data.get("job_id") == job_id and e.data.get("status") == "completed"


def ended_job(job_id: str) -> Callable[[SseEvent], bool]:
    terminal = {"completed", "failed", "cancelled"}
    return lambda e: e.data.get("job_id") == job_id and e.data.get("status") in terminal
