"""`whisperstream up`: the local stack plus every service, in the foreground, supervised.

The terminal shows one line per service start, ready and restart and per job; each
service's full log goes to STATE_DIR/logs/<service>.log. A service that exits is
restarted (see whisperstream/supervisor/).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import secrets
import signal
import sys
from types import FrameType

from pydantic import SecretStr

from db.webhook_secrets import new_webhook_secret
from whisperstream.cli.common import StateDirOption, settings_for
from whisperstream.cli.stack_cmds import VolatileOption
from whisperstream.logs import activity_logger, configure_logging
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.processes import LaunchSpec
from whisperstream.supervisor.runner import ServiceUnit, StackUnit, Supervisor, Unit
from whisperstream.supervisor.state import STATE_FILE, SupervisorState

# (CLI command, module that must exist for the service to be started)
SERVICE_COMMANDS = (
    ("api", "producer_api.app"),
    ("worker", "stream_workers.app"),
    ("projector", "db.projector"),
    ("notifier", "notifier.service"),
)


class _StopRequestedError(Exception):
    """Raised from the signal handler to leave the supervision loop."""


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _StopRequestedError


def available_services() -> list[str]:
    return [name for name, module in SERVICE_COMMANDS if importlib.util.find_spec(module)]


def _terminal_fd() -> int | None:
    """A copy of our stdout for the services' activity lines, when stdout is a file."""
    try:
        return os.dup(sys.stdout.fileno())
    except (OSError, ValueError):
        return None


def up(volatile: VolatileOption = False, state_dir: StateDirOption = None) -> None:
    """Start the stack, the API, a worker, the projector and the notifier; Ctrl-C stops
    everything."""
    settings = settings_for(state_dir)
    logs = settings.whisperstream_state_dir.expanduser().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / "up.log").open("a", buffering=1) as full_log:
        configure_logging(settings, "up", full=full_log, activity=sys.stdout)
        code = _run(LocalStack(settings, report=activity_logger().info), volatile)
    if code:
        raise SystemExit(code)


def _webhook_secret(configured: SecretStr | None, log: logging.Logger) -> str:
    """WEBHOOK_SECRET, or a new one (printed): it signs the callbacks of the admin key's
    jobs, whose owner has no secret of its own."""
    if configured is not None:
        return configured.get_secret_value()
    secret = new_webhook_secret()
    log.info("webhook secret of the admin key's callbacks: %s", secret)
    return secret


def _run(stack: LocalStack, volatile: bool) -> int:
    settings = stack.settings
    log = activity_logger()
    result = stack.up(volatile=volatile)
    if result.already_running:
        log.info("the stack was already running: up supervises only its own services")
    admin_key = settings.whisperstream_admin_key
    key = admin_key.get_secret_value() if admin_key else secrets.token_urlsafe(24)
    webhook_secret = _webhook_secret(settings.webhook_secret, log)
    state = SupervisorState(stack.state_dir / STATE_FILE)
    terminal_fd = _terminal_fd()
    env = {
        **stack.urls(),
        "WHISPERSTREAM_ADMIN_KEY": key,
        "WEBHOOK_SECRET": webhook_secret,
        "WHISPERSTREAM_SUPERVISOR_STATE": str(state.path),
    }
    if terminal_fd is not None:
        env["WHISPERSTREAM_ACTIVITY_FD"] = str(terminal_fd)
    # a broker that kept its data in memory comes back empty: its clients start afresh
    volatile_broker = volatile and "broker" in stack.launched
    dependents = {"broker": available_services()} if volatile_broker else {}
    supervisor = Supervisor(state, log, dependents=dependents)
    services: list[Unit] = []
    signal.signal(signal.SIGTERM, _raise_stop)
    exit_code = 0
    try:
        for name in stack.launched:
            supervisor.watch(StackUnit(stack, name))
        for name in available_services():
            unit = ServiceUnit(
                LaunchSpec(
                    name,
                    (sys.executable, "-m", "whisperstream.cli.main", name),
                    stack.state_dir / "logs" / f"{name}.log",
                    env=env,
                    pass_fds=(terminal_fd,) if terminal_fd is not None else (),
                )
            )
            proc = unit.launch()
            services.append(unit)
            log.info("started %s (pid %d), log %s", name, proc.pid, proc.log_path)
            supervisor.watch(unit)
        log.info("API: http://%s:%d", settings.api_host, settings.api_port)
        log.info(
            "web page: http://%s:%d/ (sign in with an API key)",
            settings.api_host,
            settings.api_port,
        )
        log.info("admin API key: %s", key)
        log.info("running; Ctrl-C or SIGTERM stops everything")
        gave_up = supervisor.wait()
        if gave_up is not None:
            log.error("%s", gave_up.message(supervisor.policy.window_s))
            exit_code = 1
    except (_StopRequestedError, KeyboardInterrupt):
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("stopping")
        supervisor.stop(services)
        if not result.already_running:
            stack.down()
        state.remove()
        if terminal_fd is not None:
            with contextlib.suppress(OSError):
                os.close(terminal_fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log.info("stopped")
    return exit_code
