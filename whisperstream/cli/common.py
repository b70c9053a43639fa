"""What every command shares: settings with CLI overrides, and output helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from whisperstream.settings import Settings, load_settings

console = Console()
err_console = Console(stderr=True)

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="State directory of the local stack (default: WHISPERSTREAM_STATE_DIR or the "
        "user data dir).",
        show_default=False,
    ),
]


def settings_for(state_dir: Path | None = None) -> Settings:
    settings = load_settings()
    if state_dir is not None:
        settings = settings.model_copy(update={"whisperstream_state_dir": state_dir})
    return settings
