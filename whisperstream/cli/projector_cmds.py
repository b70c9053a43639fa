"""`whisperstream projector` and `whisperstream replay`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from whisperstream.cli.common import console, settings_for
from whisperstream.logs import configure_logging


def projector() -> None:
    """Fold every event into Postgres, in the foreground; SIGTERM finishes the batch."""
    from db.projector.main import run_projector  # noqa: PLC0415 - the service's own imports

    settings = settings_for()
    configure_logging(settings, "projector")
    code = run_projector(settings)
    if code:
        raise typer.Exit(code)


def _parse_time(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {value!r}") from exc
    # a time without a zone is read as UTC, the zone of every event time
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def replay(
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Project every topic from the beginning into shadow tables, catch them up "
            "and swap them in; the projector may keep running.",
        ),
    ] = False,
    from_time: Annotated[
        str | None,
        typer.Option(
            "--from-time",
            help="Make the projector refold from the first record at or after this ISO 8601 "
            "time (UTC unless it names a zone).",
            show_default=False,
        ),
    ] = None,
    from_offsets: Annotated[
        str | None,
        typer.Option(
            "--from-offsets",
            help="Make the projector refold from these offsets: 'earliest', or "
            "TOPIC:PARTITION=OFFSET,... (partitions not named keep theirs).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Replay the topics into Postgres.  --rebuild runs beside the projector; the other two
    need it stopped first."""
    from db.projector import operations  # noqa: PLC0415 - the service's own imports

    chosen = [rebuild, from_time is not None, from_offsets is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("give exactly one of --rebuild, --from-time, --from-offsets")
    settings = settings_for()
    configure_logging(settings, "replay")
    if rebuild:
        report = operations.run_rebuild(settings)
        console.print(
            f"rebuilt from {report.records} records in {report.partitions} partitions: "
            f"{report.jobs} jobs, {report.errors} error rows; swapped in after "
            f"{report.passes} catch-up passes and {report.swap.tail} records under the lock "
            f"(writes paused {report.swap.writes_paused_s:.2f}s, "
            f"reads {report.swap.reads_paused_s:.3f}s)",
            highlight=False,
        )
        return
    if from_time is not None:
        offsets = operations.reset_to_time(settings, _parse_time(from_time))
    else:
        offsets = operations.reset_to_offsets(settings, from_offsets or "")
    for (topic, partition), offset in sorted(offsets.items()):
        console.print(f"{topic}:{partition} next offset {offset}", highlight=False)
    console.print("stored; the projector folds from there when it starts", highlight=False)
