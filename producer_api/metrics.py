"""Prometheus metrics of one API app, in its own registry (no global state)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "whisperstream_api_requests",
            "HTTP requests by route template, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "whisperstream_api_request_seconds",
            "HTTP request latency by route template and method",
            ("route", "method"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upload_bytes = Counter(
            "whisperstream_api_upload_bytes",
            "Audio bytes streamed to S3 by uploads",
            registry=self.registry,
        )
        self.produce_latency = Histogram(
            "whisperstream_api_kafka_produce_seconds",
            "Time from produce to the broker's acknowledgement, by topic",
            ("topic", "outcome"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.projector_lag = Gauge(
            "whisperstream_projector_lag",
            "Records not yet folded into Postgres, per partition, as the projector last saw "
            "them in fetch responses (read from projector_lag at scrape time)",
            ("topic", "partition"),
            registry=self.registry,
        )

    def set_projector_lag(self, lag: dict[tuple[str, int], int]) -> None:
        self.projector_lag.clear()
        for (topic, partition), value in lag.items():
            self.projector_lag.labels(topic, str(partition)).set(value)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def exposition(self) -> web.Response:
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
