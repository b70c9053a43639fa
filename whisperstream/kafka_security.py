"""The Kafka connection every client we build uses: brokers plus transport security.

Two client libraries run here: confluent-kafka (librdkafka: the API's producer, the
workers' publisher and control reader, the projector, the operator tools) and Faust's
aiokafka (the workers' request consumer). Both get their settings from this module, so
``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*`` and ``KAFKA_SSL_CA_FILE`` reach every one.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whisperstream.settings import Settings


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Bootstrap servers and the librdkafka security properties that go with them."""

    bootstrap_servers: str
    security: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        return cls(settings.kafka_bootstrap_servers, librdkafka_security(settings))

    def client_config(self, **extra: Any) -> dict[str, Any]:
        """librdkafka properties for a Producer, Consumer or AdminClient."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.security, **extra}


def as_connection(kafka: KafkaConnection | str) -> KafkaConnection:
    """A bare ``host:port,...`` string is a plaintext connection (the local stack, tests)."""
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(kafka)


def librdkafka_security(settings: Settings) -> dict[str, str]:
    """librdkafka's names for the security settings; empty for plaintext."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config = {"security.protocol": protocol.lower()}
    if settings.kafka_sasl_mechanism is not None:
        config["sasl.mechanisms"] = settings.kafka_sasl_mechanism
    if settings.kafka_sasl_username is not None:
        config["sasl.username"] = settings.kafka_sasl_username
    if settings.kafka_sasl_password is not None:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_ca_file is not None:
        config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
    return config


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context aiokafka uses: hostname checked, the CA file or the system CAs."""
    cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    return ssl.create_default_context(cafile=cafile)


def faust_broker_credentials(settings: Settings) -> Any:
    """Faust's ``broker_credentials`` for the settings; None for plaintext."""
    import faust  # noqa: PLC0415 - only the worker imports Faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = kafka_ssl_context(settings) if protocol.endswith("SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password is not None else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )
