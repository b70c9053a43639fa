"""`whisperstream worker` and `whisperstream models list|import-ct2`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from whisperstream.cli.common import console, settings_for
from whisperstream.logs import configure_logging

if TYPE_CHECKING:
    from stream_workers.models.catalog import ModelCatalog

models_app = typer.Typer(help="Whisper models each engine can load.", no_args_is_help=True)


def worker() -> None:
    """Run one stream worker in the foreground (SIGTERM drains it)."""
    from stream_workers.app import run_worker  # noqa: PLC0415 - the worker's imports are heavy
    from stream_workers.config import load_tuning  # noqa: PLC0415

    settings = settings_for()
    configure_logging(settings, "worker")
    code = run_worker(settings, load_tuning())
    if code:
        raise typer.Exit(code)


def _catalog() -> ModelCatalog:
    from stream_workers.config import load_tuning  # noqa: PLC0415
    from stream_workers.models.catalog import ModelCatalog  # noqa: PLC0415

    settings = settings_for()
    tuning = load_tuning()
    cache = tuning.whisper_cache_dir or settings.whisperstream_state_dir / "models"
    return ModelCatalog(settings.whisper_model_dir, cache)


@models_app.command("list")
def list_models() -> None:
    """Show what each engine can load, and from where."""
    from stream_workers.engines.base import ENGINES  # noqa: PLC0415

    catalog = _catalog()
    for engine in ENGINES:
        console.print(f"[bold]{engine}[/bold]")
        sources = catalog.available(engine)
        if not sources:
            console.print("  (none installed)")
        for source in sources:
            console.print(f"  {source.model:<16} {source.origin:<40} {source.location}")


@models_app.command("import-ct2")
def import_ct2(
    directory: Annotated[Path, typer.Argument(help="A float16 CTranslate2 Whisper model folder")],
    name: Annotated[str, typer.Argument(help="The model name to register it under")],
) -> None:
    """Convert a CTranslate2 Whisper model into an openai-whisper checkpoint, exactly."""
    destination = _catalog().import_ct2(directory, name)
    console.print(f"wrote {destination}; openai-whisper can now load model {name!r}")
