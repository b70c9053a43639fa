"""The `WriterSchemaSource` port: the unit tests' `FakeRegistry` and the real
`ConfluentSchemaRegistry` client keep one contract; every test runs against both.

The local stack has no Schema Registry, so the real client talks to an HTTP server
answering the registry's `GET /schemas/ids/{id}` the way Confluent's does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from schemas.codec import ConfluentSchemaRegistry, WriterSchemaSource
from schemas.errors import RegistryUnavailableError
from schemas.history import load_history
from tests.support.registry import FakeRegistry, serve_registry

pytestmark = pytest.mark.integration

SCHEMA_ID = 17
SCHEMA_TEXT = json.dumps(load_history()["TranscriptionRequested"][-1].schema)


@dataclass
class Side:
    source: WriterSchemaSource
    go_down: Callable[[], None]
    """Make the registry unreachable."""


@pytest.fixture(params=["memory", "http"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    if request.param == "memory":
        fake = FakeRegistry({SCHEMA_ID: SCHEMA_TEXT})

        def fake_down() -> None:
            fake.down = True

        yield Side(fake, fake_down)
        fake.close()
        return
    with serve_registry({SCHEMA_ID: SCHEMA_TEXT}) as (url, server):
        real = ConfluentSchemaRegistry(url)

        def server_down() -> None:
            server.shutdown()
            server.server_close()

        try:
            yield Side(real, server_down)
        finally:
            real.close()


def test_a_registered_id_gives_the_schema_text(side: Side) -> None:
    text = side.source.schema_text(SCHEMA_ID)
    assert text is not None
    assert json.loads(text) == json.loads(SCHEMA_TEXT)


def test_an_unknown_id_is_none_not_an_error(side: Side) -> None:
    assert side.source.schema_text(SCHEMA_ID + 1) is None


def test_an_unreachable_registry_is_unavailable_not_unknown(side: Side) -> None:
    side.go_down()
    with pytest.raises(RegistryUnavailableError):
        side.source.schema_text(SCHEMA_ID + 2)
