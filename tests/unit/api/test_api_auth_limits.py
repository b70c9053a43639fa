from __future__ import annotations

from producer_api.auth import ADMIN_ENV_OWNER, Authenticator, Principal, key_from_headers
from producer_api.ratelimit import RateLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_bursts_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire("a")
    assert wait == 0.5
    assert retry_after_header(wait) == "1"
    assert limiter.acquire("b") == 0.0  # per key
    clock.now = 0.5
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") > 0


def test_key_headers() -> None:
    assert key_from_headers("Bearer abc", None) == "abc"
    assert key_from_headers("bearer  abc ", None) == "abc"
    assert key_from_headers("Basic abc", None) is None
    assert key_from_headers("Bearer ", None) is None
    assert key_from_headers("Bearer abc", "xyz") == "xyz"
    assert key_from_headers(None, None) is None


async def test_authenticator_admin_env_key_and_cache() -> None:
    calls: list[str] = []
    user = Principal(owner="u1", name="user", is_admin=False)

    async def lookup(key_hash: str) -> Principal | None:
        calls.append(key_hash)
        return user if len(calls) == 1 else None

    clock = Clock()
    auth = Authenticator(lookup, admin_key="root-key", cache_ttl_s=10, clock=clock)
    admin = await auth.authenticate("root-key")
    assert admin is not None
    assert (admin.owner, admin.is_admin) == (ADMIN_ENV_OWNER, True)
    assert calls == []  # the env key never touches the database

    assert await auth.authenticate("user-key") == user
    assert await auth.authenticate("user-key") == user
    assert len(calls) == 1
    clock.now = 11  # cache expired: the (now revoked) key is looked up again
    assert await auth.authenticate("user-key") is None
    assert len(calls) == 2
