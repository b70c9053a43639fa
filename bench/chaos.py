"""The chaos run (issue 18): jobs flow through `whisperstream up` while its services are
SIGKILLed at random, then a verdict on what every job and every client saw.

A driver submits `--jobs` short clips through the API at a steady rate, each with an
`Idempotency-Key` and a `callback_url`, retrying a refused or failed submit with the same
key; `--upstream` more are produced straight to Kafka. Meanwhile a seeded loop kills a
random service (broker, S3, Postgres, API, worker, projector, notifier) every
`--kill-every MIN-MAX` seconds and waits for `up` to bring it back. Then it checks every
promise (see `verdict`) and prints the numbers. Run: `make chaos` or
`python -m bench.chaos --seed 1 --jobs 1000 --upstream 100 --kill-every 20-40`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from confluent_kafka import Producer
from minio import Minio

from bench.chaos_receiver import ChaosReceiver
from bench.job_verdict import check_jobs as check_each_job
from bench.job_verdict import psycopg_url, rebuild_differences, wait_projected
from bench.report import nearest_rank
from bench.run_report import finish_run
from bench.submitting import Submission, make_clips, submission_failures, submit_until_accepted
from examples.upstream_producer import current_schema, single_object
from tests.support.kafka_read import records_to_end
from tests.support.stack import random_stack_settings, stack_env
from tests.support.up import Up, wait_until
from whisperstream.settings import Settings
from whisperstream.stack.ports import free_port

ADMIN_KEY = "chaos-admin-key"
SERVICES = ("broker", "s3", "postgres", "api", "worker", "projector", "notifier")
READY_LINE = {
    "api": r"api\s+ready on http",
    "worker": r"worker\s+ready: worker",
    "projector": r"projector\s+ready",
    "notifier": r"notifier\s+ready: webhooks",
    "broker": r"up\s+broker ready in",
    "s3": r"up\s+s3 ready in",
    "postgres": r"up\s+postgres ready in",
}
# `up` stops everything at a service's fifth crash within five minutes (a crash loop):
# the chaos loop kills one service at most this often, so what it tests is recovery
KILLS_PER_SERVICE_PER_5_MIN = 3


@dataclass(frozen=True)
class ChaosConfig:
    seed: int
    jobs: int
    upstream: int
    kill_every: tuple[float, float] | None
    """seconds between kills, or None for a quiet run"""
    rate_per_s: float = 2.0
    clip_seconds: tuple[float, float] = (2.0, 3.0)
    finish_within_s: float = 1800.0
    """the run's time limit, from starting the system to the last job's callback: submits
    give up and the wait for callbacks ends then, and the verdict names what is missing"""


@dataclass
class Kill:
    service: str
    at: float
    recovered_s: float | None


@dataclass
class ChaosRun:
    config: ChaosConfig
    submissions: list[Submission] = field(default_factory=list)
    upstream: dict[str, float] = field(default_factory=dict)
    """job id -> when its request was first produced"""
    upstream_retries: int = 0
    kills: list[Kill] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    completed_copies: int = 0
    """records on the status topic that repeat a `completed` event (same id)"""


# --- the system -------------------------------------------------------------------


@dataclass
class System:
    up: Up
    settings: Settings
    receiver: ChaosReceiver

    @property
    def database_url(self) -> str:
        return psycopg_url(self.settings.effective_database_url)


@contextlib.contextmanager
def running_system(state_dir: Path) -> Any:
    settings = random_stack_settings(state_dir)
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    receiver = ChaosReceiver(webhook_secret)
    receiver.start()
    api_port = free_port()
    env = {
        **os.environ,
        **stack_env(settings),
        "API_PORT": str(api_port),
        "WHISPERSTREAM_ADMIN_KEY": ADMIN_KEY,
        "WEBHOOK_SECRET": webhook_secret,
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        # a callback lost to a notifier killed mid-send is tried again soon
        "WEBHOOK_RETRY_SCHEDULE": "2s,5s,10s,30s,1m,2m",
    }
    env.pop("DATABASE_URL")
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "up-terminal.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "whisperstream.cli.main", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = Up(proc, state_dir, f"http://127.0.0.1:{api_port}", env)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            up.lines.append(line.rstrip("\n"))
            log.write(line)
            log.flush()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for pattern in READY_LINE.values():
            up.wait_for_line(pattern, timeout=300)
        yield System(up, settings, receiver)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()
        receiver.stop()


# --- the API driver ---------------------------------------------------------------


def submit_one(
    system: System, submission: Submission, clip: bytes, number: int, give_up_at: float
) -> None:
    submit_until_accepted(
        submission,
        clip,
        api_urls=[system.up.api_url],
        admin_key=ADMIN_KEY,
        filename=f"chaos-{number}.flac",
        callback_url=f"{system.receiver.base_url}/chaos/{number}",
        give_up_at=give_up_at,
    )


def drive_api(system: System, run: ChaosRun, clips: list[bytes], stop_at: float) -> None:
    config = run.config
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for number in range(config.jobs):
            due = started + number / config.rate_per_s
            time.sleep(max(0.0, due - time.monotonic()))
            submission = Submission(f"chaos-{config.seed}-{number}", time.monotonic())
            run.submissions.append(submission)
            pool.submit(submit_one, system, submission, clips[number % len(clips)], number, stop_at)


# --- the upstream producer --------------------------------------------------------


def _collect_errors(errors: list[str]) -> Callable[[Any, Any], None]:
    def collect(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(str(error))

    return collect


def drive_upstream(system: System, run: ChaosRun, clips: list[bytes], stop_at: float) -> None:
    """Produce `upstream` requests straight to Kafka, as examples/upstream_producer.py
    does, spread over the API driver's time; each is retried until acknowledged."""
    config = run.config
    settings = system.settings
    endpoint = urlsplit(settings.s3_endpoint)
    s3 = Minio(
        endpoint.netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=False,
    )
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 60000,
            # a broker killed on purpose: librdkafka's connection errors are expected
            "log_level": 0,
        }
    )
    schema = current_schema()
    spacing = config.jobs / config.rate_per_s / max(config.upstream, 1)
    started = time.monotonic()
    for number in range(config.upstream):
        time.sleep(max(0.0, started + number * spacing - time.monotonic()))
        job_id = str(uuid.uuid4())
        clip = clips[number % len(clips)]
        key = f"uploads/{job_id}/upstream-{number}.flac"
        first = time.monotonic()
        record = {
            "event_id": str(uuid.uuid4()),
            "job_id": job_id,
            "occurred_at": datetime.now(UTC),
            "priority": "normal",
            "attempt": 1,
            "not_before": None,
            "audio": {
                "uri": f"s3://{settings.audio_bucket}/{key}",
                "size_bytes": len(clip),
                "sha256": hashlib.sha256(clip).hexdigest(),
                "content_type": "audio/flac",
                "original_filename": f"upstream-{number}.flac",
            },
            "model": "tiny.en",
            "engine": None,
            "language": None,
            "task": "transcribe",
            "options": {
                "initial_prompt": None,
                "word_timestamps": False,
                "temperature": 0.0,
                "beam_size": None,
                "vad_filter": False,
            },
            "owner": None,
            "idempotency_key": None,
            "callback_url": f"{system.receiver.base_url}/upstream/{number}",
            "source": "kafka",
            "correlation_id": None,
        }
        value = single_object(schema, record)
        while time.monotonic() < stop_at:
            try:
                s3.put_object(settings.audio_bucket, key, io.BytesIO(clip), len(clip))
            except Exception:  # noqa: BLE001 - S3 down: an upstream system tries again
                run.upstream_retries += 1
                time.sleep(2)
                continue
            errors: list[str] = []
            producer.produce(
                "transcription.requests.normal",
                key=job_id.encode(),
                value=value,
                on_delivery=_collect_errors(errors),
            )
            if producer.flush(90) == 0 and not errors:
                run.upstream[job_id] = first
                break
            run.upstream_retries += 1
            time.sleep(2)


