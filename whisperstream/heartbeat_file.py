"""A file whose modification time says "this process was working just now".

Workers touch it after each heartbeat reaches Kafka, the projector after each poll of
its batch loop; a container probe (``python -m whisperstream.probe file PATH MAX_AGE``)
reads its age. Processes without an HTTP port get a readiness signal this way.
"""

from __future__ import annotations

import time
from pathlib import Path


class HeartbeatFile:
    """Touches ``path`` at most once per ``min_interval_s``; does nothing without a path."""

    def __init__(self, path: Path | None, min_interval_s: float = 1.0) -> None:
        self._path = path
        self._min_interval_s = min_interval_s
        self._last = float("-inf")

    def beat(self) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._last < self._min_interval_s:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.touch()
        self._last = now
