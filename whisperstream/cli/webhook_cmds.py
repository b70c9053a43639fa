"""`whisperstream notifier` and `whisperstream webhooks list [--failed] | redeliver JOB_ID`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import create_engine
from schemas.events import utc_now
from whisperstream.cli.common import console, err_console, settings_for
from whisperstream.logs import configure_logging

app = typer.Typer(help="Webhook deliveries (the notifier's table).", no_args_is_help=True)
T = TypeVar("T")


def notifier() -> None:
    """Deliver signed webhooks for finished jobs, in the foreground; SIGTERM finishes
    the deliveries in flight."""
    from notifier.main import run_notifier  # noqa: PLC0415 - the service's own imports

    settings = settings_for()
    configure_logging(settings, "notifier")
    code = run_notifier(settings)
    if code:
        raise typer.Exit(code)


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
    failed: Annotated[
        bool, typer.Option("--failed", help="Only deliveries given up on (failed, gone).")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
) -> None:
    """Newest delivery attempts first."""
    from notifier.store import recent_deliveries  # noqa: PLC0415

    rows = _with_engine(lambda engine: recent_deliveries(engine, failed_only=failed, limit=limit))
    table = Table("job", "event", "url", "try", "status", "code", "ms", "error", "next attempt")
    for row in rows:
        table.add_row(
            str(row.job_id),
            row.event_type.removeprefix("transcription."),
            row.url,
            str(row.attempt),
            row.status,
            str(row.status_code or "-"),
            f"{row.latency_ms:.0f}" if row.latency_ms is not None else "-",
            (row.error or "")[:60],
            row.next_attempt_at.isoformat(timespec="seconds") if row.next_attempt_at else "-",
        )
    console.print(table)


@app.command("redeliver")
def redeliver_cmd(job_id: Annotated[str, typer.Argument(help="The job's id.")]) -> None:
    """Send a job's callback again now, if it was not delivered (failed or 410)."""
    from notifier.store import RedeliverRefusedError, redeliver  # noqa: PLC0415

    try:
        job = uuid.UUID(job_id)
    except ValueError:
        raise typer.BadParameter(f"not a job id: {job_id!r}") from None
    try:
        count = _with_engine(lambda engine: redeliver(engine, job, utc_now()))
    except RedeliverRefusedError as exc:
        err_console.print(str(exc), highlight=False)
        raise typer.Exit(1) from None
    noun = "delivery" if count == 1 else "deliveries"
    console.print(f"{count} {noun} of job {job} due now", highlight=False)
