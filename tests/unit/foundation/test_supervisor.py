"""The supervisor of `whisperstream up` on small real processes, with a quick policy."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from whisperstream.stack.processes import LaunchSpec
from whisperstream.supervisor.policy import RestartPolicy
from whisperstream.supervisor.runner import ServiceUnit, Supervisor
from whisperstream.supervisor.state import SupervisorState, read_state

QUICK = RestartPolicy(first_delay_s=0.05, max_delay_s=0.2, max_crashes=3, window_s=60)
SLEEPER = "import time; print('serving', flush=True); time.sleep(600)"


def _wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} within {timeout}s"
        time.sleep(0.05)


class Harness:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.state = SupervisorState(folder / "supervisor.json")
        self.lines = io.StringIO()
        self.log = logging.getLogger(f"test.supervisor.{id(self)}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.addHandler(logging.StreamHandler(self.lines))
        self.units: list[ServiceUnit] = []
        self.supervisor: Supervisor | None = None

    def start(
        self, code: dict[str, str], dependents: dict[str, list[str]] | None = None
    ) -> Supervisor:
        self.supervisor = Supervisor(self.state, self.log, policy=QUICK, dependents=dependents)
        for name, source in code.items():
            spec = LaunchSpec(name, (sys.executable, "-c", source), self.folder / f"{name}.log")
            unit = ServiceUnit(spec)
            unit.launch()
            self.units.append(unit)
            self.supervisor.watch(unit)
        return self.supervisor

    def record(self, name: str) -> dict[str, object]:
        data = read_state(self.state.path)
        assert data is not None
        record: dict[str, object] = data["services"][name]
        return record

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop(self.units, timeout_s=5)
        for handler in list(self.log.handlers):
            self.log.removeHandler(handler)
            handler.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    running = Harness(tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_a_killed_service_is_restarted_and_the_restart_logged(harness: Harness) -> None:
    harness.start({"api": SLEEPER})
    first_pid = harness.record("api")["pid"]
    assert isinstance(first_pid, int)
    _wait_for("first output", lambda: "serving" in (harness.folder / "api.log").read_text())
    os.kill(first_pid, signal.SIGKILL)
    _wait_for("restart", lambda: harness.record("api")["restarts"] == 1)
    record = harness.record("api")
    assert record["pid"] != first_pid
    assert record["last_exit"] == "killed by SIGKILL"
    assert record["last_exit_code"] == -signal.SIGKILL
    assert psutil.pid_exists(int(str(record["pid"])))
    assert "api exited (killed by SIGKILL); restarting in 0s" in harness.lines.getvalue()
    assert f"api restarted (pid {record['pid']})" in harness.lines.getvalue()
    # the same command wrote to the same log again
    _wait_for(
        "second output", lambda: (harness.folder / "api.log").read_text().count("serving") == 2
    )


def test_what_a_killed_service_left_behind_is_killed_before_the_restart(
    harness: Harness,
) -> None:
    leaves_a_child = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('child', child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    harness.start({"worker": leaves_a_child})
    log_file = harness.folder / "worker.log"
    _wait_for("the child's pid", lambda: "child" in log_file.read_text())
    child_pid = int(log_file.read_text().split()[1])
    os.kill(int(str(harness.record("worker")["pid"])), signal.SIGKILL)
    _wait_for("restart", lambda: harness.record("worker")["restarts"] == 1)
    assert not psutil.pid_exists(child_pid) or psutil.Process(child_pid).status() == "zombie"


def test_a_service_crashing_again_and_again_gives_up_with_its_log(harness: Harness) -> None:
    crashing = "import sys; print('cannot bind 127.0.0.1:9999', flush=True); sys.exit(3)"
    supervisor = harness.start({"projector": crashing, "api": SLEEPER})
    gave_up = supervisor.wait(poll_s=0.05)
    assert gave_up is not None
    assert gave_up.name == "projector"
    assert gave_up.crashes == 3
    assert gave_up.last_exit == "exit status 3"
    message = gave_up.message(QUICK.window_s)
    assert message.startswith("projector crashed 3 times within 1 min (last: exit status 3)")
    assert str(harness.folder / "projector.log") in message
    assert message.endswith("cannot bind 127.0.0.1:9999\ncannot bind 127.0.0.1:9999")
    assert harness.record("projector")["restarts"] == 2
    assert harness.record("api")["restarts"] == 0


def test_stop_ends_every_service_and_restarts_nothing(harness: Harness) -> None:
    supervisor = harness.start({"api": SLEEPER, "worker": SLEEPER})
    pids = [int(str(harness.record(name)["pid"])) for name in ("api", "worker")]
    supervisor.stop(harness.units, timeout_s=5)
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert harness.record("api")["restarts"] == 0
    assert harness.record("worker")["restarts"] == 0


def test_dependents_stop_with_their_dependency_and_start_after_it(harness: Harness) -> None:
    harness.start({"broker": SLEEPER, "api": SLEEPER}, dependents={"broker": ["api"]})
    api_pid = harness.record("api")["pid"]
    os.kill(int(str(harness.record("broker")["pid"])), signal.SIGKILL)
    _wait_for("api restart", lambda: harness.record("api")["restarts"] == 1)
    assert harness.record("api")["pid"] != api_pid
    assert harness.record("api")["last_exit"] == "killed by SIGKILL"
    lines = harness.lines.getvalue().splitlines()
    stopping = lines.index("stopping api until broker is back: it starts afresh")
    broker_back = next(i for i, line in enumerate(lines) if line.startswith("broker restarted"))
    api_back = next(i for i, line in enumerate(lines) if line.startswith("api restarted"))
    assert stopping < broker_back < api_back, lines
    # a planned restart is no crash: no backoff line for it
    assert not any(line.startswith("api exited") for line in lines)


def test_the_state_file_is_json_with_every_service(harness: Harness) -> None:
    harness.start({"api": SLEEPER})
    data = json.loads(harness.state.path.read_text())
    assert data["supervisor_pid"] == os.getpid()
    assert data["services"]["api"]["running"] is True
    assert data["services"]["api"]["restarts"] == 0
    harness.state.remove()
    assert read_state(harness.state.path) is None
