from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from db.api_keys import find_api_key, hash_api_key
from db.engine import create_engine
from db.webhook_secrets import webhook_secret_of
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


async def test_keys_create_prints_a_working_key_once(running_stack: RunningStack) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "whisperstream.cli.main", "keys", "create", "ci bot", "--admin"],
        env={**os.environ, **running_stack.env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    key, secret = done.stdout.split()
    assert key.startswith("wsk_")
    assert secret.startswith("whsec_")
    assert "only now" in done.stderr
    assert "webhook signing secret" in done.stderr
    engine = create_engine(running_stack.settings.effective_database_url)
    try:
        record = await find_api_key(engine, hash_api_key(key))
        assert record is not None
        assert await webhook_secret_of(engine, record.id) == secret
    finally:
        await engine.dispose()
    assert record is not None
    assert (record.name, record.is_admin, record.active) == ("ci bot", True, True)
