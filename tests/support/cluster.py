"""The whole system as separate processes, with handles to break and mend each one.

`Cluster` starts the local stack in this process (`LocalStack`) and then `whisperstream
api`, `whisperstream worker` and `whisperstream projector` as their own processes, the
way the README runs them. Fault tests kill (-9) or stop (SIGTERM) any service process,
stop any stack service (broker, S3, Postgres) by its recorded PID, and bring everything
back with `restore()`, which is `LocalStack.up()` (it starts only what is missing) plus
a fresh process for every service that is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from ops.kafka.offsets import Partition, high_watermarks
from schemas.codec import EventCodec
from schemas.errors import UndecodableEvent
from schemas.events import (
    TERMINAL_STATUSES,
    AudioRef,
    Event,
    Priority,
    Source,
    Task,
    TranscriptionOptions,
    TranscriptionRequested,
    new_event_id,
    utc_now,
)
from storage.keys import audio_uri
from storage.s3 import ObjectStore
from tests.support.stack import random_stack_settings, stack_env, stack_state_dir
from whisperstream.settings import Settings
from whisperstream.stack import processes
from whisperstream.stack.manager import LocalStack, StackState
from whisperstream.stack.ports import free_port

Service = Literal["api", "worker", "projector", "notifier"]
StackService = Literal["s3", "postgres", "broker"]
SERVICES: tuple[Service, ...] = ("api", "worker", "projector")
ADMIN_KEY = "fault-admin-key"
T = TypeVar("T")


def wait_until(
    what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.25
) -> T:
    """Call `probe` until it returns something other than None; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ServiceProcess:
    """One running `whisperstream <service>` process (its own session, so its group)."""

    name: Service
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int, timeout: float) -> int:
        """Send `signum`, wait for the exit (SIGKILL after `timeout` s), sweep the group."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=30)
        # children it left behind (ffmpeg, ffprobe) go with it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        return self.popen.returncode


@dataclass(frozen=True)
class Record:
    """One Kafka record as read back from a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Cluster:
    """The local stack plus one API, one worker and one projector process."""

    def __init__(
        self, state_dir: Path, *, volatile: bool, extra_env: dict[str, str] | None = None
    ) -> None:
        self.state_dir = state_dir
        self.volatile = volatile
        self.settings: Settings = random_stack_settings(state_dir)
        self.stack = LocalStack(self.settings)
        self.api_url = f"http://127.0.0.1:{free_port()}"
        self.admin_key = ADMIN_KEY
        env = {
            **os.environ,
            **stack_env(self.settings),
            "API_PORT": self.api_url.rsplit(":", 1)[1],
            "WHISPERSTREAM_ADMIN_KEY": ADMIN_KEY,
            "WHISPERSTREAM_API_KEY": ADMIN_KEY,
            "WHISPERSTREAM_API_URL": self.api_url,
            # services find the embedded Postgres through STACK_POSTGRES_PORT, as in the README
            **(extra_env or {}),
        }
        env.pop("DATABASE_URL", None)
        self.env = env
        self.codec = EventCodec()
        self._services: dict[Service, ServiceProcess] = {}

    # whole lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        self.stack.up(volatile=self.volatile)
        for name in SERVICES:
            self.start_service(name)
        self.wait_api_ready()

    def close(self) -> None:
        try:
            for name in reversed(SERVICES):
                service = self._services.pop(name, None)
                if service is not None:
                    service.signal(signal.SIGTERM, timeout=40)
        finally:
            try:
                self.stack.down()
            finally:
                self.codec.close()

    def restore(self) -> None:
        """Bring back every stack service and service process that is not running."""
        self.stack.up(volatile=self.volatile)
        for name in SERVICES:
            if not self.service_alive(name):
                self.start_service(name)
        self.wait_api_ready()

    # service processes ----------------------------------------------------------------

    def log_path(self, name: Service) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def start_service(self, name: Service) -> ServiceProcess:
        current = self._services.get(name)
        if current is not None and current.alive:
            raise AssertionError(f"{name} is already running (pid {current.popen.pid})")
        log_path = self.log_path(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                [sys.executable, "-m", "whisperstream.cli.main", name],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service = ServiceProcess(name, popen, log_path)
        self._services[name] = service
        return service

    def service(self, name: Service) -> ServiceProcess:
        return self._services[name]

    def service_alive(self, name: Service) -> bool:
        service = self._services.get(name)
        return service is not None and service.alive

    def kill_service(self, name: Service) -> int:
        """`kill -9`: no drain, no commit, nothing flushed."""
        return self._services[name].signal(signal.SIGKILL, timeout=10)

    def terminate_service(self, name: Service, timeout: float = 60) -> int:
        return self._services[name].signal(signal.SIGTERM, timeout=timeout)

    def restart_service(self, name: Service) -> ServiceProcess:
        if self.service_alive(name):
            self.terminate_service(name)
        return self.start_service(name)

    def log_tail(self, name: Service, lines: int = 40) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_api_ready(self, timeout: float = 60) -> None:
        def probe() -> bool | None:
            api = self._services["api"]
            if not api.alive:
                raise AssertionError(f"the API exited:\n{self.log_tail('api')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return True
            return None

        wait_until("the API's /health", probe, timeout)

    # stack services -------------------------------------------------------------------

    def stack_pid(self, name: StackService) -> int | None:
        proc = StackState.load(self.stack.state_path).processes.get(name)
        return proc.pid if proc is not None and processes.is_alive(proc) else None

    def stop_stack_service(self, name: StackService, *, kill: bool = False) -> None:
        """Stop one stack process by its recorded PID (Postgres: fast shutdown)."""
        proc = StackState.load(self.stack.state_path).processes[name]
        graceful = signal.SIGINT if name == "postgres" else signal.SIGTERM
        sig = signal.SIGKILL if kill else graceful
        processes.stop(proc, sig=sig)
        if processes.is_alive(proc):
            raise AssertionError(f"{name} (pid {proc.pid}) survived its stop")

    def start_stack_services(self) -> list[str]:
        """`LocalStack.up()`: starts what is missing, waits until all are ready."""
        return self.stack.up(volatile=self.volatile).started

    # the API --------------------------------------------------------------------------

    def http(self, key: str | None = None, timeout: float = 60) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.api_url, headers=headers, timeout=timeout)

    def submit(self, client: httpx.Client, audio: Path, **fields: str) -> httpx.Response:
        content_type = "audio/flac" if audio.suffix == ".flac" else "application/octet-stream"
        return client.post(
            "/transcribe",
            data=fields,
            files={"file": (audio.name, audio.read_bytes(), content_type)},
        )

    def submit_ok(self, audio: Path, **fields: str) -> str:
        with self.http() as client:
            response = self.submit(client, audio, **fields)
        assert response.status_code == 202, response.text
        job_id: str = response.json()["job_id"]
        return job_id

    def job(self, client: httpx.Client, job_id: str) -> dict[str, Any] | None:
        response = client.get(f"/transcribe/{job_id}")
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    def wait_for_job(
        self, job_id: str, statuses: frozenset[str] = TERMINAL_STATUSES, timeout: float = 180
    ) -> dict[str, Any]:
        last: dict[str, Any] = {}
        with self.http() as client:

            def probe() -> dict[str, Any] | None:
                nonlocal last
                with contextlib.suppress(httpx.HTTPError):
                    found = self.job(client, job_id)
                    if found is not None:
                        last = found
                        if found["status"] in statuses:
                            return found
                return None

            try:
                return wait_until(f"job {job_id} in {sorted(statuses)}", probe, timeout)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}; last seen: {last}\nworker log:\n{self.log_tail('worker')}"
                ) from None

    # Postgres -------------------------------------------------------------------------

    def sql(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.settings.effective_database_url, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()

    # Kafka ----------------------------------------------------------------------------

    def request_topics(self) -> tuple[str, ...]:
        s = self.settings
        return (s.topic_requests_high, s.topic_requests_normal, s.topic_requests_retry)

    def partitions(self, topics: Sequence[str]) -> list[Partition]:
        count = self.settings.topic_partitions
        return [(topic, p) for topic in topics for p in range(count)]

    def end_offsets(self, topics: Sequence[str]) -> dict[Partition, int]:
        """End offsets from fetch responses (Tansu's ListOffsets is wrong on S3)."""
        partitions = self.partitions(topics)
        found = high_watermarks(self.settings.kafka_bootstrap_servers, partitions)
        known = {partition: end for partition, end in found.items() if end is not None}
        assert set(known) == set(partitions), f"end offsets not read: {found}"
        return known

    def produce_raw(
        self, topic: str, key: bytes, value: bytes, partition: int | None = None
    ) -> tuple[int, int]:
        """Produce one record as an upstream system would; (partition, offset)."""
        producer = Producer(
            {"bootstrap.servers": self.settings.kafka_bootstrap_servers, "linger.ms": 0}
        )
        delivered: list[Message] = []
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        producer.produce(
            topic,
            key=key,
            value=value,
            on_delivery=lambda _e, m: delivered.append(m),
            **extra,
        )
        remaining = producer.flush(30)
        assert remaining == 0, "the record was not delivered"
        assert delivered, "no delivery report"
        message = delivered[0]
        error = message.error()
        if error is not None:
            raise KafkaException(error)
        return message.partition() or 0, message.offset() or 0

    def produce_request(self, audio: Path, partition: int | None = None) -> str:
        """An upstream-style job: audio put in S3, a request produced straight to Kafka."""
        job_id = new_event_id()
        uri = audio_uri(self.settings.audio_bucket, job_id, audio.name)
        with ObjectStore.from_settings(self.settings) as store:
            store.put_bytes(uri, audio.read_bytes(), "audio/flac")
        request = TranscriptionRequested(
            event_id=new_event_id(),
            job_id=job_id,
            occurred_at=utc_now(),
            priority=Priority.NORMAL,
            attempt=1,
            not_before=None,
            audio=AudioRef(str(uri), audio.stat().st_size, "", "audio/flac", audio.name),
            model=self.settings.whisper_model_size,
            engine=None,
            language=None,
            task=Task.TRANSCRIBE,
            options=TranscriptionOptions(),
            owner=None,
            idempotency_key=None,
            callback_url=None,
            source=Source.KAFKA,
            correlation_id=None,
        )
        self.produce_raw(
            self.settings.topic_requests_normal,
            job_id.encode(),
            self.codec.encode(request),
            partition,
        )
        return job_id

    def read_topic(self, topic: str, timeout: float = 30) -> list[Record]:
        """Every record of `topic` from the beginning to its current end."""
        ends = {p: o for (t, p), o in self.end_offsets([topic]).items() if t == topic}
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.kafka_bootstrap_servers,
                "group.id": f"_fault-tests.{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": False,
            }
        )
        records: list[Record] = []
        try:
            wanted = {p: end for p, end in ends.items() if end > 0}
            consumer.assign([TopicPartition(topic, p, 0) for p in wanted])
            position = dict.fromkeys(wanted, 0)
            deadline = time.monotonic() + timeout
            while any(position[p] < end for p, end in wanted.items()):
                if time.monotonic() > deadline:
                    raise AssertionError(f"read {position} of {wanted} in {topic}")
                message = consumer.poll(0.5)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(error)
                partition, offset = message.partition() or 0, message.offset() or 0
                position[partition] = offset + 1
                records.append(Record(topic, partition, offset, message.key(), message.value()))
        finally:
            consumer.close()
        return records

    def read_events(self, topic: str) -> list[Event]:
        events: list[Event] = []
        for record in self.read_topic(topic):
            if record.value is None:
                continue
            with contextlib.suppress(UndecodableEvent):
                events.append(self.codec.decode_any(record.value))
        return events


@contextlib.contextmanager
def running_cluster(
    *, volatile: bool, extra_env: dict[str, str] | None = None
) -> Iterator[Cluster]:
    """A started cluster; on the way out every process it started is stopped."""
    with stack_state_dir() as state_dir:
        cluster = Cluster(state_dir, volatile=volatile, extra_env=extra_env)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()
