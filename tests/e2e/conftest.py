"""One whole system (stack, API, worker, projector as separate processes) per e2e session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.system import System, running_system


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    with running_system() as running:
        yield running
