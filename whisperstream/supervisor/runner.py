"""Watch each service in a thread of its own; restart it when it exits, or give up.

The decisions are `CrashHistory`'s; this module does the process handling: waiting for
an exit, clearing what the dead process left behind, starting it again, and stopping
everything in order.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from whisperstream.errors import StackError
from whisperstream.stack import processes
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.processes import LaunchSpec, ManagedProcess
from whisperstream.supervisor.policy import CrashHistory, GiveUp, RestartPolicy
from whisperstream.supervisor.state import SupervisorState

LOG_TAIL_LINES = 15


class Unit(Protocol):
    """One supervised service."""

    name: str

    @property
    def process(self) -> ManagedProcess: ...

    def launch(self) -> ManagedProcess:
        """Start it (again); quick, run under the supervisor's launch lock."""
        ...

    def await_ready(self) -> None:
        """Wait until it serves; StackError if it does not."""
        ...


class ServiceUnit:
    """A service process of ours (API, worker, projector)."""

    def __init__(self, spec: LaunchSpec) -> None:
        self.name = spec.name
        self._spec = spec
        self._process: ManagedProcess | None = None

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._process

    def launch(self) -> ManagedProcess:
        self._process = processes.relaunch(self._spec)
        return self._process

    def await_ready(self) -> None:
        """Nothing to wait for: the service says itself when it is ready."""


class StackUnit:
    """A process of the local stack (broker, S3, Postgres) that this `up` started."""

    def __init__(self, stack: LocalStack, name: str) -> None:
        self.name = name
        self._stack = stack

    @property
    def process(self) -> ManagedProcess:
        return self._stack.launched[self.name]

    def launch(self) -> ManagedProcess:
        return self._stack.relaunch(self.name)

    def await_ready(self) -> None:
        self._stack.await_ready(self.name)


@dataclass(frozen=True)
class GaveUp:
    """The service that crashed too often, and why the supervisor stopped."""

    name: str
    crashes: int
    last_exit: str
    log_path: str
    log_tail: str

    def message(self, window_s: float) -> str:
        return (
            f"{self.name} crashed {self.crashes} times within {window_s / 60:.0f} min "
            f"(last: {self.last_exit}); stopping everything. The end of its log "
            f"({self.log_path}):\n{self.log_tail}"
        )


class Supervisor:
    def __init__(
        self,
        units: Sequence[Unit],
        state: SupervisorState,
        log: logging.Logger,
        *,
        policy: RestartPolicy | None = None,
        dependents: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`dependents`: the services to restart after a service came back (a broker that
        kept its data in memory comes back empty, and its clients' state is then void)."""
        self._units = {unit.name: unit for unit in units}
        self._dependents = dependents or {}
        self._planned: set[str] = set()
        self._state = state
        self._log = log
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._stopping = threading.Event()
        self._launch_lock = threading.Lock()
        self._gave_up: GaveUp | None = None
        self._given_up = threading.Event()
        self._threads: list[threading.Thread] = []

    def watch(self, unit: Unit) -> None:
        """Supervise a unit that is running now."""
        self._units[unit.name] = unit
        self._state.started(unit.name, unit.process.pid)
        thread = threading.Thread(
            target=self._watch, args=(unit,), name=f"supervise-{unit.name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def wait(self, poll_s: float = 0.5) -> GaveUp | None:
        """Block until a service gave up; returns at once on a signal in the main thread."""
        while not self._given_up.wait(poll_s):
            pass
        return self._gave_up

    def _watch(self, unit: Unit) -> None:
        history = CrashHistory(self.policy)
        started_at = self._clock()
        code = processes.wait_for_exit(unit.process)
        while not self._stopping.is_set():
            last_exit = processes.describe_exit(code)
            self._state.exited(unit.name, code, last_exit)
            processes.kill_leftovers(unit.process)
            delay = 0.0
            if not self._take_planned(unit.name):
                decision = history.crashed(started_at=started_at, now=self._clock())
                if isinstance(decision, GiveUp):
                    self._give_up(unit, decision.crashes_in_window, last_exit)
                    return
                delay = decision.delay_s
                self._log.warning(
                    "%s exited (%s); restarting in %.0fs (crash %d in %.0f min; at %d up stops)",
                    unit.name,
                    last_exit,
                    delay,
                    decision.crashes_in_window,
                    self.policy.window_s / 60,
                    self.policy.max_crashes,
                )
            if self._stopping.wait(delay):
                return
            started_at = self._clock()
            with self._launch_lock:
                if self._stopping.is_set():
                    return
                try:
                    proc = unit.launch()
                except StackError as exc:
                    self._log.error("%s did not start: %s", unit.name, exc)
                    code = None
                    continue
            self._state.restarted(unit.name, proc.pid)
            self._log.info("%s restarted (pid %d)", unit.name, proc.pid)
            try:
                unit.await_ready()
            except StackError as exc:
                if self._stopping.is_set():
                    return
                self._log.error("%s did not come back: %s", unit.name, exc)
                processes.kill_leftovers(proc)
            else:
                self._restart_dependents(unit.name)
            code = processes.wait_for_exit(proc)

    def _take_planned(self, name: str) -> bool:
        with self._launch_lock:
            if name in self._planned:
                self._planned.discard(name)
                return True
            return False

    def _restart_dependents(self, name: str) -> None:
        for dependent in self._dependents.get(name, ()):
            unit = self._units.get(dependent)
            if unit is None:
                continue
            with self._launch_lock:
                if self._stopping.is_set():
                    return
                self._planned.add(dependent)
            self._log.info("restarting %s: %s came back without its data", dependent, name)
            # its watcher sees the exit and starts it again at once
            threading.Thread(
                target=processes.stop,
                args=(unit.process,),
                kwargs={"timeout": 10.0, "sig": signal.SIGTERM},
                daemon=True,
            ).start()

    def _give_up(self, unit: Unit, crashes: int, last_exit: str) -> None:
        log_path = unit.process.log_path
        tail = processes.log_tail(Path(log_path), LOG_TAIL_LINES)
        with self._launch_lock:
            if self._gave_up is None:
                self._gave_up = GaveUp(unit.name, crashes, last_exit, log_path, tail)
        self._given_up.set()

    def stop(self, services: Sequence[Unit], timeout_s: float = 30.0) -> None:
        """No more restarts; stop `services` (SIGTERM, then SIGKILL after `timeout_s`)."""
        with self._launch_lock:
            self._stopping.set()
        procs = [unit.process for unit in services]
        processes.stop_all(procs, timeout=timeout_s)
        for proc in procs:
            processes.kill_leftovers(proc, timeout=5)
