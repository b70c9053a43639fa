"""`whisperstream projector` and `whisperstream replay`."""

from __future__ import annotations

import typer

from whisperstream.cli.common import settings_for
from whisperstream.logs import configure_logging


def projector() -> None:
    """Fold every event into Postgres, in the foreground; SIGTERM finishes the batch."""
    from db.projector.main import run_projector  # noqa: PLC0415 - the service's own imports

    settings = settings_for()
    configure_logging(settings.log_level)
    code = run_projector(settings)
    if code:
        raise typer.Exit(code)
