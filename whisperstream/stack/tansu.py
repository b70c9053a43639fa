"""Tansu: the Kafka-protocol broker, on memory or on the local S3."""

from __future__ import annotations

from pathlib import Path

from whisperstream.settings import Settings
from whisperstream.stack.binaries import tansu_binary
from whisperstream.stack.processes import ManagedProcess, launch


def storage_url(settings: Settings, *, volatile: bool) -> str:
    return "memory://tansu/" if volatile else f"s3://{settings.broker_bucket}/"


def start_tansu(settings: Settings, state_dir: Path, *, volatile: bool) -> ManagedProcess:
    host, port = settings.kafka_host_port
    listener = f"tcp://{host}:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": settings.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": settings.s3_secret_key.get_secret_value(),
        "AWS_DEFAULT_REGION": settings.s3_region,
        "AWS_ENDPOINT": settings.s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
    argv = [
        str(tansu_binary()),
        "broker",
        "--listener-url",
        listener,
        "--advertised-listener-url",
        listener,
        "--storage-engine",
        storage_url(settings, volatile=volatile),
    ]
    return launch("broker", argv, state_dir / "logs" / "tansu.log", env=env, cwd=state_dir)
