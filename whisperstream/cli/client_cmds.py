"""Client commands over the HTTP API: `submit`, `status`, `jobs`."""

from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn
from rich.table import Table

from schemas.events import TERMINAL_STATUSES
from whisperstream.cli.common import console, settings_for
from whisperstream.client.api import FORMATS, ApiClient, ApiError, EventsUnavailableError
from whisperstream.settings import Settings

ApiUrlOption = Annotated[
    str | None, typer.Option("--api-url", help="Default: WHISPERSTREAM_API_URL or API_PORT.")
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", help="Default: WHISPERSTREAM_API_KEY.")
]


def _client(settings: Settings, api_url: str | None, api_key: str | None) -> ApiClient:
    key = api_key or (
        settings.whisperstream_api_key.get_secret_value()
        if settings.whisperstream_api_key
        else None
    )
    return ApiClient(api_url or settings.api_base_url, key)


def submit(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False)],
    priority: Annotated[str | None, typer.Option("--priority")] = None,
    model: Annotated[str | None, typer.Option("--model")] = None,
    engine: Annotated[str | None, typer.Option("--engine")] = None,
    language: Annotated[str | None, typer.Option("--language")] = None,
    task: Annotated[str | None, typer.Option("--task")] = None,
    beam_size: Annotated[
        int | None,
        typer.Option("--beam-size", min=1, max=10, help="Beam width; default 5 on both engines."),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option("--temperature", min=0.0, max=1.0, help="Decoding temperature; default 0."),
    ] = None,
    vad_filter: Annotated[
        bool | None,
        typer.Option("--vad-filter/--no-vad-filter", help="Transcribe only the speech VAD finds."),
    ] = None,
    callback_url: Annotated[
        str | None,
        typer.Option("--callback-url", help="POST a signed webhook here when each job ends."),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for each job to end.")] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="srt, vtt, txt, json or tsv (with --wait).")
    ] = "txt",
    output: Annotated[
        Path | None, typer.Option("--output", file_okay=False, help="Default: beside each file.")
    ] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload files with a progress bar each; with --wait, write each transcript out."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"one of {', '.join(FORMATS)}", param_hint="--format")
    options = {
        name: value
        for name, value in {
            "priority": priority,
            "model": model,
            "engine": engine,
            "language": language,
            "task": task,
            "beam_size": None if beam_size is None else str(beam_size),
            "temperature": None if temperature is None else str(temperature),
            "vad_filter": None if vad_filter is None else str(vad_filter).lower(),
            "callback_url": callback_url,
        }.items()
        if value is not None
    }
    settings = settings_for()
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
    outcomes = asyncio.run(
        _submit_all(
            _client(settings, api_url, api_key),
            files,
            options=options,
            wait=wait,
            fmt=fmt,
            output=output,
        )
    )
    failed = [name for name, status in outcomes if not status.startswith(("completed", "pending"))]
    for name, status in outcomes:
        console.print(f"{name}: {status}", highlight=False)
    if failed:
        raise typer.Exit(1)


async def _submit_all(
    client: ApiClient,
    files: list[Path],
    *,
    options: dict[str, str],
    wait: bool,
    fmt: str,
    output: Path | None,
) -> list[tuple[str, str]]:
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    async with client:
        with Progress(*columns, console=console) as progress:
            bars = {
                path: progress.add_task(f"{path.name} upload", total=path.stat().st_size)
                for path in files
            }
            jobs: dict[Path, str] = {}
            outcomes: list[tuple[str, str]] = []
            for path in files:
                bar = bars[path]
                try:
                    accepted = await client.submit(
                        path, options, functools.partial(progress.advance, bar)
                    )
                except ApiError as exc:
                    outcomes.append((path.name, f"rejected ({exc})"))
                    continue
                jobs[path] = str(accepted["job_id"])
                progress.update(bar, description=f"{path.name} {accepted['status']}")
            if not wait:
                return outcomes + [(p.name, "pending") for p in jobs]
            finals = await asyncio.gather(
                *(_await_job(client, progress, bars[p], job_id) for p, job_id in jobs.items())
            )
        for (path, job_id), final in zip(jobs.items(), finals, strict=True):
            status = str(final["status"])
            if status == "completed":
                target = (output or path.parent) / f"{path.stem}.{fmt}"
                target.write_bytes(await client.result(job_id, fmt))
                outcomes.append((path.name, f"completed -> {target}"))
            else:
                error = final.get("error") or {}
                outcomes.append((path.name, f"{status} {error.get('message') or ''}".strip()))
    return outcomes


async def _await_job(
    client: ApiClient, progress: Progress, bar: TaskID, job_id: str
) -> dict[str, Any]:
    """Follow the job's event stream; poll instead where the server has none."""
    name = progress.tasks[bar].description.split(" ")[0]
    progress.update(bar, total=100, completed=0)

    def show(job: dict[str, Any]) -> None:
        progress.update(
            bar,
            completed=float(job.get("progress") or 0) * 100,
            description=f"{name} {job['status']}",
        )

    try:
        async for event in client.follow(job_id):
            show(event)
    except EventsUnavailableError:
        pass
    # Polling, or after the stream's terminal event: the job's row may lag the stream
    # by a moment, and its result can be fetched once the row says it ended.
    delay = 0.1
    while True:
        job = await client.job(job_id)
        show(job)
        if str(job["status"]) in TERMINAL_STATUSES:
            return job
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


def status(
    job_id: Annotated[str, typer.Argument()],
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Print one job as the API returns it."""

    async def fetch() -> dict[str, Any]:
        async with _client(settings_for(), api_url, api_key) as client:
            return await client.job(job_id)

    typer.echo(json.dumps(asyncio.run(fetch()), indent=2))


def jobs(
    job_status: Annotated[str | None, typer.Option("--status")] = None,
    priority: Annotated[str | None, typer.Option("--priority")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100)] = 20,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List your jobs, newest first."""
    params = {"limit": str(limit)}
    if job_status:
        params["status"] = job_status
    if priority:
        params["priority"] = priority

    async def fetch() -> dict[str, Any]:
        async with _client(settings_for(), api_url, api_key) as client:
            return await client.jobs(params)

    page = asyncio.run(fetch())
    table = Table("job", "status", "progress", "priority", "model", "file", "created")
    for job in page.get("items", []):
        table.add_row(
            str(job["job_id"]),
            str(job["status"]),
            f"{float(job.get('progress') or 0):.0%}",
            str(job.get("priority") or "-"),
            str(job.get("model") or "-"),
            str(job.get("original_filename") or "-"),
            str(job.get("created_at") or "-"),
        )
    console.print(table)
