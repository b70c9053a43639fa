"""`whisperstream backfill MANIFEST`: jobs straight to Kafka, idempotent on re-runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ops.kafka.backfill import PlannedJob, backfill, plan_job
from ops.kafka.manifest import read_manifest
from whisperstream.cli.common import console, settings_for


def backfill_cmd(
    manifest: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="CSV (with header) or JSONL manifest."),
    ],
    rate: Annotated[
        float | None, typer.Option("--rate", min=0.01, help="At most this many jobs a second.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be published; publish nothing.")
    ] = False,
) -> None:
    """Produce one TranscriptionRequested per manifest row, as an upstream system would."""
    settings = settings_for()
    rows = read_manifest(manifest)
    jobs = [plan_job(line, row, manifest.parent) for line, row in rows]
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("backfill", total=len(jobs))

        def on_row(job: PlannedJob, outcome: str) -> None:
            progress.console.print(f"line {job.line}: {job.job_id} {outcome}", highlight=False)
            progress.advance(task)

        report = asyncio.run(backfill(settings, jobs, dry_run=dry_run, rate=rate, on_row=on_row))
    if dry_run:
        console.print(
            f"dry run: {len(report.would_publish)} would be published, "
            f"{len(report.skipped_existing)} already exist"
        )
    else:
        console.print(
            f"published {len(report.published)}, "
            f"skipped {len(report.skipped_existing)} that already exist"
        )
