"""The root of the `whisperstream` command: `main() -> int`."""

from __future__ import annotations

import sys

import typer

from whisperstream.cli import (
    client_cmds,
    deploy_cmds,
    dlq_cmds,
    keys_cmds,
    stack_cmds,
    topics_cmds,
    webhook_cmds,
)
from whisperstream.cli.backfill_cmd import backfill_cmd
from whisperstream.cli.common import err_console, settings_for
from whisperstream.cli.projector_cmds import projector, replay
from whisperstream.cli.tail_cmd import tail_cmd
from whisperstream.cli.up_cmd import up
from whisperstream.cli.worker_cmds import models_app, worker
from whisperstream.errors import WhisperstreamError
from whisperstream.logs import configure_logging

app = typer.Typer(
    help="whisperstream: Kafka-native speech transcription.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(stack_cmds.app, name="stack")
app.add_typer(topics_cmds.app, name="topics")
app.add_typer(dlq_cmds.app, name="dlq")
app.add_typer(keys_cmds.app, name="keys")
app.add_typer(webhook_cmds.app, name="webhooks")
app.add_typer(deploy_cmds.buckets_app, name="buckets")
app.command(name="up")(up)
app.command(name="projector")(projector)
app.command(name="notifier")(webhook_cmds.notifier)
app.command(name="replay")(replay)
app.command(name="tail")(tail_cmd)
app.command(name="backfill")(backfill_cmd)
app.command(name="submit")(client_cmds.submit)
app.command(name="status")(client_cmds.status)
app.command(name="jobs")(client_cmds.jobs)
app.command(name="worker")(worker)
app.command(name="migrate")(deploy_cmds.migrate)
app.add_typer(models_app, name="models")


@app.command()
def api() -> None:
    """Run the HTTP API in the foreground."""
    from producer_api.main import run_api  # noqa: PLC0415 - the API's imports are its own

    settings = settings_for()
    configure_logging(settings, "api")
    run_api(settings)


def main() -> int:
    try:
        exit_code = app(standalone_mode=False)
    except WhisperstreamError as exc:
        err_console.print(f"error: {exc}", highlight=False, markup=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # click's usage errors carry their own message
        code = _shown_usage_error(exc)
        if code is None:
            raise
        return code
    return exit_code if isinstance(exit_code, int) else 0


def _shown_usage_error(exc: Exception) -> int | None:
    """Print a click usage error as click would and give its exit code; None if not one."""
    import click  # noqa: PLC0415

    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    # typer vendors its own click: its usage errors (a bad --option value) are these
    show = getattr(exc, "show", None)
    if isinstance(exc, typer.TyperException) and callable(show):
        show()
        return int(getattr(exc, "exit_code", 2))
    return None


if __name__ == "__main__":
    sys.exit(main())
