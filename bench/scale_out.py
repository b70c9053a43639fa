"""The scale-out run (issue 17): more than one of every service, as separate OS processes
against one local stack; one worker and one API SIGKILLed mid-run.

Two `whisperstream api` processes (two ports), three `whisperstream worker`s, two
`whisperstream projector`s and the notifier share the embedded broker, S3 and Postgres.
The client submits short clips alternately to the two APIs, each with an Idempotency-Key
and a callback URL; a submit that is refused or unanswered goes to the other API with the
same key, as a load balancer would send it. Once a share of the jobs is in and the first
worker has finished a job and holds another, that worker and the second API are killed
(-9). Then the verdict: every job completed exactly once (its row, result, `completed`
event, webhook), every worker completed some, the two projectors held disjoint
partitions that cover every projected one, and the tables equal a rebuild by replay.
Run: `python -m bench.scale_out --jobs 300`; tests/e2e/test_scale_out.py runs it in
`make test`.

`--brokers 2` adds a second Tansu over the same S3 bucket, gives every client both
addresses and kills the first broker later in the run. It shows why that is not in the
test (docs/deploy.md, "Two Tansu brokers"): the workers' aiokafka clients that had
bootstrapped through the killed broker never reach the other one, and their jobs stall.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from confluent_kafka.admin import AdminClient

from bench.chaos_receiver import ChaosReceiver
from bench.job_verdict import (
    StatusEvent,
    check_jobs,
    psycopg_url,
    rebuild_differences,
    wait_projected,
)
from bench.job_verdict import status_events as read_status_events
from bench.run_report import finish_run
from bench.submitting import Submission, make_clips, submission_failures, submit_until_accepted
from db.projector.config import projected_topics
from tests.support.cluster import Service, ServiceProcess
from tests.support.kafka_read import records_to_end
from tests.support.stack import random_stack_settings, stack_env
from tests.support.up import wait_until
from whisperstream.settings import Settings
from whisperstream.stack import processes
from whisperstream.stack.manager import LocalStack, StackState
from whisperstream.stack.ports import free_port
from whisperstream.stack.processes import ManagedProcess
from whisperstream.stack.tansu import start_tansu

ADMIN_KEY = "scale-out-admin-key"
READY = {
    "api": r"ready on http",
    "worker": r"ready: worker",
    "projector": r"ready: folding \d+ partitions",
    "notifier": r"ready: webhooks",
}
Partition = tuple[str, int]


@dataclass(frozen=True)
class ScaleOutConfig:
    jobs: int = 300
    apis: int = 2
    workers: int = 3
    projectors: int = 2
    rate_per_s: float = 3.0
    kill_after: float = 0.4
    """the worker and API kills wait until this share of the jobs is accepted"""
    brokers: int = 1
    """Tansu processes over the one S3 bucket; with 2, every client is given both
    addresses and the first broker is killed once `kill_broker_after` of the jobs are in"""
    kill_broker_after: float = 0.7
    clip_seconds: tuple[float, float] = (1.5, 2.5)
    seed: int = 1
    finish_within_s: float = 900.0


@dataclass
class ScaleOutRun:
    config: ScaleOutConfig
    submissions: list[Submission] = field(default_factory=list)
    killed: dict[str, float] = field(default_factory=dict)
    """process name -> time.time() of its SIGKILL"""
    killed_monotonic: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    completed_by_worker: dict[str, int] = field(default_factory=dict)
    projector_partitions: dict[str, list[Partition]] = field(default_factory=dict)
    """projector -> the partitions it was last assigned"""
    redelivered: int = 0
    """jobs the killed worker had started and another worker completed"""
    takeover_s: float | None = None
    """kill to the first start, by another worker, of a job the killed one held"""
    redelivered_done_s: float | None = None
    """kill to the completion of the last of those jobs"""
    failover_max_s: float | None = None
    """the longest a submit that met the killed API took, from the kill, to be accepted"""
    broker_accept_s: float | None = None
    """broker kill to the next accepted submit"""
    broker_callback_s: float | None = None
    """broker kill to the next completed callback"""
    on_killed_broker: list[str] = field(default_factory=list)
    """the services with a connection open to the first broker when it was killed"""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds of each process over the run (killed ones: up to their kill)"""
    completed_copies: int = 0


# --- the processes ----------------------------------------------------------------


