"""Building the async engine (called by each service's composition root, never at import)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

_ASYNC_DRIVER = "postgresql+asyncpg"


def async_url(database_url: str | URL) -> URL:
    """``database_url`` reached through asyncpg, whatever PostgreSQL driver it names."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    return url.set(drivername=_ASYNC_DRIVER)


def create_engine(database_url: str | URL, **engine_options: Any) -> AsyncEngine:
    """An asyncpg engine for ``database_url``; dispose of it when the service stops."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    options.update(engine_options)
    return create_async_engine(async_url(database_url), **options)
