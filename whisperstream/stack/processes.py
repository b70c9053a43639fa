"""Start service processes detached, remember them by PID, and stop them for sure."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from whisperstream.errors import StackError

# Popen objects of the children this process started: holding them lets `stop` reap
# the child and keeps Python from warning about a still-running subprocess.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ManagedProcess:
    """A process the stack started; create_time guards against PID reuse."""

    name: str
    pid: int
    create_time: float
    log_path: str

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "pid": self.pid,
            "create_time": self.create_time,
            "log_path": self.log_path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ManagedProcess:
        return cls(
            name=str(data["name"]),
            pid=int(str(data["pid"])),
            create_time=float(str(data["create_time"])),
            log_path=str(data["log_path"]),
        )


def launch(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    """Start `argv` in its own session, output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        try:
            child = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
                **as_user(user),
            )
        except OSError as exc:
            raise StackError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    _children[child.pid] = child
    try:
        create_time = psutil.Process(child.pid).create_time()
    except psutil.NoSuchProcess as exc:
        raise StackError(f"{name} exited at once; see {log_path}") from exc
    return ManagedProcess(name, child.pid, create_time, str(log_path))


def as_user(user: str | None) -> dict[str, Any]:
    """subprocess arguments that run a child as `user` with that user's groups only.

    Changing the uid alone would keep root's groups, and then the group bits of
    root-owned directories would lock the child out of them.
    """
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _process(managed: ManagedProcess) -> psutil.Process | None:
    try:
        proc = psutil.Process(managed.pid)
        if abs(proc.create_time() - managed.create_time) > 0.5:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(managed.pid)
            return None
    except psutil.NoSuchProcess:
        return None
    return proc


def is_alive(managed: ManagedProcess) -> bool:
    return _process(managed) is not None


def _reap(pid: int) -> None:
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()


def stop(managed: ManagedProcess, *, timeout: float = 20.0, sig: int = signal.SIGTERM) -> None:
    """Signal the process and wait for it to exit; SIGKILL after `timeout` seconds."""
    proc = _process(managed)
    if proc is None:
        _reap(managed.pid)
        return
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    _reap(managed.pid)


def exited_early(managed: ManagedProcess) -> str | None:
    """If the process is gone, the tail of its log, to explain why."""
    if is_alive(managed):
        return None
    try:
        tail = Path(managed.log_path).read_text(errors="replace").splitlines()[-15:]
    except OSError:
        tail = []
    return "\n".join(tail)
