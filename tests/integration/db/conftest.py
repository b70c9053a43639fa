"""A real Postgres for the db tests alone, from the ``pgserver`` wheel (no broker, no S3).

It overrides the stack-wide ``database_url`` for this folder so these tests start in a
second or two.  The tests only need ``database_url``: an asyncpg URL of an already
migrated database whose role may ``CREATE DATABASE``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pgserver.postgres_server import get_server

from db.migrate import upgrade_to_head

DATABASE = "whisperstream_db_tests"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    try:
        server.psql(f"CREATE DATABASE {DATABASE};")
        socket_dir = server.get_postmaster_info().socket_dir
        url = f"postgresql+asyncpg://postgres:@/{DATABASE}?host={socket_dir}"
        upgrade_to_head(url)
        yield url
    finally:
        server.cleanup()
