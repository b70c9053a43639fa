"""One frozen settings object, read from the environment once per process."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import platformdirs
from pydantic import Field, FilePath, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from whisperstream.errors import SettingsError
from whisperstream.transport_security import check_transport_security

Engine = Literal["faster-whisper", "openai-whisper"]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("whisperstream"))


class Settings(BaseSettings):
    """Every knob of every service; env names are the field names in upper case."""

    model_config = SettingsConfigDict(frozen=True, case_sensitive=False, extra="ignore")

    # connections
    database_url: str | None = Field(
        default=None,
        description="Postgres URL; unset means the embedded Postgres of the local stack",
    )
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_access_key: str = "whisperstream"
    s3_secret_key: SecretStr = SecretStr("whisperstream-secret")
    s3_region: str = "us-east-1"
    s3_public_endpoint: str | None = Field(
        default=None,
        description="S3 as browsers reach it, for the web page's presigned audio URLs "
        "(GET /transcribe/{id}/audio) when S3_ENDPOINT is an internal name; unset: "
        "S3_ENDPOINT",
    )
    schema_registry_url: str | None = None

    # production transport security (docs/deploy.md); every Kafka client we build gets
    # these, confluent-kafka and Faust's aiokafka alike (whisperstream/kafka_security.py)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="how every Kafka client talks to the brokers"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="SASL mechanism; required with a SASL_* protocol"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: FilePath | None = Field(
        default=None,
        description="PEM CA bundle for the brokers' certificates; unset: the system CAs",
    )
    s3_ca_file: FilePath | None = Field(
        default=None, description="PEM CA bundle for an https S3_ENDPOINT; unset: system CAs"
    )
    s3_verify_tls: bool = Field(
        default=True, description="false skips certificate checks of an https S3 (tests only)"
    )

    # buckets
    audio_bucket: str = "audio"
    results_bucket: str = "results"
    broker_bucket: str = "tansu"

    # topics
    topic_requests_high: str = "transcription.requests.high"
    topic_requests_normal: str = "transcription.requests.normal"
    topic_requests_retry: str = "transcription.requests.retry"
    topic_control: str = "transcription.control"
    topic_status: str = "transcription.status"
    topic_dlq: str = "transcription.dlq"
    topic_workers: str = "transcription.workers"
    topic_partitions: int = Field(default=4, ge=1, le=1024)

    # whisper and the model pool
    whisper_engine: Engine = "faster-whisper"
    whisper_model_size: str = Field(default="tiny.en", min_length=1)
    whisper_model_dir: Path | None = None
    model_pool_size: int = Field(default=1, ge=0, le=64)
    model_pool_max_size: int = Field(default=2, ge=1, le=64)
    model_pool_max_memory_mb: int | None = Field(default=None, ge=64)
    worker_concurrency: int = Field(default=1, ge=1, le=256)

    # API
    max_upload_size_mb: int = Field(default=500, ge=1, le=1_048_576)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    whisperstream_admin_key: SecretStr | None = None
    # what the CLI's client commands (submit, status, jobs) talk to
    whisperstream_api_url: str | None = Field(
        default=None,
        description="API base URL for the client commands and the links in webhooks; "
        "unset: API_HOST:API_PORT",
    )
    whisperstream_api_key: SecretStr | None = None
    api_rate_limit_per_s: float = Field(default=200.0, gt=0)
    api_rate_limit_burst: int = Field(default=400, ge=1)
    api_kafka_delivery_timeout_s: float = Field(default=10.0, gt=0, le=300)
    api_auth_failures_per_min: float = Field(
        default=30.0,
        gt=0,
        description="failed authentications (401) one client address may make per minute on "
        "average; past API_AUTH_FAILURE_BURST the address gets 429 with Retry-After, even "
        "with a valid key, until it cools down (the TCP peer address: behind a proxy "
        "that is the proxy's)",
    )
    api_auth_failure_burst: int = Field(
        default=20, ge=1, description="failed authentications allowed in a row before 429"
    )
    api_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds a request body may take to arrive, extended by one second per "
        "API_BODY_MIN_RATE_BYTES_S bytes received; a slower body is cut off with 408",
    )
    api_body_min_rate_bytes_s: int = Field(
        default=8192,
        ge=1,
        description="the slowest upload rate (bytes/s, averaged) the API waits for; see "
        "API_BODY_TIMEOUT_S",
    )
    api_events_keepalive_s: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="seconds between the keep-alive comments of an idle event stream",
    )
    api_events_client_queue: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="events an event stream may fall behind before it is dropped",
    )
    api_events_replay_events: int = Field(
        default=20_000,
        ge=0,
        le=10_000_000,
        description=(
            "recent status events each API process keeps for resuming streams "
            "(older ones are read from Kafka)"
        ),
    )
    whisperstream_openai_cancel_on_disconnect: bool = Field(
        default=True,
        description=(
            "cancel the job of an OpenAI-compatible request whose client went away before "
            "the result; false lets it finish"
        ),
    )

    # the projector (db/projector)
    projector_group_id: str = Field(default="whisperstream-projector", min_length=1)
    projector_batch_max_events: int = Field(default=1000, ge=1, le=100_000)
    projector_batch_max_ms: int = Field(default=200, ge=1, le=60_000)
    projector_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve the projector's Prometheus metrics on this port; unset: off",
    )

    # webhooks: the notifier (notifier/)
    notifier_group_id: str = Field(default="whisperstream-notifier", min_length=1)
    notifier_metrics_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="serve the notifier's Prometheus metrics on this port; unset: off",
    )
    webhook_concurrency: int = Field(
        default=64, ge=1, le=4096, description="deliveries in flight at once, all receivers"
    )
    webhook_concurrency_per_host: int = Field(
        default=8,
        ge=1,
        le=4096,
        description="deliveries in flight to one host, so one slow receiver holds few slots",
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="a delivery's whole time limit"
    )
    webhook_retry_schedule: str = Field(
        default="5s,30s,2m,10m,30m,2h,6h,12h",
        description="waits before each retry (s, m, h), comma-separated: 8 retries by default",
    )
    webhook_allow_private_networks: bool = Field(
        default=False,
        description="let callback URLs reach loopback, private and link-local addresses "
        "(on-prem receivers, tests); cloud metadata addresses stay refused",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="whsec_ secret signing the callbacks of jobs whose owner is no API key "
        "(WHISPERSTREAM_ADMIN_KEY, upstream producers); unset: those are not sent",
    )
    webhook_secret_grace_s: float = Field(
        default=86_400.0,
        ge=0,
        description="how long a rotated key's previous webhook secret also signs",
    )
    webhook_poll_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="how often the notifier looks for due retries"
    )

    # the embedded local stack
    whisperstream_state_dir: Path = Field(default_factory=_default_state_dir)
    stack_postgres_port: int = Field(default=54329, ge=1, le=65535)

    # logging (whisperstream/logs.py)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="our own loggers' level; other libraries log at WARNING unless DEBUG",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line, for log pipelines"
    )

    # set by `whisperstream up` for the services it supervises
    whisperstream_activity_fd: int | None = Field(
        default=None,
        ge=3,
        description="file descriptor of the terminal of `up`: one line per start and per job",
    )
    whisperstream_supervisor_state: Path | None = Field(
        default=None, description="the JSON file where `up` records each service's restarts"
    )
    # for container probes (deploy/): `python -m whisperstream.probe file PATH MAX_AGE_S`
    whisperstream_heartbeat_file: Path | None = Field(
        default=None,
        description="touched by a worker after each heartbeat reaches Kafka and by the "
        "projector after each poll; its age is their readiness signal; unset: none",
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_has_ports(cls, value: str) -> str:
        for server in value.split(","):
            _split_host_port(server.strip())
        return value

    @field_validator("s3_endpoint", "s3_public_endpoint")
    @classmethod
    def _endpoint_is_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an http:// or https:// URL with a host, e.g. http://127.0.0.1:8333")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("a postgresql:// URL, e.g. postgresql://user:pw@127.0.0.1:5432/db")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        parse_durations(value)
        return value

    @model_validator(mode="after")
    def _transport_security_fits(self) -> Settings:
        check_transport_security(self)
        return self

    @model_validator(mode="after")
    def _pool_fits(self) -> Settings:
        if self.model_pool_size > self.model_pool_max_size:
            raise ValueError(
                f"MODEL_POOL_SIZE ({self.model_pool_size}) must not exceed "
                f"MODEL_POOL_MAX_SIZE ({self.model_pool_max_size})"
            )
        return self

    # derived values -------------------------------------------------------------

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        """The first bootstrap server, where the local stack runs its broker."""
        return _split_host_port(self.kafka_bootstrap_servers.split(",")[0].strip())

    @property
    def s3_host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.s3_endpoint)
        default = 443 if parts.scheme == "https" else 80
        return parts.hostname or "127.0.0.1", parts.port or default

    @property
    def s3_secure(self) -> bool:
        return urlsplit(self.s3_endpoint).scheme == "https"

    @property
    def effective_database_url(self) -> str:
        """`DATABASE_URL`, or the embedded Postgres the local stack runs."""
        if self.database_url is not None:
            return self.database_url
        return f"postgresql://postgres@127.0.0.1:{self.stack_postgres_port}/whisperstream"

    @property
    def request_topics(self) -> tuple[str, str, str]:
        return self.topic_requests_high, self.topic_requests_normal, self.topic_requests_retry

    @property
    def api_base_url(self) -> str:
        return self.whisperstream_api_url or f"http://{self.api_host}:{self.api_port}"

    @property
    def webhook_retry_delays_s(self) -> tuple[float, ...]:
        return parse_durations(self.webhook_retry_schedule)

    def topic_for_priority(self, priority: str) -> str:
        """The request topic of a priority ("high" or "normal")."""
        return self.topic_requests_high if priority == "high" else self.topic_requests_normal

    @property
    def all_topics(self) -> tuple[str, ...]:
        return (
            *self.request_topics,
            self.topic_control,
            self.topic_status,
            self.topic_dlq,
            self.topic_workers,
        )


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_durations(text: str) -> tuple[float, ...]:
    """'5s,30s,2m' as seconds; an empty text is no retries at all."""
    delays = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        unit = "ms" if part.endswith("ms") else part[-1]
        number = part[: -len(unit)] if unit in _DURATION_UNITS else part
        try:
            seconds = float(number) * _DURATION_UNITS.get(unit, 1.0)
        except ValueError:
            raise ValueError(f"durations like 5s, 2m, 1h, comma-separated; got {part!r}") from None
        if not 0 <= seconds <= 7 * 86_400:
            raise ValueError(f"a wait from 0 to 7 days, got {part!r}")
        delays.append(seconds)
    return tuple(delays)


def _split_host_port(server: str) -> tuple[str, int]:
    host, sep, port = server.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"host:port pairs separated by commas, got {server!r}")
    return host.strip("[]"), int(port)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation failure into one readable SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError, what: str = "configuration") -> str:
    """One line per invalid setting: its environment name, the value, what it accepts."""
    lines = [f"invalid {what}:"]
    for error in exc.errors():
        name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
        received = error.get("input")
        shown = "" if isinstance(received, dict) else f" (got {received!r})"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {name}{shown}: {message}")
    return "\n".join(lines)


def is_loopback(host: str | None) -> bool:
    return host in LOOPBACK_HOSTS
