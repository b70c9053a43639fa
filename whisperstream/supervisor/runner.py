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
        state: SupervisorState,
        log: logging.Logger,
        *,
        policy: RestartPolicy | None = None,
        dependents: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`dependents`: per service, those to stop when it exits and start again once it
        is back (the clients of a broker that kept its data in memory)."""
        self._units: dict[str, Unit] = {}
        self._dependents = dependents or {}
        # dependent -> set once the service it waits for is back; and that service -> same
        self._planned: dict[str, threading.Event] = {}
        self._back: dict[str, threading.Event] = {}
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
            dependency_back = self._take_planned(unit.name)
            if dependency_back is not None:
                # stopped on purpose with a service it depends on: start when that is back
                if not self._wait_for(dependency_back):
                    return
            else:
                decision = history.crashed(started_at=started_at, now=self._clock())
                if isinstance(decision, GiveUp):
                    self._give_up(unit, decision.crashes_in_window, last_exit)
                    return
                self._log.warning(
                    "%s exited (%s); restarting in %.0fs (crash %d in %.0f min; at %d up stops)",
                    unit.name,
                    last_exit,
                    decision.delay_s,
                    decision.crashes_in_window,
                    self.policy.window_s / 60,
                    self.policy.max_crashes,
                )
                self._stop_dependents(unit.name)
                if self._stopping.wait(decision.delay_s):
                    return
            started_at = self._clock()
            try:
                proc = self._restart(unit)
            finally:
                self._release_dependents(unit.name)
            if proc is None:
                code = None
                continue
            code = processes.wait_for_exit(proc)

    def _restart(self, unit: Unit) -> ManagedProcess | None:
        """Start the unit again and wait until it is ready; None if it could not start."""
        with self._launch_lock:
            if self._stopping.is_set():
                return None
            try:
                proc = unit.launch()
            except StackError as exc:
                self._log.error("%s did not start: %s", unit.name, exc)
                return None
        self._state.restarted(unit.name, proc.pid)
        self._log.info("%s restarted (pid %d)", unit.name, proc.pid)
        try:
            unit.await_ready()
        except StackError as exc:
            if not self._stopping.is_set():
                self._log.error("%s did not come back: %s", unit.name, exc)
            processes.kill_leftovers(proc)
        return proc

    def _wait_for(self, event: threading.Event) -> bool:
        """Wait for `event`; False if a stop came first."""
        while not event.wait(0.2):
            if self._stopping.is_set():
                return False
        return not self._stopping.is_set()

    def _take_planned(self, name: str) -> threading.Event | None:
        with self._launch_lock:
            return self._planned.pop(name, None)

    def _stop_dependents(self, name: str) -> None:
        """Stop what depends on `name` now; each starts again once `name` is back.

        Their clients' state died with it (a broker that kept its data in memory comes
        back empty); stopped before it restarts, they never talk to the new one.
        """
        running = [
            self._units[dependent]
            for dependent in self._dependents.get(name, ())
            if dependent in self._units and processes.is_alive(self._units[dependent].process)
        ]
        if not running:
            return
        back = threading.Event()
        with self._launch_lock:
            if self._stopping.is_set():
                return
            self._back[name] = back
            for dependent in running:
                self._planned[dependent.name] = back
        for dependent in running:
            self._log.info("stopping %s until %s is back: it starts afresh", dependent.name, name)
            processes.stop(dependent.process, timeout=5.0, sig=signal.SIGKILL)

    def _release_dependents(self, name: str) -> None:
        with self._launch_lock:
            back = self._back.pop(name, None)
        if back is not None:
            back.set()

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
            for back in self._back.values():
                back.set()
        procs = [unit.process for unit in services]
        processes.stop_all(procs, timeout=timeout_s)
        for proc in procs:
            processes.kill_leftovers(proc, timeout=5)
