"""One HTTP POST per attempt: a time limit on the whole exchange, no redirects, no
proxies from the environment, and only addresses that pass the SSRF check."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import aiohttp

from notifier.addresses import GuardedResolver, RefusedAddressError, literal_refusal
from notifier.outcomes import AttemptResult

USER_AGENT = "whisperstream-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024
"""Read (and dropped) from a response so the connection can be reused; no more."""


class Sender:
    def __init__(self, *, timeout_s: float, allow_private: bool, connections: int) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._allow_private = allow_private
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Sender:
        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(allow_private=self._allow_private),
            limit=self._connections,
            # resolve at each new connection: the check must see the DNS of now
            use_dns_cache=False,
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, trust_env=False
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
        if self._session is None:
            raise RuntimeError("use the Sender as an async context manager")
        refusal = literal_refusal(url, allow_private=self._allow_private)
        if refusal is not None:
            return AttemptResult(None, 0.0, f"refused: {refusal}", transient=False)
        started = time.perf_counter()
        try:
            async with self._session.post(
                url,
                data=body,
                headers={**headers, "content-type": "application/json", "user-agent": USER_AGENT},
                allow_redirects=False,
            ) as response:
                await response.content.read(MAX_RESPONSE_BYTES)
                return AttemptResult(response.status, _ms_since(started))
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RefusedAddressError):
                return AttemptResult(None, _ms_since(started), f"refused: {exc.os_error}", False)
            return AttemptResult(None, _ms_since(started), f"connection failed: {exc}")
        except TimeoutError:
            return AttemptResult(None, _ms_since(started), "timed out")
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            return AttemptResult(None, _ms_since(started), f"{type(exc).__name__}: {exc}")


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
