"""One whole system (stack, API, worker, projector, notifier as separate processes) per
e2e session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.system import System, running_system


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    # callbacks to receivers on loopback (tests/e2e/test_webhooks.py)
    with running_system(WEBHOOK_ALLOW_PRIVATE_NETWORKS="true") as running:
        yield running
