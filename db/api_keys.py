"""API keys: only the SHA-256 of a key is stored, with a short prefix for display."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import api_keys_table
from db.webhook_secrets import new_webhook_secret

KEY_PREFIX = "wsk_"
DISPLAY_PREFIX_LENGTH = len(KEY_PREFIX) + 6


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: uuid.UUID
    name: str
    key_prefix: str
    is_admin: bool
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_api_key(
    engine: AsyncEngine, *, name: str, at: datetime, is_admin: bool = False, key: str | None = None
) -> tuple[str, ApiKeyRecord]:
    """Store a new key (a fresh random one unless ``key`` is given); returns the key in
    clear, which is never stored and cannot be read back, and its record."""
    plain = key if key is not None else generate_api_key()
    record = ApiKeyRecord(
        id=uuid.uuid4(),
        name=name,
        key_prefix=plain[:DISPLAY_PREFIX_LENGTH],
        is_admin=is_admin,
        created_at=at,
        revoked_at=None,
    )
    async with engine.begin() as connection:
        await connection.execute(
            insert(api_keys_table).values(
                id=record.id,
                name=record.name,
                key_hash=hash_api_key(plain),
                key_prefix=record.key_prefix,
                is_admin=record.is_admin,
                created_at=record.created_at,
                webhook_secret=new_webhook_secret(),
            )
        )
    return plain, record


async def find_api_key(engine: AsyncEngine, key_hash: str) -> ApiKeyRecord | None:
    """The key with this hash, revoked or not (check ``active``)."""
    table = api_keys_table
    stmt = select(
        table.c.id,
        table.c.name,
        table.c.key_prefix,
        table.c.is_admin,
        table.c.created_at,
        table.c.revoked_at,
    ).where(table.c.key_hash == key_hash)
    async with engine.connect() as connection:
        found = (await connection.execute(stmt)).mappings().first()
    return ApiKeyRecord(**found) if found is not None else None


async def revoke_api_key(engine: AsyncEngine, key_id: uuid.UUID, *, at: datetime) -> bool:
    """Revoke a key; False if there is no such key or it was already revoked."""
    table = api_keys_table
    async with engine.begin() as connection:
        result = await connection.execute(
            update(table)
            .where(table.c.id == key_id, table.c.revoked_at.is_(None))
            .values(revoked_at=at)
            .returning(table.c.id)
        )
        return result.first() is not None
