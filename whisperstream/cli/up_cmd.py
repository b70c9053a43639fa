"""`whisperstream up`: the local stack plus every service, in the foreground."""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType

from whisperstream.cli.common import StateDirOption, console, settings_for
from whisperstream.cli.stack_cmds import VolatileOption
from whisperstream.stack.manager import LocalStack

# (CLI command, module that must exist for the service to be started)
SERVICE_COMMANDS = (
    ("api", "producer_api.app"),
    ("worker", "stream_workers.app"),
    ("projector", "db.projector"),
)


class _StopRequestedError(Exception):
    """Raised from the signal handler to leave the supervision loop."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _StopRequestedError


def available_services() -> list[str]:
    return [name for name, module in SERVICE_COMMANDS if importlib.util.find_spec(module)]


def _supervise(children: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait until a service exits on its own (an error: 1) or a stop is requested."""
    while True:
        for name, child in children.items():
            if child.poll() is not None:
                console.print(f"{name} exited with {child.returncode}; stopping")
                return 1
        time.sleep(0.5)


def up(volatile: VolatileOption = False, state_dir: StateDirOption = None) -> None:
    """Start the stack, the API, a worker and the projector; Ctrl-C stops everything."""
    settings = settings_for(state_dir)
    stack = LocalStack(settings, report=lambda line: console.print(f"  {line}"))
    result = stack.up(volatile=volatile)
    admin_key = settings.whisperstream_admin_key
    key = admin_key.get_secret_value() if admin_key else secrets.token_urlsafe(24)
    env = {
        **os.environ,
        **stack.urls(),
        "WHISPERSTREAM_ADMIN_KEY": key,
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    signal.signal(signal.SIGTERM, _raise_stop)
    exit_code = 0
    try:
        for name in available_services():
            argv = [sys.executable, "-m", "whisperstream.cli.main", name]
            children[name] = subprocess.Popen(argv, env=env)
        console.print(f"API: http://{settings.api_host}:{settings.api_port}", highlight=False)
        console.print(f"admin API key: {key}", highlight=False)
        console.print("running; Ctrl-C or SIGTERM stops everything")
        exit_code = _supervise(children)
    except (_StopRequestedError, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if not result.already_running:
            stack.down()
        console.print("stopped")
    if exit_code:
        raise SystemExit(exit_code)
