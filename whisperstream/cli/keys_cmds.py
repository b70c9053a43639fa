"""`whisperstream keys create NAME [--admin]` and `keys rotate-webhook-secret NAME`."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

import typer

from db.api_keys import create_api_key
from db.engine import create_engine
from db.webhook_secrets import rotate_webhook_secret, webhook_secret_of
from schemas.events import utc_now
from whisperstream.cli.common import console, err_console, settings_for

app = typer.Typer(help="API keys of the HTTP API.", no_args_is_help=True)


async def _create(database_url: str, name: str, is_admin: bool) -> tuple[str, str, str]:
    engine = create_engine(database_url)
    try:
        plain, record = await create_api_key(engine, name=name, at=utc_now(), is_admin=is_admin)
        secret = await webhook_secret_of(engine, record.id)
    finally:
        await engine.dispose()
    return plain, str(record.id), secret or ""


@app.command("create")
def create_cmd(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    admin: Annotated[bool, typer.Option("--admin", help="May use the /admin routes.")] = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    if not name.strip():
        raise typer.BadParameter("NAME must not be empty")
    settings = settings_for()
    plain, key_id, secret = asyncio.run(
        _create(settings.effective_database_url, name.strip(), admin)
    )
    err_console.print(
        f"created {'admin ' if admin else ''}key {key_id} for {name.strip()!r}; "
        "it is shown only now:",
        highlight=False,
    )
    console.print(plain, highlight=False, markup=False)
    if secret:
        err_console.print(
            "its webhook signing secret (verify callbacks with it; shown only now):",
            highlight=False,
        )
        console.print(secret, highlight=False, markup=False)


async def _rotate(database_url: str, name: str, grace_s: float) -> list[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        rotated = await rotate_webhook_secret(
            engine, name, at=utc_now(), grace=timedelta(seconds=grace_s)
        )
    finally:
        await engine.dispose()
    return [(str(key_id), secret) for key_id, secret in rotated]


@app.command("rotate-webhook-secret")
def rotate_cmd(
    name: Annotated[str, typer.Argument(help="The key's name.")],
) -> None:
    """Give the key a new webhook signing secret and print it once; the old one also
    signs for WEBHOOK_SECRET_GRACE_S (both signatures are sent meanwhile)."""
    settings = settings_for()
    rotated = asyncio.run(
        _rotate(settings.effective_database_url, name.strip(), settings.webhook_secret_grace_s)
    )
    if not rotated:
        err_console.print(f"no active key is called {name.strip()!r}", highlight=False)
        raise typer.Exit(1)
    grace_h = settings.webhook_secret_grace_s / 3600
    for key_id, secret in rotated:
        err_console.print(
            f"key {key_id}: new webhook secret (the old one also signs for {grace_h:g} h), "
            "shown only now:",
            highlight=False,
        )
        console.print(secret, highlight=False, markup=False)
