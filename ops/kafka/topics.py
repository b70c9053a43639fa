"""Topic specs as code, and an idempotent step that applies them to a cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from whisperstream.settings import Settings

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    retention_ms: int = 7 * DAY_MS
    configs: Mapping[str, str] = field(default_factory=dict)

    def all_configs(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), **self.configs}


@dataclass(frozen=True)
class TopicDifference:
    topic: str
    what: str
    wanted: str
    actual: str


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    differences: list[TopicDifference] = field(default_factory=list)


def default_topic_specs(settings: Settings) -> list[TopicSpec]:
    """The topics of docs/architecture.md; names and partition count come from the settings."""
    parts = settings.topic_partitions
    forever = -1
    return [
        TopicSpec(settings.topic_requests_high, parts, retention_ms=30 * DAY_MS),
        TopicSpec(settings.topic_requests_normal, parts, retention_ms=30 * DAY_MS),
        TopicSpec(settings.topic_requests_retry, parts, retention_ms=30 * DAY_MS),
        # one partition is plenty for cancels, and every worker reads all of it
        TopicSpec(settings.topic_control, 1, retention_ms=30 * DAY_MS),
        TopicSpec(settings.topic_status, parts, retention_ms=forever),
        TopicSpec(settings.topic_dlq, parts, retention_ms=forever),
        TopicSpec(settings.topic_workers, 1, retention_ms=DAY_MS),
    ]


def apply_topics(
    admin: AdminClient, specs: Iterable[TopicSpec], timeout: float = 15.0
) -> ApplyReport:
    """Create what is missing; report, but never change, what differs on existing topics."""
    report = ApplyReport()
    wanted = list(specs)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [spec for spec in wanted if spec.name not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=s.all_configs())
                for s in missing
            ],
            request_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
            report.created.append(name)
    for spec in wanted:
        if spec.name in report.created:
            continue
        diffs = _differences(admin, spec, len(existing[spec.name].partitions), timeout)
        if diffs:
            report.differences.extend(diffs)
        else:
            report.unchanged.append(spec.name)
    return report


def _differences(
    admin: AdminClient, spec: TopicSpec, partitions: int, timeout: float
) -> list[TopicDifference]:
    diffs: list[TopicDifference] = []
    if partitions != spec.partitions:
        diffs.append(
            TopicDifference(spec.name, "partitions", str(spec.partitions), str(partitions))
        )
    resource = ConfigResource(ConfigResource.Type.TOPIC, spec.name)
    try:
        described = admin.describe_configs([resource])[resource].result(timeout)
    except KafkaException:
        # Some brokers (Tansu among them) do not describe topic configs; partitions still count.
        return diffs
    for key, value in spec.all_configs().items():
        entry = described.get(key)
        if entry is not None and entry.value is not None and str(entry.value) != value:
            diffs.append(TopicDifference(spec.name, key, value, str(entry.value)))
    return diffs
