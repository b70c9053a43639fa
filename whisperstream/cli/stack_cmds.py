"""`whisperstream stack up | down | status`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from whisperstream.cli.common import StateDirOption, console, settings_for
from whisperstream.stack.manager import LocalStack

app = typer.Typer(
    help="The embedded local stack: Tansu, SeaweedFS and Postgres.", no_args_is_help=True
)

VolatileOption = Annotated[
    bool,
    typer.Option("--volatile", help="Keep broker data in memory (fast, for tests)."),
]


def _stack(state_dir: StateDirOption) -> LocalStack:
    return LocalStack(settings_for(state_dir), report=lambda line: console.print(f"  {line}"))


@app.command()
def up(volatile: VolatileOption = False, state_dir: StateDirOption = None) -> None:
    """Start every service, wait until each does real work, create topics and buckets."""
    stack = _stack(state_dir)
    result = stack.up(volatile=volatile)
    if result.already_running:
        console.print(f"stack already up in {stack.state_dir}; nothing changed")
    else:
        console.print(f"stack up in {result.seconds:.1f}s ({', '.join(result.started)} started)")
    _print_urls(stack)


@app.command()
def down(state_dir: StateDirOption = None) -> None:
    """Stop every process the stack started and wait for each to exit."""
    stopped = _stack(state_dir).down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
def status(state_dir: StateDirOption = None) -> None:
    """Check each service with real work and print the URLs the services use."""
    stack = _stack(state_dir)
    report = stack.status()
    table = Table("service", "pid", "state", "check", "latency ms")
    for service in report.services:
        table.add_row(
            service.name,
            str(service.pid or "-"),
            "running" if service.running else "stopped",
            service.check.detail[:80],
            f"{service.check.latency_ms:.1f}",
        )
    console.print(table)
    console.print(f"mode: {'volatile' if report.volatile else 'durable'}")
    _print_urls(stack)
    if not report.healthy:
        raise typer.Exit(1)


def _print_urls(stack: LocalStack) -> None:
    for name, value in stack.urls().items():
        console.print(f"{name}={value}", soft_wrap=True, highlight=False)
