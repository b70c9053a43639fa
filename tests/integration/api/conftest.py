"""An API app on a real HTTP test server, against the real local stack."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from db.api_keys import create_api_key
from db.engine import create_engine
from producer_api.app import create_app
from schemas.codec import EventCodec
from schemas.events import Event, utc_now
from storage.s3 import ObjectStore
from tests.support.kafka_read import records_to_end
from whisperstream.settings import Settings

ENV_ADMIN_KEY = "env-admin-key-for-tests"


@dataclass
class Api:
    client: TestClient[Any, Any]
    settings: Settings
    engine: AsyncEngine
    store: ObjectStore
    user_key: str
    other_key: str
    admin_key: str

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.user_key}"}


ApiFactory = Callable[..., AsyncIterator[Api]]


@pytest.fixture(scope="session")
def jfk_bytes(jfk_flac: Path) -> bytes:
    return jfk_flac.read_bytes()


@pytest.fixture
def api_settings(fresh_topics: Settings, fresh_database_url: str) -> Settings:
    return fresh_topics.model_copy(
        update={
            "database_url": fresh_database_url,
            "whisperstream_admin_key": SecretStr(ENV_ADMIN_KEY),
        }
    )


async def start_api(
    settings: Settings, producer_options: dict[str, Any] | None = None
) -> tuple[TestClient[Any, Any], AsyncEngine, ObjectStore, tuple[str, str, str]]:
    engine = create_engine(settings.effective_database_url)
    keys = []
    for name, admin in (("user", False), ("other", False), ("admin", True)):
        plain, _ = await create_api_key(engine, name=name, at=utc_now(), is_admin=admin)
        keys.append(plain)
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(settings, producer_options=producer_options))
    )
    await client.start_server()
    return client, engine, ObjectStore.from_settings(settings), (keys[0], keys[1], keys[2])


@pytest.fixture
async def api(api_settings: Settings) -> AsyncIterator[Api]:
    client, engine, store, (user, other, admin) = await start_api(api_settings)
    try:
        yield Api(client, api_settings, engine, store, user, other, admin)
    finally:
        await client.close()
        store.close()
        await engine.dispose()


def read_topic(settings: Settings, topic: str) -> list[Event]:
    """Every event on ``topic`` up to its end now. The API answers only once the broker
    has confirmed its event, so what a test expects is there; what is not there was
    not published (not merely late)."""
    with EventCodec() as codec:
        return [
            codec.decode_any(value or b"")
            for _, _, value in records_to_end(settings.kafka_bootstrap_servers, topic)
        ]
