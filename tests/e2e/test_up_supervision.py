"""`whisperstream up` supervises: `kill -9` of each service, then a service that keeps crashing.

Also what its terminal shows: one line per service start/ready/restart and per job, and
none of the libraries' chatter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path

import psutil
import pytest

from tests.support.up import Up, running_up, wait_until

pytestmark = pytest.mark.e2e
# in the order the test kills them: the API's own, then the stack's
SERVICES = ("api", "worker", "projector", "notifier", "broker", "s3", "postgres")
CHATTER = re.compile(r"aiokafka|faust|rdkafka|alembic|urllib3", re.IGNORECASE)


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _kill_and_wait_for_restart(up: Up, name: str) -> int:
    """`kill -9` the service; its new pid once the supervisor has started it again."""
    old_pid = int(up.supervisor_state()["services"][name]["pid"])
    os.kill(old_pid, signal.SIGKILL)

    def restarted() -> int | None:
        record = up.supervisor_state()["services"][name]
        if record["restarts"] == 1 and record["pid"] != old_pid and record["running"]:
            return int(record["pid"])
        return None

    new_pid = wait_until(f"restart of {name}", restarted, 120)
    up.wait_for_line(rf"up\s+{name} exited \(killed by SIGKILL\); restarting in 1s")
    up.wait_for_line(rf"up\s+{name} restarted \(pid {new_pid}\)")
    return new_pid


@pytest.mark.timeout(1200)
def test_kill_9_of_each_service_under_up(jfk_flac: Path) -> None:
    # durable: the broker keeps its data on the local S3 through its own restart
    with running_up() as up:
        for ready in (
            r"api\s+ready on http",
            r"worker\s+ready: worker",
            r"projector\s+ready",
            r"notifier\s+ready: webhooks",
        ):
            up.wait_for_line(ready, timeout=240)
        first = up.submit(jfk_flac)
        assert "ask not" in up.wait_completed(first)["result"]["text"].lower()
        for name in SERVICES:
            new_pid = _kill_and_wait_for_restart(up, name)
            if name in ("broker", "s3", "postgres"):
                up.wait_for_line(rf"up\s+{name} ready in", timeout=120, count=2)
            # jobs keep completing: the same clip, end to end, after each restart
            job_id = up.submit(jfk_flac)
            up.wait_completed(job_id)
            up.wait_for_line(
                rf"worker\s+job {job_id} completed in [\d.]+s \(faster-whisper tiny.en"
            )
            assert psutil.pid_exists(new_pid), f"{name} died again:\n{up.output}"

        report = up.admin_health()
        services = report["supervisor"]["services"]
        for name in SERVICES:
            assert services[name]["restarts"] == 1, services
            assert services[name]["last_exit"] == "killed by SIGKILL"
            assert services[name]["running"] is True
        pids = [int(record["pid"]) for record in services.values()]
        # each service's full log is in its file, not on the terminal
        logs = up.state_dir / "logs"
        for log_name in (
            "api",
            "worker",
            "projector",
            "notifier",
            "up",
            "tansu",
            "seaweedfs",
            "postgres",
        ):
            assert (logs / f"{log_name}.log").stat().st_size > 0, log_name
        assert "completed in" in (logs / "worker.log").read_text()

        up.proc.send_signal(signal.SIGTERM)
        assert up.proc.wait(timeout=120) == 0, up.output
    for pid in pids:
        assert _gone(pid), pid

    output = up.output
    # the terminal: starts and readiness, one line per job, the admin key; no chatter
    for started in ("s3", "postgres", "broker", "api", "worker", "projector", "notifier"):
        assert re.search(rf"up\s+started {started} \(pid \d+\)", output), output
    accepted = re.findall(r"api\s+job (\S+) accepted \(faster-whisper tiny.en", output)
    completed = re.findall(r"worker\s+job (\S+) completed in [\d.]+s \(faster-whisper", output)
    assert first in accepted
    assert first in completed
    assert len(completed) == len(SERVICES) + 1, output
    assert "admin API key: e2e-admin-key" in output
    chatter = [line for line in up.lines if CHATTER.search(line)]
    assert not chatter, chatter


@pytest.mark.timeout(600)
def test_a_service_that_keeps_crashing_stops_up_naming_it() -> None:
    # a bogus setting: the projector's metrics port is taken, so it fails at each start
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with running_up("--volatile", PROJECTOR_METRICS_PORT=str(port)) as up:
            up.wait_for_line(r"up\s+running; Ctrl-C", timeout=240)
            stack = json.loads((up.state_dir / "stack.json").read_text())
            stack_pids = [int(proc["pid"]) for proc in stack["processes"].values()]
            assert up.proc.wait(timeout=400) == 1, up.output
            assert not (up.state_dir / "stack.json").exists()
            assert not (up.state_dir / "supervisor.json").exists()
    for pid in stack_pids:
        assert _gone(pid), pid
    output = up.output
    assert re.search(r"projector crashed 5 times within 5 min \(last: exit status 1\)", output)
    assert "stopping everything" in output
    # the end of its log explains why
    assert "Address already in use" in output
    assert str(up.state_dir / "logs" / "projector.log") in output
    restarts = re.findall(r"projector exited \(exit status 1\); restarting in (\d+)s", output)
    assert restarts == ["1", "2", "4", "8"], output
    assert output.splitlines()[-1].endswith("stopped")


@pytest.mark.timeout(600)
def test_a_volatile_broker_killed_comes_back_with_fresh_clients(jfk_flac: Path) -> None:
    # in memory, the broker comes back empty: the services' Kafka state is void after it
    with running_up("--volatile") as up:
        for ready in (r"api\s+ready on http", r"worker\s+ready: worker", r"projector\s+ready"):
            up.wait_for_line(ready, timeout=240)
        _kill_and_wait_for_restart(up, "broker")
        for name in ("api", "worker", "projector"):
            up.wait_for_line(rf"up\s+stopping {name} until broker is back: it starts afresh")
            up.wait_for_line(rf"up\s+{name} restarted \(pid \d+\)")
        # the topics are there again, and the restarted services serve
        for ready in (r"api\s+ready on http", r"worker\s+ready: worker", r"projector\s+ready"):
            up.wait_for_line(ready, timeout=240, count=2)
        job_id = up.submit(jfk_flac)
        up.wait_completed(job_id)
        services = up.admin_health()["supervisor"]["services"]
        assert services["broker"]["restarts"] == 1
        for name in ("api", "worker", "projector"):
            assert services[name]["restarts"] == 1, services
        # a planned restart is not a crash: no backoff for it
        assert not re.search(r"(api|worker|projector) exited", up.output), up.output
