"""Start service processes detached, remember them by PID, and stop them for sure."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from whisperstream.errors import StackError

# Popen objects of the children this process started: holding them lets `stop` reap
# the child and keeps Python from warning about a still-running subprocess.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class LaunchSpec:
    """How a process was started, so that a restart runs the very same command."""

    name: str
    argv: tuple[str, ...]
    log_path: Path
    env: Mapping[str, str] | None = None
    user: str | None = None
    cwd: Path | None = None
    pass_fds: tuple[int, ...] = ()


@dataclass(frozen=True)
class ManagedProcess:
    """A process the stack started; create_time guards against PID reuse."""

    name: str
    pid: int
    create_time: float
    log_path: str
    # known only in the process that started it (never written to stack.json: secrets)
    spec: LaunchSpec | None = field(default=None, compare=False, repr=False)

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
    pass_fds: Sequence[int] = (),
) -> ManagedProcess:
    """Start `argv` in its own session, output appended to `log_path`."""
    return relaunch(LaunchSpec(name, tuple(argv), log_path, env, user, cwd, tuple(pass_fds)))


def relaunch(spec: LaunchSpec) -> ManagedProcess:
    """Start the process `spec` describes (again)."""
    spec.log_path.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_path.open("ab") as log:
        try:
            child = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(spec.env or {})},
                cwd=spec.cwd,
                start_new_session=True,
                pass_fds=spec.pass_fds,
                **as_user(spec.user),
            )
        except OSError as exc:
            raise StackError(f"cannot start {spec.name} ({spec.argv[0]}): {exc}") from exc
    _children[child.pid] = child
    try:
        create_time = psutil.Process(child.pid).create_time()
    except psutil.NoSuchProcess as exc:
        raise StackError(f"{spec.name} exited at once; see {spec.log_path}") from exc
    return ManagedProcess(spec.name, child.pid, create_time, str(spec.log_path), spec)


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
    child = _children.get(managed.pid)
    if child is not None:
        # our own child: wait through its Popen. psutil would reap it behind the back of a
        # thread blocked in wait_for_exit, which would then read "exit status 0"
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(sig)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
    else:
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
    return log_tail(managed.log_path)


def stop_all(
    managed: Sequence[ManagedProcess], *, timeout: float = 30.0, sig: int = signal.SIGTERM
) -> None:
    """Signal every process at once, then wait for them all; SIGKILL after `timeout`."""
    alive = [proc for m in managed if (proc := _process(m)) is not None]
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)
    _gone, still = psutil.wait_procs(alive, timeout=timeout)
    for proc in still:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(still, timeout=10)
    for m in managed:
        _reap(m.pid)


def wait_for_exit(managed: ManagedProcess) -> int | None:
    """Block until a child this process started exits: its return code (-N: signal N).

    None for a process started elsewhere, whose status cannot be had.
    """
    child = _children.get(managed.pid)
    if child is None:
        while is_alive(managed):
            time.sleep(0.5)
        return None
    code = child.wait()
    _children.pop(managed.pid, None)
    return code


def kill_leftovers(managed: ManagedProcess, timeout: float = 10.0) -> None:
    """SIGKILL what is left of the process group of a service that exited.

    A service killed with SIGKILL can leave children behind (engine processes, helper
    processes) that hold its ports or memory; each service leads its own group.
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(managed.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(managed.pid):
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                return True
    return False


def describe_exit(code: int | None) -> str:
    """`exit status 1`, `killed by SIGKILL`, or `exit status unknown`."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def log_tail(path: str | Path, lines: int = 15) -> str:
    """The last lines of a log file, to explain why a process ended."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