# --- the chaos loop ---------------------------------------------------------------


def _ready_lines(up: Up, service: str) -> int:
    regex = re.compile(READY_LINE[service])
    return sum(1 for line in list(up.lines) if regex.search(line))


def kill_and_time_recovery(up: Up, service: str) -> Kill:
    """SIGKILL the service; how long until `up` has it running and ready again."""
    ready_before = _ready_lines(up, service)
    record = up.supervisor_state()["services"][service]
    old_pid = int(record["pid"])
    at = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(old_pid, signal.SIGKILL)

    def back() -> bool | None:
        now = up.supervisor_state()["services"][service]
        restarted = now["pid"] != old_pid and now["running"]
        return True if restarted and _ready_lines(up, service) > ready_before else None

    try:
        wait_until(f"{service} back", back, 300)
    except AssertionError:
        return Kill(service, at, None)
    return Kill(service, at, time.monotonic() - at)


def chaos_loop(system: System, run: ChaosRun, stop: threading.Event) -> None:
    assert run.config.kill_every is not None
    rng = random.Random(run.config.seed)
    low, high = run.config.kill_every
    while not stop.wait(rng.uniform(low, high)):
        now = time.monotonic()
        allowed = [
            name
            for name in SERVICES
            if sum(1 for k in run.kills if k.service == name and now - k.at < 300)
            < KILLS_PER_SERVICE_PER_5_MIN
        ]
        service = rng.choice(allowed or list(SERVICES))
        run.kills.append(kill_and_time_recovery(system.up, service))


