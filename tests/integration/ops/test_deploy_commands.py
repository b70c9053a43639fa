"""`whisperstream migrate` and `whisperstream buckets apply`, the set-up steps of a
deployment's one-shot job (deploy/), against the local stack's Postgres and S3."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql

from db.migrate import alembic_config
from storage.s3 import ObjectStore
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "whisperstream.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def empty_database(running_stack: RunningStack) -> Iterator[str]:
    port = running_stack.settings.stack_postgres_port
    admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    name = f"deploy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
            )


def test_migrate_brings_an_empty_database_to_head_and_again_changes_nothing(
    running_stack: RunningStack, empty_database: str
) -> None:
    env = {**os.environ, **running_stack.env, "DATABASE_URL": empty_database}
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    for _ in range(2):
        done = _run(env, "migrate")
        assert done.returncode == 0, done.stderr
        assert "database schema at head" in done.stdout
        with psycopg.connect(empty_database) as conn:
            rows = conn.execute("select version_num from alembic_version").fetchall()
        assert rows == [(head,)]


def test_migrate_refuses_without_a_database_url(running_stack: RunningStack) -> None:
    env = {k: v for k, v in {**os.environ, **running_stack.env}.items() if k != "DATABASE_URL"}
    done = _run(env, "migrate")
    assert done.returncode == 2
    assert "DATABASE_URL is not set" in done.stderr


def test_buckets_apply_creates_the_audio_and_results_buckets_once(
    running_stack: RunningStack,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    audio, results = f"audio-{suffix}", f"results-{suffix}"
    env = {**os.environ, **running_stack.env, "AUDIO_BUCKET": audio, "RESULTS_BUCKET": results}
    first = _run(env, "buckets", "apply")
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == ["created", audio, "created", results]
    again = _run(env, "buckets", "apply")
    assert again.stdout.split() == ["unchanged", audio, "unchanged", results]
    with ObjectStore.from_settings(running_stack.settings) as store:
        assert store.bucket_exists(audio)
        assert store.bucket_exists(results)
