"""`whisperstream stack up | down | status`: orchestrates the three local services."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient
from minio import Minio

from ops.kafka.topics import apply_topics, default_topic_specs
from whisperstream.errors import StackError
from whisperstream.kafka_security import KafkaConnection
from whisperstream.settings import Settings, is_loopback
from whisperstream.stack import processes
from whisperstream.stack.ports import require_free
from whisperstream.stack.postgres import PostgresTarget, ensure_database, start_postgres
from whisperstream.stack.processes import ManagedProcess
from whisperstream.stack.readiness import (
    CheckResult,
    check_kafka,
    check_postgres,
    check_s3,
    kafka_client_config,
    timed,
)
from whisperstream.stack.seaweed import start_seaweed
from whisperstream.stack.tansu import start_tansu

STATE_FILE = "stack.json"
# the order to start in; stopping goes the other way (the broker writes to S3)
SERVICES = ("s3", "postgres", "broker")
READY_TIMEOUT_S = 60.0


@dataclass
class StackState:
    volatile: bool = False
    external_postgres: bool = False
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StackState:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        return cls(
            volatile=bool(data.get("volatile", False)),
            external_postgres=bool(data.get("external_postgres", False)),
            processes={
                name: ManagedProcess.from_json(proc) for name, proc in data["processes"].items()
            },
        )

    def save(self, path: Path) -> None:
        payload = {
            "volatile": self.volatile,
            "external_postgres": self.external_postgres,
            "processes": {name: proc.to_json() for name, proc in self.processes.items()},
        }
        path.write_text(json.dumps(payload, indent=2))


@dataclass(frozen=True)
class UpResult:
    already_running: bool
    started: list[str]
    seconds: float


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    check: CheckResult


@dataclass(frozen=True)
class StackStatus:
    volatile: bool
    services: list[ServiceStatus]
    urls: dict[str, str]

    @property
    def healthy(self) -> bool:
        return all(service.running and service.check.ok for service in self.services)


class LocalStack:
    """The embedded stack rooted at one state directory."""

    def __init__(
        self,
        settings: Settings,
        *,
        state_dir: Path | None = None,
        report: Callable[[str], None] = lambda _line: None,
    ) -> None:
        self.settings = settings
        self.state_dir = (state_dir or settings.whisperstream_state_dir).expanduser().resolve()
        self._report = report
        self._postgres = PostgresTarget.from_url(settings.effective_database_url)
        # the processes this object started, with how (for `restart`)
        self.launched: dict[str, ManagedProcess] = {}
        self._state_lock = threading.Lock()

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def _state(self) -> StackState:
        return StackState.load(self.state_path)

    def _s3(self) -> Minio:
        host, port = self.settings.s3_host_port
        return Minio(
            f"{host}:{port}",
            access_key=self.settings.s3_access_key,
            secret_key=self.settings.s3_secret_key.get_secret_value(),
            secure=self.settings.s3_secure,
            region=self.settings.s3_region,
        )

    def urls(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "S3_ENDPOINT": self.settings.s3_endpoint,
            "DATABASE_URL": self.settings.effective_database_url,
            "WHISPERSTREAM_STATE_DIR": str(self.state_dir),
        }

    # up -----------------------------------------------------------------------------

    def up(self, *, volatile: bool = False) -> UpResult:
        started_at = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        running = {n for n, p in state.processes.items() if processes.is_alive(p)}
        if running:
            volatile = state.volatile
        else:
            state = StackState(volatile=volatile)
        state.external_postgres = self._postgres_is_external(state, "postgres" in running)
        wanted = [n for n in SERVICES if not (n == "postgres" and state.external_postgres)]
        to_start = [n for n in wanted if n not in running]
        if not to_start:
            return UpResult(True, [], time.perf_counter() - started_at)
        self._check_ports(to_start)
        started: list[str] = []
        try:
            self._start(state, to_start, started)
        except BaseException:
            for name in reversed(started):
                processes.stop(state.processes.pop(name))
            state.save(self.state_path)
            raise
        return UpResult(False, started, time.perf_counter() - started_at)

    def _postgres_is_external(self, state: StackState, embedded_running: bool) -> bool:
        if embedded_running:
            return False
        if self.settings.database_url is None:
            return False
        if timed("postgres", lambda: check_postgres(self.settings.database_url or "", 2)).ok:
            return True
        if is_loopback(self._postgres.host):
            return False
        raise StackError(
            f"DATABASE_URL names {self._postgres.host}:{self._postgres.port}, which does not "
            "answer, and the stack only starts Postgres on loopback"
        )

    def _check_ports(self, to_start: list[str]) -> None:
        ports = {
            "s3": self.settings.s3_host_port,
            "broker": self.settings.kafka_host_port,
            "postgres": (self._postgres.host, self._postgres.port),
        }
        for name in to_start:
            host, port = ports[name]
            require_free(name, host, port)

    def _start(self, state: StackState, to_start: list[str], started: list[str]) -> None:
        def launched(name: str, proc: ManagedProcess) -> None:
            state.processes[name] = proc
            self.launched[name] = proc
            started.append(name)
            state.save(self.state_path)
            self._report(f"started {name} (pid {proc.pid}), log {proc.log_path}")

        if "s3" in to_start:
            launched("s3", start_seaweed(self.settings, self.state_dir))
        if "postgres" in to_start:
            proc = start_postgres(self._postgres, self.state_dir, volatile=state.volatile)
            launched("postgres", proc)
        self._await(state, "s3", self._prepare_s3)
        if "broker" in to_start:
            launched("broker", start_tansu(self.settings, self.state_dir, volatile=state.volatile))
        self._await(state, "postgres", self._prepare_postgres)
        self._await(state, "broker", self._prepare_broker)

    def _await(self, state: StackState, name: str, prepare: Callable[[], None]) -> None:
        """Repeat `prepare` until it passes; give up at once if the process died."""
        proc = state.processes.get(name)
        started = time.perf_counter()
        while True:
            if proc is not None and (tail := processes.exited_early(proc)) is not None:
                raise StackError(f"{name} exited during start-up; the end of its log:\n{tail}")
            result = timed(name, prepare)
            if result.ok:
                break
            if time.perf_counter() - started > READY_TIMEOUT_S:
                raise StackError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s: {result.detail}")
            time.sleep(0.2)
        self._report(f"{name} ready in {time.perf_counter() - started:.1f}s")

    def relaunch(self, name: str) -> ManagedProcess:
        """Start a service this object started before, with the same command, ports and
        data directory; `await_ready` then waits for it."""
        previous = self.launched[name]
        if previous.spec is None:
            raise StackError(f"{name} was not started by this process")
        proc = processes.relaunch(previous.spec)
        self.launched[name] = proc
        with self._state_lock:
            state = self._state()
            state.processes[name] = proc
            state.save(self.state_path)
        return proc

    def await_ready(self, name: str) -> None:
        """Wait until a (re)started service passes its check; its buckets, database or
        topics are ensured again (a volatile broker comes back empty)."""
        prepare = {
            "s3": self._prepare_s3,
            "postgres": self._prepare_postgres,
            "broker": self._prepare_broker,
        }[name]
        self._await(StackState(processes={name: self.launched[name]}), name, prepare)

    def _prepare_s3(self) -> None:
        client = self._s3()
        buckets = (
            self.settings.broker_bucket,
            self.settings.audio_bucket,
            self.settings.results_bucket,
        )
        for bucket in buckets:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
        check_s3(client, self.settings.results_bucket)

    def _prepare_postgres(self) -> None:
        check_postgres(self._postgres.admin_url(), 2)
        ensure_database(self._postgres)
        check_postgres(self.settings.effective_database_url)
        _migrate(self.settings.effective_database_url)

    def _prepare_broker(self) -> None:
        bootstrap = KafkaConnection.from_settings(self.settings)
        check_kafka(bootstrap)
        apply_topics(
            AdminClient(kafka_client_config(bootstrap)), default_topic_specs(self.settings)
        )

    # down and status -------------------------------------------------------------------

    def down(self) -> list[str]:
        state = self._state()
        stopped: list[str] = []
        for name in reversed(SERVICES):
            proc = state.processes.pop(name, None)
            if proc is None:
                continue
            # SIGINT is Postgres's "fast" shutdown; the others stop on SIGTERM
            sig = 2 if name == "postgres" else 15
            if processes.is_alive(proc):
                stopped.append(name)
            processes.stop(proc, sig=sig)
            self._report(f"stopped {name} (pid {proc.pid})")
        if self.state_path.exists():
            self.state_path.unlink()
        return stopped

    def status(self) -> StackStatus:
        state = self._state()
        checks: dict[str, Callable[[], None]] = {
            "s3": lambda: check_s3(self._s3(), self.settings.results_bucket),
            "postgres": lambda: check_postgres(self.settings.effective_database_url, 2),
            "broker": lambda: check_kafka(KafkaConnection.from_settings(self.settings), 5),
        }
        services = []
        for name in SERVICES:
            proc = state.processes.get(name)
            external = name == "postgres" and state.external_postgres
            running = external or (proc is not None and processes.is_alive(proc))
            result = (
                timed(name, checks[name]) if running else CheckResult(name, False, 0, "not running")
            )
            services.append(ServiceStatus(name, proc.pid if proc else None, running, result))
        return StackStatus(state.volatile, services, self.urls())


def _migrate(database_url: str) -> None:
    from db.migrate import upgrade_to_head  # noqa: PLC0415 - keeps alembic off the import path

    upgrade_to_head(database_url)