# --- the verdict ------------------------------------------------------------------


def wait_for_the_end(system: System, expected: set[str], deadline: float) -> None:
    """Until every expected job has its completed callback, or the run's deadline (the
    verdict then names the jobs that have none)."""

    def all_called_back() -> bool | None:
        done = set(system.receiver.completed_by_job())
        return True if expected <= done else None

    with contextlib.suppress(AssertionError):
        wait_until("every completed callback", all_called_back, deadline - time.monotonic())


def check_clients(run: ChaosRun) -> None:
    """Every submit ended in one job; every refusal was a problem body."""
    run.failures += submission_failures(run.submissions)
    if len(run.upstream) != run.config.upstream:
        run.failures.append(
            f"only {len(run.upstream)} of {run.config.upstream} upstream requests produced"
        )


def check_jobs(system: System, run: ChaosRun, expected: set[str]) -> set[str]:
    """Each expected job completed exactly once, every way it can be seen; the job ids
    the database knows."""
    bootstrap = system.settings.kafka_bootstrap_servers
    seen = check_each_job(system.database_url, bootstrap, system.receiver, expected)
    run.failures += seen.failures
    run.completed_copies = seen.completed_copies
    return seen.jobs


def record_latencies(system: System, run: ChaosRun, expected: set[str]) -> None:
    """First submit attempt (or produce) to the completed callback's arrival."""
    first = {s.job_id: s.started for s in run.submissions if s.job_id} | run.upstream
    for job_id, callbacks in system.receiver.completed_by_job().items():
        if job_id in expected:
            run.latencies_s.append(callbacks[0].arrived - first[job_id])


def check_services(system: System, run: ChaosRun) -> None:
    services = system.up.supervisor_state()["services"]
    down = [name for name, record in services.items() if not record["running"]]
    if down or system.up.proc.poll() is not None:
        run.failures.append(f"services down at the end: {down}; up: {system.up.proc.poll()}")
    for kill in run.kills:
        if kill.recovered_s is None:
            run.failures.append(f"{kill.service} did not come back after a kill")


def verdict(system: System, run: ChaosRun) -> None:
    """Append to `run.failures` every promise that did not hold."""
    expected = {s.job_id for s in run.submissions if s.job_id} | set(run.upstream)
    wait_projected(system.database_url, expected, timeout=60)
    check_clients(run)
    jobs = check_jobs(system, run, expected)
    record_latencies(system, run, expected)
    check_rebuild(system, run)
    check_orphans(system, run, jobs)
    dead = records_to_end(system.settings.kafka_bootstrap_servers, "transcription.dlq")
    if dead:
        run.failures.append(f"{len(dead)} dead letters")
    check_services(system, run)


def check_rebuild(system: System, run: ChaosRun) -> None:
    """The projector's tables equal a rebuild by replay (`replay --rebuild`, online)."""
    run.failures += rebuild_differences(system.up.env, system.database_url)


def check_orphans(system: System, run: ChaosRun, jobs: set[str]) -> None:
    """Every object under uploads/ belongs to a job."""
    settings = system.settings
    s3 = Minio(
        urlsplit(settings.s3_endpoint).netloc,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.get_secret_value(),
        secure=False,
    )
    orphans = [
        obj.object_name
        for obj in s3.list_objects(settings.audio_bucket, prefix="uploads/", recursive=True)
        if obj.object_name is not None and obj.object_name.split("/")[1] not in jobs
    ]
    if orphans:
        run.failures.append(f"{len(orphans)} uploaded objects without a job: {orphans[:5]}")


# --- the run ----------------------------------------------------------------------


