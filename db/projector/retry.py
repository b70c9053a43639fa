"""Which database errors are worth waiting out, and the back-off used to wait."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import DBAPIError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)

# SQLSTATE classes/codes that say "try again later", not "this batch is wrong":
# 08 connection exception, 57P01-57P03 shutdown / cannot connect now, 53 insufficient
# resources, 40001 serialization failure, 40P01 deadlock.
_TRANSIENT_PREFIXES = ("08", "57P", "53", "40001", "40P01")


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of ``exc`` or of the driver error it wraps."""
    for candidate in (exc, getattr(exc, "orig", None), getattr(exc, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean Postgres is away or busy; the same batch will succeed
    once it is back.  Anything else (a bug, a constraint) must stop the projector."""
    if isinstance(exc, OSError):  # refused, reset, timed out: the server is not there
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        if isinstance(exc.orig, OSError):
            return True
    state = sqlstate(exc)
    if state is not None:
        return state.startswith(_TRANSIENT_PREFIXES)
    # asyncpg reports a connection lost mid-query without a SQLSTATE
    return type(exc).__name__ in {"ConnectionDoesNotExistError", "InterfaceError"} and (
        "connection" in str(exc).lower()
    )


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    log.warning(
        "database unavailable (attempt %d, next try in %.1fs): %s",
        state.attempt_number,
        wait,
        error,
    )


def database_retrying(
    should_stop: Callable[[], bool], *, initial_s: float = 0.2, max_s: float = 5.0
) -> AsyncRetrying:
    """Retry transient database errors with exponential back-off until ``should_stop``."""
    return AsyncRetrying(
        retry=retry_if_exception(is_transient),
        wait=wait_exponential_jitter(multiplier=initial_s, max=max_s),
        stop=lambda _state: should_stop(),
        before_sleep=_log_retry,
        reraise=True,
    )
