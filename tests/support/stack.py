"""Helpers to run the real local stack from tests."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from whisperstream.settings import Settings, load_settings
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.ports import free_port


@dataclass(frozen=True)
class RunningStack:
    stack: LocalStack
    settings: Settings

    @property
    def env(self) -> dict[str, str]:
        """What a subprocess needs in its environment to use this stack."""
        return {**self.stack.urls(), **stack_env(self.settings)}


def stack_env(settings: Settings) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "S3_ENDPOINT": settings.s3_endpoint,
        "STACK_POSTGRES_PORT": str(settings.stack_postgres_port),
        "DATABASE_URL": settings.effective_database_url,
        "WHISPERSTREAM_STATE_DIR": str(settings.whisperstream_state_dir),
    }


def random_stack_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a stack on free random ports, so two test runs never collide."""
    return load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        stack_postgres_port=free_port(),
        whisperstream_state_dir=state_dir,
        database_url=None,
        **overrides,
    )


@contextlib.contextmanager
def stack_state_dir() -> Iterator[Path]:
    """A state directory outside pytest's tmp tree.

    pytest resets its tmp root to mode 0700 at every session start (its own and any
    concurrent one), which would lock out the unprivileged user Postgres runs as.
    """
    path = Path(tempfile.mkdtemp(prefix="whisperstream-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