@dataclass
class Fleet:
    """The local stack and every service process, each in a session of its own."""

    settings: Settings
    stack: LocalStack
    env: dict[str, str]
    logs: Path
    bootstrap: str
    """every broker's address, as each client is given them"""
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    api_urls: dict[str, str] = field(default_factory=dict)
    brokers: dict[str, ManagedProcess] = field(default_factory=dict)
    cpu: dict[str, psutil.Process] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return psycopg_url(self.settings.effective_database_url)

    def start(self, name: str, service: Service, **extra_env: str) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "whisperstream.cli.main", service],
                env={**self.env, **extra_env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = ServiceProcess(service, popen, log_path)
        self.cpu[name] = psutil.Process(popen.pid)

    def start_second_broker(self) -> None:
        """Another Tansu over the same bucket, on a port of its own."""
        address = f"127.0.0.1:{free_port()}"
        folder = self.logs.parent / "broker-2"
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        second = self.settings.model_copy(update={"kafka_bootstrap_servers": address})
        self.brokers["broker-2"] = start_tansu(second, folder, volatile=False)
        self.bootstrap = f"{self.bootstrap},{address}"

    def connected_to(self, address: str) -> list[str]:
        """The services with a TCP connection open to `address` (host:port)."""
        port = int(address.rsplit(":", 1)[1])
        found = []
        for name, process in self.cpu.items():
            with contextlib.suppress(psutil.Error):
                if any(c.raddr and c.raddr.port == port for c in process.net_connections("tcp")):
                    found.append(name)
        return sorted(found)

    def kill_first_broker(self) -> None:
        processes.stop(
            StackState.load(self.stack.state_path).processes["broker"], sig=signal.SIGKILL
        )

    def cpu_seconds(self) -> dict[str, float]:
        used = {}
        for name, process in self.cpu.items():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                # Postgres works in the backends it forks: count the exited ones too
                used[name] = times.user + times.system + times.children_user + times.children_system
        return used

    def start_api(self, name: str) -> None:
        port = free_port()
        self.api_urls[name] = f"http://127.0.0.1:{port}"
        self.start(name, "api", API_PORT=str(port))

    def log(self, name: str) -> str:
        return self.processes[name].log_path.read_text(errors="replace")

    def wait_ready(self, name: str, timeout: float = 300) -> None:
        process = self.processes[name]
        pattern = re.compile(READY[process.name])

        def ready() -> bool | None:
            if not process.alive:
                raise AssertionError(f"{name} exited:\n{self.log(name)[-3000:]}")
            return True if pattern.search(self.log(name)) else None

        wait_until(f"{name} ready", ready, timeout)

    def kill(self, name: str) -> None:
        self.processes[name].signal(signal.SIGKILL, timeout=10)

    def close(self) -> None:
        try:
            for process in reversed(list(self.processes.values())):
                process.signal(signal.SIGTERM, timeout=40)
            for broker in self.brokers.values():
                processes.stop(broker)
        finally:
            self.stack.down()


@contextlib.contextmanager
def running_fleet(config: ScaleOutConfig, state_dir: Path, webhook_secret: str) -> Iterator[Fleet]:
    settings = random_stack_settings(state_dir)
    env = {
        **os.environ,
        **stack_env(settings),
        "WHISPERSTREAM_ADMIN_KEY": ADMIN_KEY,
        "WEBHOOK_SECRET": webhook_secret,
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "WEBHOOK_RETRY_SCHEDULE": "2s,5s,10s,30s,1m,2m",
        # three workers share this machine's cores: one inference thread each
        "WHISPER_CPU_THREADS": "1",
    }
    env.pop("DATABASE_URL")
    logs = state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(settings, LocalStack(settings), env, logs, settings.kafka_bootstrap_servers)
    try:
        fleet.stack.up(volatile=False)
        for name, process in StackState.load(fleet.stack.state_path).processes.items():
            fleet.cpu[name] = psutil.Process(process.pid)
        if config.brokers == 2:
            fleet.start_second_broker()
            fleet.cpu["broker-2"] = psutil.Process(fleet.brokers["broker-2"].pid)
        fleet.env["KAFKA_BOOTSTRAP_SERVERS"] = fleet.bootstrap
        for number in range(1, config.apis + 1):
            fleet.start_api(f"api-{number}")
        for number in range(1, config.workers + 1):
            fleet.start(f"worker-{number}", "worker", WORKER_ID=f"worker-{number}")
        for number in range(1, config.projectors + 1):
            fleet.start(f"projector-{number}", "projector")
        fleet.start("notifier", "notifier")
        for name in fleet.processes:
            fleet.wait_ready(name)
        yield fleet
    finally:
        fleet.close()


# --- what the group and the jobs look like while it runs -----------------------------


ASSIGNED = re.compile(r"assigned \d+ partitions, sought to the offsets in Postgres: (.*)$", re.M)


def last_assignment(log: str) -> list[Partition]:
    """The partitions a projector was last given, from its log (Tansu's DescribeGroups
    lists no members, so the broker cannot say)."""
    found = ASSIGNED.findall(log)
    if not found:
        return []
    held = []
    for part in found[-1].split():
        topic, _, numbers = part.rstrip("]").partition("[")
        held += [(topic, int(number)) for number in numbers.split(",")]
    return sorted(held)


def worker_counts(fleet: Fleet, worker_id: str) -> tuple[int, int]:
    """(completed, in hand) jobs of a worker, as the projection has them now."""
    query = (
        "SELECT count(*) FILTER (WHERE status = 'completed'), "
        "count(*) FILTER (WHERE status = 'processing') "
        "FROM transcription_jobs WHERE worker_id = %s"
    )
    with psycopg.connect(fleet.database_url) as connection:
        row = connection.execute(query, (worker_id,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def kill_mid_run(fleet: Fleet, run: ScaleOutRun, worker: str, api: str) -> None:
    """Once enough jobs are in and `worker` has done one and holds another, SIGKILL it and
    `api` together."""
    enough = int(run.config.jobs * run.config.kill_after)

    def due() -> bool | None:
        accepted = sum(1 for s in run.submissions if s.job_id is not None)
        if accepted < enough:
            return None
        done, in_hand = worker_counts(fleet, worker)
        return True if done and in_hand else None

    wait_until(f"{worker} busy mid-run", due, run.config.finish_within_s)
    run.cpu_s = fleet.cpu_seconds()
    for name in (worker, api):
        run.killed[name] = time.time()
        run.killed_monotonic[name] = time.monotonic()
        fleet.kill(name)
    if run.config.brokers == 2:
        kill_broker(fleet, run)


def kill_broker(fleet: Fleet, run: ScaleOutRun) -> None:
    """Once `kill_broker_after` of the jobs are in, SIGKILL the first broker."""
    enough = int(run.config.jobs * run.config.kill_broker_after)

    def due() -> bool | None:
        return True if sum(1 for s in run.submissions if s.job_id) >= enough else None

    wait_until("jobs for the broker kill", due, run.config.finish_within_s)
    run.cpu_s |= {"broker": fleet.cpu_seconds().get("broker", 0.0)}
    run.on_killed_broker = fleet.connected_to(fleet.settings.kafka_bootstrap_servers)
    run.killed["broker"] = time.time()
    run.killed_monotonic["broker"] = time.monotonic()
    fleet.kill_first_broker()


# --- the client -------------------------------------------------------------------


def drive_apis(
    fleet: Fleet, run: ScaleOutRun, receiver: ChaosReceiver, clips: list[bytes], stop_at: float
) -> None:
    """Submit every job at the configured rate, the nth to API n mod 2 first."""
    config = run.config
    urls = list(fleet.api_urls.values())
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for number in range(config.jobs):
            time.sleep(max(0.0, started + number / config.rate_per_s - time.monotonic()))
            submission = Submission(f"scale-out-{config.seed}-{number}", time.monotonic())
            run.submissions.append(submission)
            first = number % len(urls)
            pool.submit(
                submit_until_accepted,
                submission,
                clips[number % len(clips)],
                api_urls=urls[first:] + urls[:first],
                admin_key=ADMIN_KEY,
                filename=f"scale-out-{number}.flac",
                callback_url=f"{receiver.base_url}/scale-out/{number}",
                give_up_at=stop_at,
                # greedy decoding: the run is about the processes, not the transcripts
                options={"beam_size": "1"},
            )


def wait_for_callbacks(receiver: ChaosReceiver, expected: set[str], timeout: float) -> None:
    def all_called_back() -> bool | None:
        return True if expected <= set(receiver.completed_by_job()) else None

    with contextlib.suppress(AssertionError):
        wait_until("every completed callback", all_called_back, timeout)


# --- the verdict ------------------------------------------------------------------


def measure_worker_kill(run: ScaleOutRun, events: list[StatusEvent], worker: str) -> None:
    """The jobs the killed worker started and did not complete: who finished them, when."""
    killed_at = run.killed[worker]
    started_by_it = {e.job_id for e in events if e.worker_id == worker}
    completed_by: dict[str, StatusEvent] = {e.job_id: e for e in events if e.status == "completed"}
    orphaned = {
        job_id
        for job_id in started_by_it
        if job_id in completed_by and completed_by[job_id].worker_id != worker
    }
    run.redelivered = len(orphaned)
    if not orphaned:
        run.failures.append(f"{worker} was killed holding no job that another one finished")
        return
    restarts = [
        e.occurred_at
        for e in events
        if e.job_id in orphaned and e.worker_id not in {worker, None} and e.status == "processing"
    ]
    run.takeover_s = min(restarts) - killed_at if restarts else None
    run.redelivered_done_s = max(completed_by[j].occurred_at for j in orphaned) - killed_at


def measure_api_kill(fleet: Fleet, run: ScaleOutRun, api: str) -> None:
    dead_url = fleet.api_urls[api]
    met_it = [s for s in run.submissions if s.errors and s.accepted_at is not None]
    if not met_it:
        run.failures.append(f"no submit met the killed {api}")
        return
    killed_at = run.killed_monotonic[api]
    run.failover_max_s = max((s.accepted_at or 0.0) - max(s.started, killed_at) for s in met_it)
    late = [s for s in met_it if s.accepted_by == dead_url]
    if late:
        run.failures.append(f"{len(late)} submits accepted by {api} after its kill")


def measure_broker_kill(run: ScaleOutRun, receiver: ChaosReceiver) -> None:
    killed_at = run.killed_monotonic["broker"]
    accepted = [s.accepted_at for s in run.submissions if (s.accepted_at or 0.0) > killed_at]
    called = [c.arrived for found in receiver.completed_by_job().values() for c in found]
    after = [t for t in called if t > killed_at]
    if not run.on_killed_broker:
        run.failures.append("no service was connected to the broker that was killed")
    if not accepted or not after:
        run.failures.append("nothing was accepted or completed after the broker kill")
        return
    run.broker_accept_s = min(t for t in accepted if t is not None) - killed_at
    run.broker_callback_s = min(after) - killed_at


def check_workers(fleet: Fleet, run: ScaleOutRun) -> None:
    with psycopg.connect(fleet.database_url) as connection:
        rows = connection.execute(
            "SELECT worker_id, count(*) FROM transcription_jobs "
            "WHERE status = 'completed' GROUP BY worker_id"
        ).fetchall()
    run.completed_by_worker = {str(worker): int(count) for worker, count in rows}
    for number in range(1, run.config.workers + 1):
        if not run.completed_by_worker.get(f"worker-{number}"):
            run.failures.append(f"worker-{number} completed no job: {run.completed_by_worker}")


def check_projectors(fleet: Fleet, run: ScaleOutRun) -> None:
    """Each projector holds partitions, none shared, every projected partition held."""
    members = {
        name: last_assignment(fleet.log(name)) for name in fleet.processes if "projector" in name
    }
    run.projector_partitions = members
    if not all(members.values()):
        run.failures.append(f"a projector holds no partition: {members}")
    held = [partition for partitions in members.values() for partition in partitions]
    admin = AdminClient({"bootstrap.servers": fleet.bootstrap})
    topics = admin.list_topics(timeout=10).topics
    wanted = {(t, p) for t in projected_topics(fleet.settings) for p in topics[t].partitions}
    if len(held) != len(set(held)) or set(held) != wanted:
        run.failures.append(f"the projectors' partitions {members} are not a split of {wanted}")


def check_processes(fleet: Fleet, run: ScaleOutRun) -> None:
    for name, process in fleet.processes.items():
        if name not in run.killed and not process.alive:
            run.failures.append(f"{name} died:\n{fleet.log(name)[-2000:]}")


def verdict(fleet: Fleet, run: ScaleOutRun, receiver: ChaosReceiver, worker: str) -> None:
    expected = {s.job_id for s in run.submissions if s.job_id is not None}
    wait_projected(fleet.database_url, expected)
    run.failures += submission_failures(run.submissions)
    bootstrap = fleet.bootstrap
    seen = check_jobs(fleet.database_url, bootstrap, receiver, expected)
    run.failures += seen.failures
    run.completed_copies = seen.completed_copies
    check_workers(fleet, run)
    check_projectors(fleet, run)
    measure_worker_kill(run, read_status_events(bootstrap), worker)
    measure_api_kill(fleet, run, next(name for name in run.killed if name.startswith("api")))
    if "broker" in run.killed:
        measure_broker_kill(run, receiver)
    run.failures += rebuild_differences(fleet.env, fleet.database_url)
    dead = records_to_end(bootstrap, "transcription.dlq")
    if dead:
        run.failures.append(f"{len(dead)} dead letters")
    check_processes(fleet, run)


# --- the run ----------------------------------------------------------------------


def run_scale_out(config: ScaleOutConfig, state_dir: Path) -> ScaleOutRun:
    run = ScaleOutRun(config)
    clips = make_clips(config.seed, config.clip_seconds, state_dir)
    receiver = ChaosReceiver("whsec_" + base64.b64encode(secrets.token_bytes(24)).decode())
    receiver.start()
    worker, api = "worker-1", f"api-{config.apis}"
    try:
        with running_fleet(config, state_dir / "stack", receiver.secret) as fleet:
            began = time.monotonic()
            stop_at = began + config.finish_within_s
            killer = threading.Thread(target=kill_mid_run, args=(fleet, run, worker, api))
            killer.start()
            try:
                drive_apis(fleet, run, receiver, clips, stop_at)
                expected = {s.job_id for s in run.submissions if s.job_id is not None}
                wait_for_callbacks(receiver, expected, stop_at - time.monotonic())
                run.elapsed_s = time.monotonic() - began
            finally:
                killer.join(timeout=config.finish_within_s)
            wanted = {worker, api} | ({"broker"} if config.brokers == 2 else set())
            run.cpu_s = fleet.cpu_seconds() | {n: run.cpu_s.get(n, 0.0) for n in run.killed}
            if set(run.killed) != wanted:
                run.failures.append(f"the kills did not happen: {run.killed}")
                return run
            verdict(fleet, run, receiver, worker)
    finally:
        receiver.stop()
    return run


def summary(run: ScaleOutRun) -> dict[str, Any]:
    config = run.config
    return {
        "jobs": config.jobs,
        "processes": f"{config.apis} api, {config.workers} worker, "
        f"{config.projectors} projector, 1 notifier, {config.brokers} broker",
        "accepted": sum(1 for s in run.submissions if s.job_id is not None),
        "accepted_by_api": dict(Counter(s.accepted_by for s in run.submissions)),
        "unanswered_submits": sum(len(s.errors) for s in run.submissions),
        "refused_submits": sum(len(s.refusals) for s in run.submissions),
        "completed_by_worker": dict(sorted(run.completed_by_worker.items())),
        "projector_partitions": {
            name: len(partitions) for name, partitions in sorted(run.projector_partitions.items())
        },
        "redelivered_jobs": run.redelivered,
        "takeover_s": run.takeover_s,
        "redelivered_done_s": run.redelivered_done_s,
        "api_failover_max_s": run.failover_max_s,
        **(
            {
                "on_killed_broker": run.on_killed_broker,
                "broker_kill_to_accept_s": run.broker_accept_s,
                "broker_kill_to_callback_s": run.broker_callback_s,
            }
            if config.brokers == 2
            else {}
        ),
        "cpu_s": {name: round(used, 1) for name, used in sorted(run.cpu_s.items())},
        "completed_event_copies": run.completed_copies,
        "elapsed_s": run.elapsed_s,
        "jobs_per_s": len(run.submissions) / run.elapsed_s if run.elapsed_s else None,
        "verdict": "holds" if not run.failures else "FAILS",
        "failures": run.failures[:50],
    }


def print_table(report: dict[str, Any]) -> None:
    for name, value in report.items():
        if name != "failures":
            shown = f"{value:.1f}" if isinstance(value, float) else value
            print(f"{name:<24}  {shown}")
    for failure in report["failures"]:
        print(f"  - {failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rate", type=float, default=3.0, help="submissions per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--brokers", type=int, choices=(1, 2), default=1, help="2: a broker failover too"
    )
    parser.add_argument("--finish-within", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    config = ScaleOutConfig(
        jobs=args.jobs,
        rate_per_s=args.rate,
        seed=args.seed,
        brokers=args.brokers,
        finish_within_s=args.finish_within,
    )
    # outside /tmp/pytest-*: Postgres runs as another user and must reach it
    state_dir = Path(tempfile.mkdtemp(prefix="whisperstream-scale-out-"))
    return finish_run(state_dir, summary(run_scale_out(config, state_dir)), print_table, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
