"""Sends due attempts: at most ``concurrency`` at once and ``per_host`` to one host, so a
slow receiver holds a few slots, never all of them.

Each claimed attempt: signing secrets of its owner, the Standard Webhooks headers, one
POST, then its outcome into the batch :class:`Recorder` writes.  The never-twice check
is made at claim time (``settled``: a success for this event and URL, or a 410 for
this job, is already recorded); the partial unique index backs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from db.projector.retry import database_retrying
from db.webhook_secrets import SigningSecrets, signing_secrets
from notifier.metrics import NotifierMetrics
from notifier.outcomes import AttemptResult, Outcome, classify, describe, retry_delay
from notifier.sender import Sender
from notifier.signing import webhook_headers
from notifier.store import ClaimedDelivery, Recorded, claim_due, record

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 5.0
"""A claim outlives the delivery timeout by this much before another may take it."""
CLAIM_COALESCE_S = 0.005
"""After a wake with deliveries in flight, how long to let more slots free before the
next claim: one claim query per freed slot cost more than the deliveries themselves."""


@dataclass(frozen=True, slots=True)
class DispatchConfig:
    concurrency: int
    per_host: int
    timeout_s: float
    schedule: tuple[float, ...]
    poll_interval_s: float
    fallback_secret: str | None


class Recorder:
    """Writes outcomes in batches: whatever has queued up while the previous batch was
    being written goes in one transaction.  ``add`` returns once its outcome is stored."""

    def __init__(self, engine: AsyncEngine, stopping: Callable[[], bool]) -> None:
        self._engine = engine
        self._stopping = stopping
        self._queue: list[tuple[Recorded, asyncio.Future[None]]] = []
        self._ready = asyncio.Event()

    async def add(self, outcome: Recorded) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((outcome, done))
        self._ready.set()
        await done

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._queue = self._queue, []
            try:
                await self._write([outcome for outcome, _ in batch])
            except IntegrityError:
                # one outcome broke a constraint (a second success of one event and URL
                # would): write them one by one, so the others are not lost and resent
                for outcome, done in batch:
                    await self._settle_alone(outcome, done)
                continue
            except Exception as exc:  # noqa: BLE001 - handed to every waiter
                for _, done in batch:
                    done.set_exception(exc)
                continue
            for _, done in batch:
                done.set_result(None)

    async def _write(self, outcomes: list[Recorded]) -> None:
        async for attempt in database_retrying(self._stopping):
            with attempt:
                await record(self._engine, outcomes)

    async def _settle_alone(self, outcome: Recorded, done: asyncio.Future[None]) -> None:
        try:
            try:
                await self._write([outcome])
            except IntegrityError:
                skipped = dataclasses.replace(
                    outcome, outcome=Outcome.SKIPPED, error="delivered already"
                )
                await self._write([skipped])
        except Exception as exc:  # noqa: BLE001 - handed to its waiter
            done.set_exception(exc)
            return
        done.set_result(None)


class Dispatcher:
    def __init__(
        self,
        config: DispatchConfig,
        engine: AsyncEngine,
        sender: Sender,
        metrics: NotifierMetrics | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self._engine = engine
        self._sender = sender
        self._metrics = metrics
        self._clock = clock
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._per_host: Counter[str] = Counter()
        self._recorder = Recorder(engine, self._stop.is_set)
        fallback = config.fallback_secret
        # jobs whose owner is no API key (the admin key, upstream producers)
        self._fallback = SigningSecrets(fallback) if fallback else None
        self.sent = 0

    def wake(self) -> None:
        """New attempts may be due (the consumer just scheduled some)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    async def run(self) -> None:
        recording = asyncio.create_task(self._recorder.run())
        lease = timedelta(seconds=self.config.timeout_s + LEASE_MARGIN_S)
        try:
            while not self._stop.is_set():
                claimed = await self._claim(lease)
                secrets = await self._secrets([d.owner for d in claimed if d.owner is not None])
                for delivery in claimed:
                    self._per_host[delivery.host] += 1
                    signing = secrets.get(delivery.owner or "", self._fallback)
                    task = asyncio.create_task(self._deliver(delivery, signing))
                    self._in_flight.add(task)
                    task.add_done_callback(self._finished)
                full = len(self._in_flight) >= self.config.concurrency
                if claimed and not full:
                    continue  # there may be more due right now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.poll_interval_s)
                if self._in_flight:
                    # slots free one by one: gather a few before the next claim query
                    await asyncio.sleep(CLAIM_COALESCE_S)
                self._wake.clear()
            # finish (and record) what is in flight; its leases would otherwise resend it
            if self._in_flight:
                await asyncio.wait(set(self._in_flight))
        finally:
            recording.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await recording

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a delivery failed unexpectedly", exc_info=task.exception())
        self._wake.set()

    async def _claim(self, lease: timedelta) -> list[ClaimedDelivery]:
        free = self.config.concurrency - len(self._in_flight)
        if free <= 0:
            return []
        async for attempt in database_retrying(self._stop.is_set):
            with attempt:
                return await claim_due(
                    self._engine, free, lease, dict(self._per_host), self.config.per_host
                )
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _deliver(self, delivery: ClaimedDelivery, secrets: SigningSecrets | None) -> None:
        try:
            if delivery.settled:
                await self._store(delivery, Outcome.SKIPPED, None, "delivered already")
                return
            if secrets is None:
                error = f"no webhook signing secret for owner {delivery.owner!r}"
                await self._store(delivery, Outcome.FAILED, None, error)
                return
            at = self._clock()
            headers = webhook_headers(delivery.event_id, at, delivery.body, secrets.all)
            result = await self._sender.post(delivery.url, delivery.body.encode(), headers)
            self.sent += 1
            await self._store(delivery, classify(result), result)
        finally:
            self._per_host[delivery.host] -= 1
            if self._per_host[delivery.host] <= 0:
                del self._per_host[delivery.host]

    async def _secrets(self, owners: list[str]) -> dict[str, SigningSecrets]:
        """The signing secrets of the owners of one claim, in one query (read at each
        claim, so a rotation applies to the next attempt)."""
        if not owners:
            return {}
        async for attempt in database_retrying(self._stop.is_set):
            with attempt:
                return await signing_secrets(self._engine, set(owners), at=self._clock())
        raise AssertionError("unreachable: the retry loop returns or raises")

    async def _store(
        self,
        delivery: ClaimedDelivery,
        outcome: Outcome,
        result: AttemptResult | None,
        error: str | None = None,
    ) -> None:
        now = self._clock()
        next_at = None
        if outcome is Outcome.RETRYING:
            delay = retry_delay(delivery.attempt, self.config.schedule)
            if delay is None:
                outcome = Outcome.FAILED
                error = f"gave up after {delivery.attempt} attempts"
            else:
                next_at = now + timedelta(seconds=delay)
        latency = result.latency_ms if result is not None else None
        detail = describe(result) if result is not None else None
        if error is not None and detail is not None:
            error = f"{detail}; {error}"
        recorded = Recorded(
            delivery=delivery,
            outcome=outcome,
            status_code=result.status_code if result is not None else None,
            latency_ms=latency,
            error=error if error is not None else detail,
            attempted_at=now,
            next_attempt_at=next_at,
        )
        await self._recorder.add(recorded)
        if self._metrics is not None:
            self._metrics.attempt(outcome, latency)
        # one line per delivery that did not go through; successes only at DEBUG
        log.log(
            logging.DEBUG if outcome is Outcome.SUCCEEDED else logging.INFO,
            "webhook %s attempt %d to %s: %s%s",
            delivery.event_id,
            delivery.attempt,
            delivery.host,
            outcome.value,
            f" ({recorded.error})" if recorded.error else "",
        )
