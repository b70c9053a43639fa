"""A Prometheus /metrics endpoint for the services that have no HTTP server of their own."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, start_http_server

log = logging.getLogger(__name__)


@contextlib.contextmanager
def metrics_server(
    service: str, registry: CollectorRegistry, host: str, port: int | None
) -> Iterator[None]:
    """Serve `registry` on host:port while the block runs; nothing when port is None."""
    if port is None:
        yield
        return
    server, thread = start_http_server(port, addr=host, registry=registry)
    log.info("%s metrics on http://%s:%d/metrics", service, host, server.server_port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
