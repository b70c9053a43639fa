"""Building the async engine (called by each service's composition root, never at import)."""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from whisperstream.transport_security import postgres_tls_params

_ASYNC_DRIVER = "postgresql+asyncpg"
_LIBPQ_TLS_PARAMS = ("sslmode", "sslrootcert")


def async_url(database_url: str | URL) -> URL:
    """``database_url`` reached through asyncpg, whatever PostgreSQL driver it names.

    libpq's ``sslmode`` and ``sslrootcert`` are taken out: asyncpg gets them as its
    ``ssl`` argument (:func:`asyncpg_tls`) instead of as unknown keywords."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    return url.difference_update_query(_LIBPQ_TLS_PARAMS).set(drivername=_ASYNC_DRIVER)


def asyncpg_tls(database_url: str | URL) -> ssl.SSLContext | str | None:
    """asyncpg's ``ssl`` argument for the URL's libpq TLS parameters; None: its default.

    verify-ca and verify-full get a context that trusts ``sslrootcert`` (else the system
    CAs), verify-full also checking the host name; the other modes pass through."""
    url = make_url(database_url)
    mode, root = postgres_tls_params(url.render_as_string(hide_password=False))
    if mode not in ("verify-ca", "verify-full"):
        return mode
    context = ssl.create_default_context(cafile=str(root) if root is not None else None)
    context.check_hostname = mode == "verify-full"
    return context


def create_engine(database_url: str | URL, **engine_options: Any) -> AsyncEngine:
    """An asyncpg engine for ``database_url``; dispose of it when the service stops."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    tls = asyncpg_tls(database_url)
    if tls is not None:
        options["connect_args"] = {"ssl": tls}
    options.update(engine_options)
    return create_async_engine(async_url(database_url), **options)