def run_chaos(config: ChaosConfig, state_dir: Path) -> ChaosRun:
    run = ChaosRun(config)
    clips = make_clips(config.seed, config.clip_seconds, state_dir)
    began = time.monotonic()
    with running_system(state_dir / "stack") as system:
        stop_at = began + config.finish_within_s
        stop = threading.Event()
        chaos = None
        if config.kill_every is not None:
            chaos = threading.Thread(target=chaos_loop, args=(system, run, stop), daemon=True)
            chaos.start()
        upstream = threading.Thread(
            target=drive_upstream, args=(system, run, clips, stop_at), daemon=True
        )
        upstream.start()
        drive_api(system, run, clips, stop_at)
        upstream.join()
        expected = {s.job_id for s in run.submissions if s.job_id} | set(run.upstream)
        wait_for_the_end(system, expected, stop_at)
        stop.set()
        if chaos is not None:
            chaos.join(timeout=400)
        # the last kill's service is back; the checks run on a settled system
        run.elapsed_s = time.monotonic() - began
        verdict(system, run)
    return run


def summary(run: ChaosRun) -> dict[str, Any]:
    refused = sum(len(s.refusals) for s in run.submissions)
    transport = sum(len(s.errors) for s in run.submissions)
    kills = Counter(k.service for k in run.kills)
    recovery: dict[str, list[float]] = {}
    for kill in run.kills:
        if kill.recovered_s is not None:
            recovery.setdefault(kill.service, []).append(kill.recovered_s)
    return {
        "seed": run.config.seed,
        "jobs": run.config.jobs,
        "upstream": run.config.upstream,
        "kill_every": run.config.kill_every,
        "accepted": sum(1 for s in run.submissions if s.job_id is not None),
        "produced_upstream": len(run.upstream),
        "refused": refused,
        "refused_by_status": dict(
            Counter(status for s in run.submissions for status, _ in s.refusals)
        ),
        "transport_errors": transport,
        "client_retries": sum(max(0, s.attempts - 1) for s in run.submissions),
        "upstream_retries": run.upstream_retries,
        "completed_event_copies": run.completed_copies,
        "kills": dict(kills),
        "recovery_s": {
            name: {"median": nearest_rank(times, 50), "max": max(times)}
            for name, times in sorted(recovery.items())
        },
        "latency_p50_s": nearest_rank(run.latencies_s, 50),
        "latency_p99_s": nearest_rank(run.latencies_s, 99),
        "elapsed_s": run.elapsed_s,
        "verdict": "holds" if not run.failures else "FAILS",
        "failures": run.failures[:50],
    }


def print_table(report: dict[str, Any]) -> None:
    rows = [
        ("seed", report["seed"]),
        ("kill every (s)", report["kill_every"] or "no kills (quiet)"),
        ("API jobs accepted", f"{report['accepted']} / {report['jobs']}"),
        ("upstream produced", f"{report['produced_upstream']} / {report['upstream']}"),
        ("refused submits", f"{report['refused']} {report['refused_by_status']}"),
        ("no answer (transport)", report["transport_errors"]),
        ("client retries", report["client_retries"]),
        ("upstream retries", report["upstream_retries"]),
        ("kills", report["kills"]),
        ("completed events sent again", report["completed_event_copies"]),
    ]
    for name, times in report["recovery_s"].items():
        rows.append(
            (f"recovery {name} (s)", f"median {times['median']:.1f}, max {times['max']:.1f}")
        )
    rows += [
        ("job latency p50 (s)", f"{report['latency_p50_s']:.1f}"),
        ("job latency p99 (s)", f"{report['latency_p99_s']:.1f}"),
        ("elapsed (s)", f"{report['elapsed_s']:.0f}"),
        ("verdict", report["verdict"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for failure in report["failures"]:
        print(f"  - {failure}")


def _interval(text: str) -> tuple[float, float] | None:
    if text in ("0", "none"):
        return None
    low, _, high = text.partition("-")
    return (float(low), float(high or low))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--upstream", type=int, default=100)
    parser.add_argument(
        "--kill-every",
        type=_interval,
        default=(20.0, 40.0),
        help="MIN-MAX s between kills; 0 for a quiet run (no kills) to compare latency with",
    )
    parser.add_argument("--rate", type=float, default=2.0, help="API submissions per second")
    parser.add_argument(
        "--finish-within",
        type=float,
        default=3600.0,
        help="s from the start until every job must have called back (the verdict then runs)",
    )
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    config = ChaosConfig(
        seed=args.seed,
        jobs=args.jobs,
        upstream=args.upstream,
        kill_every=args.kill_every,
        rate_per_s=args.rate,
        finish_within_s=args.finish_within,
    )
    # outside /tmp/pytest-*: Postgres runs as another user and must reach it
    state_dir = Path(tempfile.mkdtemp(prefix="whisperstream-chaos-"))
    return finish_run(state_dir, summary(run_chaos(config, state_dir)), print_table, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
