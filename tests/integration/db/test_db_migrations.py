"""The Alembic migrations build the models' schema from an empty database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import create_engine, inspect

from db import migrate
from db.models import Base

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_database_url(database_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``database_url``."""
    admin = migrate.sync_url(database_url)
    name = f"empty_{uuid.uuid4().hex[:12]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name, drivername="postgresql+asyncpg").render_as_string(
            hide_password=False
        )
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def test_upgrade_from_empty_then_check_finds_nothing(empty_database_url: str) -> None:
    migrate.upgrade_to_head(empty_database_url)
    migrate.check(empty_database_url)

    engine = create_engine(migrate.sync_url(empty_database_url))
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_twice_is_a_no_op(empty_database_url: str) -> None:
    migrate.upgrade_to_head(empty_database_url)
    migrate.upgrade_to_head(empty_database_url)
    migrate.check(empty_database_url)


def test_upgrade_with_the_sync_url(empty_database_url: str) -> None:
    sync = migrate.sync_url(empty_database_url).render_as_string(hide_password=False)
    migrate.upgrade_to_head(sync)
    migrate.check(sync)
