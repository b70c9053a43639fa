"""Helpers of the projector tests: a producer of events, a projector run as a task,
waiting for a condition, and snapshots of the projection tables."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Producer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from db.models import error_logs_table, jobs_table, projector_offsets_table, results_table
from db.projector.config import ProjectorConfig
from db.projector.service import Projector, ProjectorStats
from schemas.codec import EventCodec
from schemas.events import Event
from whisperstream.settings import Settings

Rows = dict[str, list[dict[str, Any]]]


@dataclass
class EventProducer:
    producer: Producer
    codec: EventCodec

    def send(self, topic: str, event: Event, *, partition: int | None = None) -> None:
        self.raw(topic, self.codec.encode(event), key=_key(event), partition=partition)

    def raw(
        self, topic: str, value: bytes | None, *, key: bytes | None, partition: int | None = None
    ) -> None:
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        self.producer.produce(topic, value=value, key=key, **extra)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0, "records left unsent"


def _key(event: Event) -> bytes | None:
    job_id = getattr(event, "job_id", None)
    return job_id.encode() if isinstance(job_id, str) else None


def projector_config(settings: Settings, **overrides: Any) -> ProjectorConfig:
    config = ProjectorConfig.from_settings(
        settings.model_copy(update={"projector_group_id": f"projector-{uuid.uuid4().hex[:8]}"})
    )
    return ProjectorConfig(**{**_fields(config), **overrides})


def _fields(config: ProjectorConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__slots__}


@dataclass
class RunningProjector:
    projector: Projector
    task: asyncio.Task[ProjectorStats]

    @property
    def stats(self) -> ProjectorStats:
        return self.projector.stats

    async def stop(self, within_s: float = 60) -> ProjectorStats:
        self.projector.stop()
        return await asyncio.wait_for(self.task, within_s)


StartProjector = Callable[..., Awaitable[RunningProjector]]


async def eventually(
    check: Callable[[], Awaitable[bool]], *, within_s: float = 60, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within_s}s waiting for {what}")
        await asyncio.sleep(0.1)


async def table_rows(engine: AsyncEngine) -> Rows:
    """Every projection row, in a stable order, without the error rows' serial ids."""
    async with engine.connect() as connection:
        jobs = (await connection.execute(select(jobs_table).order_by(jobs_table.c.id))).mappings()
        job_rows = [dict(row) for row in jobs]
        results = await connection.execute(select(results_table).order_by(results_table.c.job_id))
        result_rows = [dict(row) for row in results.mappings()]
        errors = await connection.execute(
            select(error_logs_table).order_by(
                error_logs_table.c.source_topic,
                error_logs_table.c.source_partition,
                error_logs_table.c.source_offset,
            )
        )
        error_rows = [{k: v for k, v in row.items() if k != "id"} for row in errors.mappings()]
    return {"jobs": job_rows, "results": result_rows, "errors": error_rows}


async def stored_offsets(engine: AsyncEngine, group: str) -> dict[tuple[str, int], int]:
    table = projector_offsets_table
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(table.c.topic, table.c.partition, table.c.next_offset).where(
                table.c.consumer_group == group
            )
        )
        return {(topic, partition): offset for topic, partition, offset in rows}


async def error_ids_by_position(engine: AsyncEngine) -> dict[tuple[str, int, int], int]:
    """Each error row's id, by the source position it describes."""
    table = error_logs_table
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                table.c.source_topic, table.c.source_partition, table.c.source_offset
            ).add_columns(table.c.id)
        )
        return {(topic, partition, offset): id_ for topic, partition, offset, id_ in rows}
