"""The supervisor's state file: restarts per service, read by the API's /admin/health.

`whisperstream up` writes it (atomically: a temporary file renamed over it) and passes
its path to the services in WHISPERSTREAM_SUPERVISOR_STATE.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

STATE_FILE = "supervisor.json"


@dataclass
class ServiceRecord:
    pid: int | None = None
    running: bool = False
    restarts: int = 0
    last_exit: str | None = None
    last_exit_code: int | None = None
    last_restart_at: str | None = None


@dataclass
class SupervisorState:
    """What `up` knows of its services; every change is written to `path` at once."""

    path: Path
    supervisor_pid: int = field(default_factory=os.getpid)
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def started(self, name: str, pid: int) -> None:
        with self._lock:
            record = self.services.setdefault(name, ServiceRecord())
            record.pid, record.running = pid, True
            self._write()

    def exited(self, name: str, code: int | None, description: str) -> None:
        with self._lock:
            record = self.services.setdefault(name, ServiceRecord())
            record.running = False
            record.last_exit, record.last_exit_code = description, code
            self._write()

    def restarted(self, name: str, pid: int) -> None:
        with self._lock:
            record = self.services.setdefault(name, ServiceRecord())
            record.pid, record.running = pid, True
            record.restarts += 1
            record.last_restart_at = datetime.now(UTC).isoformat()
            self._write()

    def to_json(self) -> dict[str, Any]:
        return {
            "supervisor_pid": self.supervisor_pid,
            "services": {name: asdict(record) for name, record in self.services.items()},
        }

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".supervisor-")
        with os.fdopen(handle, "w") as out:
            json.dump(self.to_json(), out, indent=2)
        Path(temporary).replace(self.path)

    def remove(self) -> None:
        with self._lock:
            self.path.unlink(missing_ok=True)


def read_state(path: Path) -> dict[str, Any] | None:
    """The state file's content, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
