"""Webhook signing secrets of API keys: drawn, rotated with a grace period, looked up.

A secret is ``whsec_`` and the base64 of 32 random bytes, the form the Standard Webhooks
libraries take.  It is stored in clear (signing needs it, unlike the key itself).
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import api_keys_table

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not one


def new_webhook_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


@dataclass(frozen=True, slots=True)
class SigningSecrets:
    """The secrets that sign a key's callbacks now: the current one, then (during a
    rotation's grace period) the previous one."""

    current: str
    previous: str | None = None

    @property
    def all(self) -> tuple[str, ...]:
        return (self.current,) if self.previous is None else (self.current, self.previous)


async def webhook_secret_of(engine: AsyncEngine, key_id: uuid.UUID) -> str | None:
    """The current webhook secret of the key ``key_id``."""
    table = api_keys_table
    stmt = select(table.c.webhook_secret).where(table.c.id == key_id)
    async with engine.connect() as connection:
        secret: str | None = await connection.scalar(stmt)
    return secret


async def rotate_webhook_secret(
    engine: AsyncEngine, name: str, *, at: datetime, grace: timedelta
) -> list[tuple[uuid.UUID, str]]:
    """Give every active key called ``name`` a new secret; the old one keeps signing
    until ``at + grace``.  Returns (key id, new secret) per key rotated."""
    table = api_keys_table
    rotated = []
    async with engine.begin() as connection:
        keys = (
            await connection.execute(
                select(table.c.id)
                .where(table.c.name == name, table.c.revoked_at.is_(None))
                .with_for_update()
            )
        ).all()
        for (key_id,) in keys:
            secret = new_webhook_secret()
            await connection.execute(
                update(table)
                .where(table.c.id == key_id)
                .values(
                    previous_webhook_secret=table.c.webhook_secret,
                    previous_webhook_secret_until=at + grace,
                    webhook_secret=secret,
                )
            )
            rotated.append((key_id, secret))
    return rotated


async def signing_secrets(
    engine: AsyncEngine, owners: Iterable[str], *, at: datetime
) -> dict[str, SigningSecrets]:
    """The secrets of each owner that is the id of an API key with a secret (revoked
    keys included: a job submitted before the revocation is still called back)."""
    ids = {}
    for owner in owners:
        try:
            ids[uuid.UUID(owner)] = owner
        except ValueError:
            continue  # not a key id: the admin key or an upstream producer's owner
    if not ids:
        return {}
    table = api_keys_table
    stmt = select(
        table.c.id,
        table.c.webhook_secret,
        table.c.previous_webhook_secret,
        table.c.previous_webhook_secret_until,
    ).where(table.c.id.in_(list(ids)), table.c.webhook_secret.is_not(None))
    async with engine.connect() as connection:
        rows = (await connection.execute(stmt)).all()
    found = {}
    for key_id, current, previous, until in rows:
        in_grace = previous is not None and until is not None and until > at
        found[ids[key_id]] = SigningSecrets(current, previous if in_grace else None)
    return found
