"""`keys rotate-webhook-secret`, `webhooks list [--failed]` and `webhooks redeliver`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from db.api_keys import create_api_key
from db.engine import create_engine
from db.webhook_secrets import signing_secrets, webhook_secret_of
from notifier.outcomes import Outcome
from notifier.store import NewDelivery, Recorded, claim_due, job_deliveries, record, schedule
from schemas.events import utc_now
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


async def _cli(
    running_stack: RunningStack, database_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "whisperstream.cli.main", *args],
        env={**os.environ, **running_stack.env, "DATABASE_URL": database_url, "COLUMNS": "250"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_rotation_prints_a_new_secret_and_keeps_the_old_one_in_grace(
    running_stack: RunningStack, fresh_database_url: str
) -> None:
    engine = create_engine(fresh_database_url)
    try:
        _, key = await create_api_key(engine, name="hooks", at=utc_now())
        old = await webhook_secret_of(engine, key.id)
        done = await _cli(
            running_stack, fresh_database_url, "keys", "rotate-webhook-secret", "hooks"
        )
        assert done.returncode == 0, done.stderr
        new = done.stdout.strip()
        assert new.startswith("whsec_")
        assert new != old
        assert "only now" in done.stderr
        secrets = await signing_secrets(engine, [str(key.id)], at=utc_now())
        assert secrets[str(key.id)].all == (new, old)
        # after the grace period (24 h by default) only the new one signs
        later = await signing_secrets(engine, [str(key.id)], at=utc_now() + timedelta(days=2))
        assert later[str(key.id)].all == (new,)
        missing = await _cli(
            running_stack, fresh_database_url, "keys", "rotate-webhook-secret", "nobody"
        )
        assert missing.returncode == 1
        assert "no active key" in missing.stderr
    finally:
        await engine.dispose()


async def test_webhooks_list_failed_and_redeliver(
    running_stack: RunningStack, fresh_database_url: str
) -> None:
    engine = create_engine(fresh_database_url)
    try:
        ok_job, failed_job = uuid.uuid4(), uuid.uuid4()
        async with engine.begin() as connection:
            await schedule(
                connection,
                [
                    NewDelivery(
                        job,
                        str(uuid.uuid4()),
                        "transcription.completed",
                        url,
                        None,
                        "{}",
                        utc_now(),
                    )
                    for job, url in (
                        (ok_job, "http://a.example/ok"),
                        (failed_job, "http://b.example/no"),
                    )
                ],
                utc_now(),
            )
        claimed = await claim_due(engine, 10, timedelta(seconds=30), {}, 8)
        outcomes = {ok_job: (Outcome.SUCCEEDED, 200), failed_job: (Outcome.FAILED, 400)}
        await record(
            engine,
            [
                Recorded(
                    d, outcomes[d.job_id][0], outcomes[d.job_id][1], 3.0, None, utc_now(), None
                )
                for d in claimed
            ],
        )
        listed = await _cli(running_stack, fresh_database_url, "webhooks", "list")
        assert listed.returncode == 0, listed.stderr
        assert str(ok_job) in listed.stdout
        assert str(failed_job) in listed.stdout
        failed = await _cli(running_stack, fresh_database_url, "webhooks", "list", "--failed")
        assert str(failed_job) in failed.stdout
        assert str(ok_job) not in failed.stdout

        again = await _cli(
            running_stack, fresh_database_url, "webhooks", "redeliver", str(failed_job)
        )
        assert again.returncode == 0, again.stderr
        rows = await job_deliveries(engine, failed_job)
        assert [(r.attempt, r.status) for r in rows] == [(1, "failed"), (2, "pending")]
        # never twice: a delivered callback is not sent again
        refused = await _cli(
            running_stack, fresh_database_url, "webhooks", "redeliver", str(ok_job)
        )
        assert refused.returncode == 1
        assert "delivered already" in refused.stderr
    finally:
        await engine.dispose()
