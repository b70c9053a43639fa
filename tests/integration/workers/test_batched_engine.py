"""Cross-job batching with the real faster-whisper tiny.en (int8, in process): jfk.flac
decoded in one batch with other clips gives the transcript it gets alone."""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import pytest

from schemas.events import Priority, Task
from stream_workers import audio
from stream_workers.batching import WindowBatcher, batch_group
from stream_workers.engines.base import TranscribeRequest
from stream_workers.engines.decoding import Decoding
from stream_workers.engines.loader import EngineLoader
from stream_workers.models.catalog import ModelCatalog
from stream_workers.pool import ModelPool
from tests.support.audio import cut, normalise, repeat

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_jfk_batched_with_other_clips_reads_as_it_does_alone(
    jfk_flac: Path, tmp_path: Path
) -> None:
    loader = EngineLoader(ModelCatalog(None, tmp_path / "cache"), cpu_threads=2)
    key = loader.key_for("faster-whisper", "tiny.en")
    pool = ModelPool(loader, max_size=1)
    others = [
        cut(jfk_flac, tmp_path / "start.flac", 0, 4),
        cut(jfk_flac, tmp_path / "end.flac", 6, 5),
        repeat(jfk_flac, tmp_path / "three.flac", 3),  # 33 s: two windows, cut by VAD
    ]
    jfk = audio.decode(jfk_flac, 3600)
    decoded = [audio.decode(path, 3600) for path in others]
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        alone, _ = await asyncio.get_running_loop().run_in_executor(
            executor,
            pool.run,
            key,
            60,
            lambda model: model.transcribe(jfk, TranscribeRequest(), lambda _d, _t: None),
        )
        batcher = WindowBatcher(pool, executor, batch_size=8, wait_s=30, acquire_timeout_s=60)
        group = batch_group(key, None, Task.TRANSCRIBE, Decoding())
        assert group is not None
        # the lane waits (up to wait_s) while any job is still cutting its audio: one batch
        jobs = [
            batcher.transcribe(
                group,
                Priority.NORMAL,
                samples,
                vad_filter=False,
                on_progress=lambda _d, _t: None,
            )
            for samples in [*decoded, jfk]
        ]
        results = await asyncio.gather(*jobs)
    pool.close()
    stats = batcher.stats()
    assert stats.largest_batch == 5  # four jobs, one of them in two windows
    batched, used = results[-1]
    assert used == key
    assert batched.text == alone.text
    assert normalise(batched.text)[:4] == ["and", "so", "my", "fellow"]
    assert batched.segments[0].start < 1.0
    assert batched.segments[-1].end == pytest.approx(11.0, abs=0.6)
    three, _ = results[2]  # 33 s: two windows, on the job's own timeline
    assert [s.start for s in three.segments] == sorted(s.start for s in three.segments)
    assert three.segments[-1].end == pytest.approx(33.0, abs=0.6)
    assert normalise(three.text)[-4:] == ["can", "do", "for", "your", "country"][-4:]
