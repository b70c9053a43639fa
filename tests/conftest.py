"""Session fixtures shared by integration and e2e tests: the real local stack, started once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from psycopg import sql

from ops.kafka.topics import apply_topics, default_topic_specs
from storage.s3 import ObjectStore
from tests.support.audio import JFK_FLAC
from tests.support.stack import RunningStack, random_stack_settings, stack_state_dir
from whisperstream.settings import Settings
from whisperstream.stack.manager import LocalStack

TEMPLATE_DB = "whisperstream_template"


def _admin_url(settings: Settings) -> str:
    return f"postgresql://postgres@127.0.0.1:{settings.stack_postgres_port}/postgres"


@pytest.fixture(scope="session")
def running_stack() -> Iterator[RunningStack]:
    with stack_state_dir() as state_dir:
        yield from _run_stack(state_dir)


def _run_stack(state_dir: Path) -> Iterator[RunningStack]:
    settings = random_stack_settings(state_dir)
    stack = LocalStack(settings)
    stack.up(volatile=True)
    # a migrated template nobody connects to, for cheap per-test databases
    with psycopg.connect(_admin_url(settings), autocommit=True) as conn:
        conn.execute(f"create database {TEMPLATE_DB} template whisperstream")
    try:
        yield RunningStack(stack, settings)
    finally:
        stack.down()


@pytest.fixture(scope="session")
def stack_settings(running_stack: RunningStack) -> Settings:
    return running_stack.settings


@pytest.fixture(scope="session")
def database_url(running_stack: RunningStack) -> str:
    """An asyncpg URL of the stack's migrated database."""
    return running_stack.settings.effective_database_url.replace(
        "postgresql://", "postgresql+asyncpg://", 1
    )


@pytest.fixture
def fresh_database_url(running_stack: RunningStack) -> Iterator[str]:
    """A new migrated database for one test, copied from the stack's migrated one."""
    settings = running_stack.settings
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = _admin_url(settings)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
            )
        )
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{settings.stack_postgres_port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


@pytest.fixture
def fresh_topics(running_stack: RunningStack) -> Settings:
    """Settings whose topics (and consumer groups, by name) are new for this test."""
    suffix = uuid.uuid4().hex[:8]
    base = running_stack.settings
    updates = {
        field: f"{getattr(base, field)}.{suffix}"
        for field in (
            "topic_requests_high",
            "topic_requests_normal",
            "topic_requests_retry",
            "topic_control",
            "topic_status",
            "topic_dlq",
            "topic_workers",
        )
    }
    settings = base.model_copy(update=updates)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    apply_topics(admin, default_topic_specs(settings))
    return settings


@pytest.fixture
def fresh_buckets(running_stack: RunningStack) -> Settings:
    """Settings whose audio and results buckets are new (and empty) for this test."""
    suffix = uuid.uuid4().hex[:8]
    base = running_stack.settings
    settings = base.model_copy(
        update={"audio_bucket": f"audio-{suffix}", "results_bucket": f"results-{suffix}"}
    )
    with ObjectStore.from_settings(settings) as store:
        store.ensure_bucket(settings.audio_bucket)
        store.ensure_bucket(settings.results_bucket)
    return settings


@pytest.fixture(scope="session")
def jfk_flac() -> Path:
    path = JFK_FLAC
    assert path.exists(), f"test audio missing: {path}"
    return path
