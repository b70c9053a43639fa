"""`whisperstream tail TOPIC`: decoded events as JSON lines."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ops.kafka.tail import TOPIC_ALIASES, UnknownEndOffsetError, resolve_topic, tail
from whisperstream.cli.common import err_console, settings_for


def tail_cmd(
    topic: Annotated[
        str, typer.Argument(help=f"A topic name, or one of: {', '.join(TOPIC_ALIASES)}.")
    ],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest record.")
    ] = False,
    max_records: Annotated[
        int | None, typer.Option("--max", min=1, help="Stop after this many records.")
    ] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option("--idle-timeout", help="Stop after this many seconds without a record."),
    ] = None,
) -> None:
    """Print each record as a JSON line; undecodable ones are marked and kept in base64."""
    settings = settings_for()
    name = resolve_topic(settings, topic)
    records = tail(
        settings,
        name,
        from_beginning=from_beginning,
        max_records=max_records,
        idle_timeout=idle_timeout,
    )
    try:
        for document in records:
            typer.echo(json.dumps(document, ensure_ascii=False))
    except UnknownEndOffsetError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
