"""Kafka SASL/TLS, S3 TLS and Postgres TLS settings: checked at start, and handed to every
client we build (confluent-kafka's and Faust's aiokafka alike)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiokafka  # type: ignore[import-untyped]
import certifi
import pytest
import urllib3
from confluent_kafka import KafkaException, Producer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from db.engine import async_url, asyncpg_tls
from db.projector.config import ProjectorConfig
from db.projector.groups import ensure_group_inactive
from notifier.service import NotifierConfig
from ops.kafka.offsets import high_watermarks
from producer_api.heartbeats import HeartbeatMonitor
from producer_api.status_feed import StatusFeed
from schemas.codec import EventCodec
from storage.s3 import ObjectStore
from stream_workers.config import load_tuning
from stream_workers.faust_app import build_app
from stream_workers.kafka_io import CancelRegistry, ControlReader, KafkaPublisher
from whisperstream.errors import SettingsError
from whisperstream.kafka_producer import KafkaProducer
from whisperstream.kafka_security import KafkaConnection, faust_broker_credentials
from whisperstream.settings import Settings, load_settings
from whisperstream.stack.ports import free_port
from whisperstream.stack.readiness import check_kafka

CA = Path(certifi.where())
SCRAM = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "whisperstream",
    "kafka_sasl_password": "pw-123",
    "kafka_ssl_ca_file": CA,
}
LIBRDKAFKA_SCRAM = {
    "security.protocol": "sasl_ssl",
    "sasl.mechanisms": "SCRAM-SHA-512",
    "sasl.username": "whisperstream",
    "sasl.password": "pw-123",
    "ssl.ca.location": str(CA),
}


@pytest.fixture
def not_a_ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    return path


def _scram_settings(**overrides: object) -> Settings:
    return load_settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", **SCRAM, **overrides)


async def _no_owners(_job_ids: list[str]) -> dict[str, str | None]:
    return {}


def _subset(config: dict[str, Any]) -> dict[str, Any]:
    return {key: config.get(key) for key in LIBRDKAFKA_SCRAM}


# -- wrong settings stop the process at start ----------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"},
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_username": "u"}, "KAFKA_SASL_USERNAME set but KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_security_protocol": "SASL"}, "KAFKA_SECURITY_PROTOCOL (got 'SASL')"),
        ({**SCRAM, "kafka_sasl_mechanism": "SCRAM-SHA-1"}, "KAFKA_SASL_MECHANISM"),
        ({"kafka_ssl_ca_file": "/nonexistent/ca.pem"}, "KAFKA_SSL_CA_FILE"),
        ({"kafka_ssl_ca_file": CA}, "KAFKA_SSL_CA_FILE is set but KAFKA_SECURITY_PROTOCOL="),
        ({"s3_ca_file": CA}, "S3_CA_FILE is set but S3_ENDPOINT is not an https:// URL"),
        (
            {"database_url": "postgresql://u@db/ws?sslmode=verify"},
            "DATABASE_URL has sslmode='verify'; libpq accepts disable, allow",
        ),
        (
            {"database_url": "postgresql://u@db/ws?sslmode=verify-full&sslrootcert=/no/ca.pem"},
            "sslrootcert=/no/ca.pem, which is not a file",
        ),
        (
            {"database_url": f"postgresql://u@db/ws?sslrootcert={CA}"},
            "add sslmode=verify-full",
        ),
    ],
)
def test_a_wrong_security_setting_is_refused_naming_it(
    overrides: dict[str, object], expected: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(**overrides)
    assert expected in str(caught.value)


def test_a_ca_file_that_holds_no_certificate_is_refused(not_a_ca: Path) -> None:
    with pytest.raises(SettingsError, match=r"KAFKA_SSL_CA_FILE=.* is not a PEM CA bundle"):
        load_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=not_a_ca)
    with pytest.raises(SettingsError, match=r"S3_CA_FILE=.* is not a PEM CA bundle"):
        load_settings(s3_endpoint="https://s3.example:443", s3_ca_file=not_a_ca)


def test_a_service_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "whisperstream.cli.main", "topics", "apply"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "KAFKA_SECURITY_PROTOCOL=SASL_SSL needs KAFKA_SASL_MECHANISM" in done.stderr
    assert "Traceback" not in done.stderr


# -- every confluent-kafka client gets the settings -----------------------------------


def test_librdkafka_accepts_the_properties_we_derive() -> None:
    config = KafkaConnection.from_settings(_scram_settings()).client_config()
    assert _subset(config) == LIBRDKAFKA_SCRAM
    Producer(config).flush(0)  # librdkafka validates names and values when it is built


def test_plaintext_adds_nothing() -> None:
    connection = KafkaConnection.from_settings(load_settings())
    assert connection.security == {}


def test_the_producers_of_the_api_workers_and_tools_get_them() -> None:
    settings = _scram_settings()
    assert _subset(KafkaProducer.from_settings(settings)._config) == LIBRDKAFKA_SCRAM
    publisher = KafkaPublisher(KafkaConnection.from_settings(settings), EventCodec(), client_id="t")
    assert _subset(publisher._producer._config) == LIBRDKAFKA_SCRAM


def test_the_projector_notifier_and_heartbeat_monitor_get_them() -> None:
    settings = _scram_settings()
    projector = ProjectorConfig.from_settings(settings)
    assert _subset(projector.consumer_config()) == LIBRDKAFKA_SCRAM
    assert _subset(projector.kafka.client_config()) == LIBRDKAFKA_SCRAM
    monitor = HeartbeatMonitor(
        KafkaConnection.from_settings(settings), settings.topic_workers, EventCodec()
    )
    assert _subset(monitor._config) == LIBRDKAFKA_SCRAM
    notifier = NotifierConfig.from_settings(settings)
    assert _subset(notifier.consumer.consumer_config()) == LIBRDKAFKA_SCRAM


def test_clients_built_inline_hand_the_connection_to_librdkafka(not_a_ca: Path) -> None:
    # librdkafka reads ssl.ca.location when a client is built: a bad file there proves
    # the connection's properties reached each real client
    broken = KafkaConnection(
        f"127.0.0.1:{free_port()}", {"security.protocol": "ssl", "ssl.ca.location": str(not_a_ca)}
    )
    builders: dict[str, Callable[[], object]] = {
        "offsets": lambda: high_watermarks(broken, [("t", 0)], timeout=0.1),
        "group check": lambda: ensure_group_inactive(broken, "g", timeout_s=0.1),
        "readiness": lambda: check_kafka(broken, timeout=0.1),
        "api status feed": lambda: StatusFeed(
            broken, "status", EventCodec(), _no_owners
        )._read_range({0: (0, 1)}),
        "control reader": lambda: ControlReader(
            broken,
            "control",
            codec=EventCodec(),
            registry=CancelRegistry(),
            publisher=KafkaPublisher(broken, EventCodec(), client_id="t"),
            dlq_topic="dlq",
        ),
    }
    refused = {}
    for name, build in builders.items():
        try:
            build()
        except KafkaException as exc:
            refused[name] = "ssl.ca.location" in str(exc)
    assert refused == dict.fromkeys(builders, True)


# -- Faust's aiokafka gets them too ---------------------------------------------------


def test_the_workers_faust_app_gets_sasl_over_tls() -> None:
    settings = _scram_settings()
    app = build_app(SimpleNamespace(settings=settings, tuning=load_tuning()))  # type: ignore[arg-type]
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == "SASL_SSL"
    assert auth["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("whisperstream", "pw-123")
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert auth["ssl_context"].verify_mode == ssl.CERT_REQUIRED

    async def build_consumer() -> None:
        # aiokafka checks the combination when a client is built
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers, **auth
        )
        await consumer.stop()

    asyncio.run(build_consumer())


def test_faust_gets_tls_alone_and_nothing_for_plaintext() -> None:
    tls = faust_broker_credentials(load_settings(kafka_security_protocol="SSL"))
    assert credentials_to_aiokafka_auth(tls)["security_protocol"] == "SSL"
    assert faust_broker_credentials(load_settings()) is None


# -- S3 and Postgres ------------------------------------------------------------------


def test_the_object_store_checks_https_certificates_against_the_ca_file() -> None:
    settings = load_settings(s3_endpoint="https://s3.example:9000", s3_ca_file=CA)
    with ObjectStore.from_settings(settings) as store:
        pool = store._http.connection_from_host("s3.example", 9000, scheme="https")
        assert isinstance(pool, urllib3.HTTPSConnectionPool)
        assert pool.ca_certs == str(CA)
        assert pool.cert_reqs == "CERT_REQUIRED"
    insecure = load_settings(s3_endpoint="https://s3.example:9000", s3_verify_tls=False)
    with ObjectStore.from_settings(insecure) as store:
        pool = store._http.connection_from_host("s3.example", 9000, scheme="https")
        assert isinstance(pool, urllib3.HTTPSConnectionPool)
        assert pool.cert_reqs == "CERT_NONE"


def test_postgres_tls_reaches_asyncpg_as_its_ssl_argument() -> None:
    url = f"postgresql://u:p@db:5432/ws?sslmode=verify-full&sslrootcert={CA}&application_name=a"
    load_settings(database_url=url)  # accepted
    context = asyncpg_tls(url)
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED
    # asyncpg would refuse libpq's names as keywords: they leave the URL
    assert dict(async_url(url).query) == {"application_name": "a"}
    verify_ca = asyncpg_tls(f"postgresql://db/ws?sslmode=verify-ca&sslrootcert={CA}")
    assert isinstance(verify_ca, ssl.SSLContext)
    assert not verify_ca.check_hostname
    assert asyncpg_tls("postgresql://db/ws?sslmode=require") == "require"
    assert asyncpg_tls("postgresql://db/ws") is None
