"""Who is calling: API keys from ``Authorization: Bearer`` or ``X-API-Key``.

Keys are stored hashed (db.api_keys); ``WHISPERSTREAM_ADMIN_KEY``, when set, is accepted
as an admin key.  Lookups are cached briefly, so a revoked key stops working within
``cache_ttl_s``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.api_keys import find_api_key, hash_api_key

ADMIN_ENV_OWNER = "admin-env"


@dataclass(frozen=True, slots=True)
class Principal:
    owner: str
    """What job rows record as their owner: the key's id."""
    name: str
    is_admin: bool


class AuthUnavailableError(Exception):
    """The key store could not be read (Postgres down)."""


KeyLookup = Callable[[str], Awaitable[Principal | None]]


def database_lookup(engine: AsyncEngine) -> KeyLookup:
    async def lookup(key_hash: str) -> Principal | None:
        try:
            record = await find_api_key(engine, key_hash)
        except (SQLAlchemyError, OSError) as exc:
            raise AuthUnavailableError(str(exc)) from exc
        if record is None or not record.active:
            return None
        return Principal(owner=str(record.id), name=record.name, is_admin=record.is_admin)

    return lookup


class Authenticator:
    def __init__(
        self,
        lookup: KeyLookup,
        admin_key: str | None,
        cache_ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._admin_hash = hash_api_key(admin_key) if admin_key else None
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, key: str) -> Principal | None:
        key_hash = hash_api_key(key)
        if self._admin_hash is not None and hmac.compare_digest(key_hash, self._admin_hash):
            return Principal(owner=ADMIN_ENV_OWNER, name="WHISPERSTREAM_ADMIN_KEY", is_admin=True)
        now = self._clock()
        cached = self._cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[1]
        # The database finds the row by an index on the hash (an equality match on a
        # SHA-256 of a high-entropy key leaks nothing useful through timing).
        principal = await self._lookup(key_hash)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key_hash] = (now + self._ttl, principal)
        return principal


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip() or None
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None
