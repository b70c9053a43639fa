"""Composition root of ``whisperstream replay``: each operation builds and closes its own
engine and codec.  Moving the stored offsets checks first that the projector's group is
stopped; a rebuild runs beside the live projector."""

from __future__ import annotations

import asyncio
from datetime import datetime

from db.engine import create_engine
from db.projector.config import ProjectorConfig
from db.projector.groups import ensure_group_inactive
from db.projector.offsets import set_next_offsets
from db.projector.rebuild import RebuildReport, rebuild
from db.projector.replay import offsets_at_time, parse_offsets, projected_partitions
from schemas.codec import EventCodec
from whisperstream.settings import Settings

Position = tuple[str, int]


def run_rebuild(settings: Settings) -> RebuildReport:
    return asyncio.run(_rebuild(settings))


async def _rebuild(settings: Settings) -> RebuildReport:
    config = ProjectorConfig.from_settings(settings)
    engine = create_engine(settings.effective_database_url)
    try:
        with EventCodec(settings.schema_registry_url) as codec:
            return await rebuild(config, engine, codec)
    finally:
        await engine.dispose()


def reset_to_time(settings: Settings, when: datetime) -> dict[Position, int]:
    """Store, for each partition, the first offset at or after ``when``."""
    config = ProjectorConfig.from_settings(settings)
    ensure_group_inactive(config.kafka, config.group_id)

    async def reset() -> dict[Position, int]:
        offsets = await offsets_at_time(config, when)
        await _write(settings, config.group_id, offsets)
        return offsets

    return asyncio.run(reset())


def reset_to_offsets(settings: Settings, spec: str) -> dict[Position, int]:
    """Store the offsets ``spec`` names (see :func:`parse_offsets`)."""
    config = ProjectorConfig.from_settings(settings)
    ensure_group_inactive(config.kafka, config.group_id)
    offsets = parse_offsets(spec, projected_partitions(config))
    asyncio.run(_write(settings, config.group_id, offsets))
    return offsets


async def _write(settings: Settings, group_id: str, offsets: dict[Position, int]) -> None:
    engine = create_engine(settings.effective_database_url)
    try:
        await set_next_offsets(engine, group_id, offsets)
    finally:
        await engine.dispose()
