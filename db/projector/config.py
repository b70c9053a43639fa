"""What the projector needs from the settings, in one frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whisperstream.kafka_security import KafkaConnection, librdkafka_security
from whisperstream.settings import Settings

# Tansu takes about session.timeout.ms / 2 to complete a group join (docs/architecture.md).
SESSION_TIMEOUT_MS = 6000


@dataclass(frozen=True, slots=True)
class ProjectorConfig:
    bootstrap_servers: str
    group_id: str
    topics: tuple[str, ...]
    batch_max_events: int = 1000
    batch_max_ms: int = 200
    # librdkafka's security properties (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, ...)
    security: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> ProjectorConfig:
        return cls(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=settings.projector_group_id,
            topics=projected_topics(settings),
            batch_max_events=settings.projector_batch_max_events,
            batch_max_ms=settings.projector_batch_max_ms,
            security=librdkafka_security(settings),
        )

    @property
    def kafka(self) -> KafkaConnection:
        return KafkaConnection(self.bootstrap_servers, self.security)

    def consumer_config(self, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            **self.security,
            "group.id": self.group_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "enable.auto.commit": False,
            # only used for a partition with no offset in Postgres, which seeks to the
            # beginning anyway; never "latest", which Tansu gets wrong
            "auto.offset.reset": "earliest",
        }
        config.update(overrides)
        return config


def projected_topics(settings: Settings) -> tuple[str, ...]:
    """Every topic whose events reach Postgres (heartbeats do not)."""
    return (
        *settings.request_topics,
        settings.topic_status,
        settings.topic_control,
        settings.topic_dlq,
    )
