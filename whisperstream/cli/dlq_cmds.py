"""`whisperstream dlq list | show ID | redrive`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from db.error_queries import get_error, list_errors
from ops.kafka.dlq import redrive, unresolved_errors
from schemas.plain import to_plain
from whisperstream.cli.common import console, settings_for

app = typer.Typer(help="Dead letters (the error_logs mirror of the DLQ).", no_args_is_help=True)
T = TypeVar("T")


def _with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings_for().effective_database_url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@app.command("list")
def list_cmd(
    show_all: Annotated[bool, typer.Option("--all", help="Include resolved rows.")] = False,
    error_type: Annotated[str | None, typer.Option("--error-type")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
) -> None:
    """Newest dead letters first."""
    page = _with_engine(
        lambda engine: list_errors(
            engine, resolved=None if show_all else False, error_type=error_type, limit=limit
        )
    )
    table = Table("id", "job", "type", "message", "retries", "resolved", "created")
    for entry in page.items:
        row = entry.row
        table.add_row(
            str(entry.id),
            str(row.job_id or "-"),
            row.error_type,
            row.error_message[:60],
            str(row.retry_count),
            "yes" if entry.resolved else "no",
            row.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@app.command("show")
def show_cmd(error_id: Annotated[int, typer.Argument(help="The error_logs id.")]) -> None:
    """One dead letter in full, as JSON."""
    entry = _with_engine(lambda engine: get_error(engine, error_id))
    if entry is None:
        console.print(f"no dead letter with id {error_id}")
        raise typer.Exit(1)
    document = {"id": entry.id, "resolved": entry.resolved, **to_plain(entry.row)}
    document["resolved_at"] = to_plain(entry.resolved_at)
    typer.echo(json.dumps(document, indent=2, default=str))


@app.command("redrive")
def redrive_cmd(
    error_type: Annotated[str | None, typer.Option("--error-type")] = None,
    since: Annotated[
        datetime | None, typer.Option("--since", help="Only dead letters created after this.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Publish the original requests again as new jobs and mark the rows resolved."""
    settings = settings_for()
    if since is not None and since.tzinfo is None:
        since = since.astimezone()

    async def work(engine: AsyncEngine) -> list[tuple[int, str | None, str | None, str]]:
        entries = await unresolved_errors(engine, error_type=error_type, since=since)
        outcomes = await redrive(settings, engine, entries, dry_run=dry_run)
        return [(o.error_id, o.failed_job_id, o.new_job_id, o.outcome) for o in outcomes]

    rows = _with_engine(work)
    table = Table("error id", "failed job", "new job", "outcome")
    for error_id, failed, new, outcome in rows:
        table.add_row(str(error_id), failed or "-", new or "-", outcome)
    console.print(table)
    console.print(f"{len(rows)} dead letter(s){' (dry run)' if dry_run else ''}")
