"""The notifier's Prometheus metrics, on the registry its composition root makes."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from db.projector.lag import PartitionLag
from notifier.outcomes import Outcome


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._attempts = Counter(
            "whisperstream_webhook_attempts",
            "Webhook delivery attempts by outcome",
            ["outcome"],
            registry=registry,
        )
        self._latency = Histogram(
            "whisperstream_webhook_latency_seconds",
            "Time from sending a webhook to its answer (or error)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self._scheduled = Counter(
            "whisperstream_webhook_scheduled",
            "Deliveries scheduled from terminal status events",
            registry=registry,
        )
        self._lag = Gauge(
            "whisperstream_notifier_lag",
            "Status records behind the fetch response's high watermark, per partition",
            ["topic", "partition"],
            registry=registry,
        )
        for outcome in Outcome:
            self._attempts.labels(outcome.value)

    def attempt(self, outcome: Outcome, latency_ms: float | None) -> None:
        self._attempts.labels(outcome.value).inc()
        if latency_ms is not None:
            self._latency.observe(latency_ms / 1000)

    def scheduled(self, count: int) -> None:
        self._scheduled.inc(count)

    def observe_lag(self, lags: Iterable[PartitionLag]) -> None:
        for lag in lags:
            self._lag.labels(lag.topic, str(lag.partition)).set(lag.lag)
