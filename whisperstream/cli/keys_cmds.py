"""`whisperstream keys create NAME [--admin]`: API keys for the HTTP API."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from db.api_keys import create_api_key
from db.engine import create_engine
from schemas.events import utc_now
from whisperstream.cli.common import console, err_console, settings_for

app = typer.Typer(help="API keys of the HTTP API.", no_args_is_help=True)


async def _create(database_url: str, name: str, is_admin: bool) -> tuple[str, str]:
    engine = create_engine(database_url)
    try:
        plain, record = await create_api_key(engine, name=name, at=utc_now(), is_admin=is_admin)
    finally:
        await engine.dispose()
    return plain, str(record.id)


@app.command("create")
def create_cmd(
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    admin: Annotated[bool, typer.Option("--admin", help="May use the /admin routes.")] = False,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    if not name.strip():
        raise typer.BadParameter("NAME must not be empty")
    settings = settings_for()
    plain, key_id = asyncio.run(_create(settings.effective_database_url, name.strip(), admin))
    err_console.print(
        f"created {'admin ' if admin else ''}key {key_id} for {name.strip()!r}; "
        "it is shown only now:",
        highlight=False,
    )
    console.print(plain, highlight=False, markup=False)
