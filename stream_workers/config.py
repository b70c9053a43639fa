"""Worker tuning knobs, read from the environment like the shared Settings.

Kept beside the shared `Settings` (which owns connections, topics and the pool sizes)
so that worker-only knobs do not widen every other service's configuration.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from whisperstream.errors import SettingsError
from whisperstream.settings import describe_validation_error


class WorkerTuning(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, case_sensitive=False, extra="ignore")

    worker_id: str | None = None
    whisper_device: Literal["cpu", "cuda"] = "cpu"
    # 0: the CPUs this process may use, shared out between the WORKER_CONCURRENCY slots
    whisper_cpu_threads: int = Field(default=0, ge=0, le=256)
    whisper_batch_size: int = Field(
        default=8,
        ge=1,
        le=64,
        description="30 s windows per batched model call, of many jobs together "
        "(stream_workers/batching.py) and of one long file; 1 turns batching off",
    )
    batch_wait_ms: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        description="how long the next batch waits for more windows, only while some job's "
        "audio is still being fetched or decoded",
    )
    batch_max_jobs: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="jobs in progress at once while batching (unset: twice "
        "WHISPER_BATCH_SIZE); bounds the decoded audio the worker holds",
    )
    whisper_cache_dir: Path | None = None
    # engines whose models run in a child process each (comma separated; empty: none).
    # openai-whisper's Python decoding loop runs faster away from the worker's threads.
    whisper_process_engines: str = "openai-whisper"

    # time limits: soft = duration x factor, kept within [floor, ceiling]; hard adds a margin
    job_soft_time_limit_s: float = Field(default=3600.0, gt=0)
    job_hard_time_limit_s: float = Field(default=3900.0, gt=0)
    job_time_limit_floor_s: float = Field(default=120.0, gt=0)
    job_time_limit_factor: float = Field(default=2.0, gt=0)
    max_audio_duration_s: float = Field(default=4 * 3600.0, gt=0)

    # retries: attempt n waits retry_base_s * 2**(n-1), +/- jitter
    retry_base_s: float = Field(default=5.0, ge=0)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)
    max_attempts: int = Field(default=5, ge=1, le=100)
    max_delayed_retries: int = Field(default=256, ge=1)

    # audio of jobs waiting for a slot is fetched ahead: at most PREFETCH_JOBS at a time
    # (unset: WORKER_CONCURRENCY; 0: off), decoded ahead when at most PREFETCH_DECODE_MAX_S
    prefetch_jobs: int | None = Field(default=None, ge=0, le=256)
    prefetch_decode_max_s: float = Field(default=600.0, ge=0)

    # Fault injection for tests only, off by default: loading any model named here (comma
    # separated, e.g. "base.en") fails with MemoryError, as a real allocation failure would,
    # to exercise the pool's out-of-memory fallback through a real worker.
    worker_fault_oom_models: str = ""

    model_acquire_timeout_s: float = Field(default=600.0, gt=0)
    progress_interval_s: float = Field(default=2.0, ge=0)
    progress_step: float = Field(default=0.05, ge=0, le=1)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    session_timeout_s: float = Field(default=6.0, gt=0)
    worker_fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=30_000,
        description="how long the broker may hold the request consumer's empty fetch: on "
        "Tansu (the local stack), which answers only when the wait is over, the most a new "
        "request waits before the worker sees it; an idle worker sends 1000 / this fetches "
        "a second. On Apache Kafka or Redpanda, which answer as soon as a record arrives, "
        "500-1500 saves idle fetches at no cost in latency",
    )

    @property
    def batching(self) -> bool:
        return self.whisper_batch_size > 1

    @property
    def job_slots_when_batching(self) -> int:
        return self.batch_max_jobs or 2 * self.whisper_batch_size

    @property
    def process_engines(self) -> frozenset[str]:
        return frozenset(e.strip() for e in self.whisper_process_engines.split(",") if e.strip())

    @property
    def fault_oom_models(self) -> frozenset[str]:
        return frozenset(m.strip() for m in self.worker_fault_oom_models.split(",") if m.strip())

    @model_validator(mode="after")
    def _limits_fit(self) -> WorkerTuning:
        unknown = self.process_engines - {"faster-whisper", "openai-whisper"}
        if unknown:
            raise ValueError(
                f"WHISPER_PROCESS_ENGINES names unknown engines {sorted(unknown)}: "
                "faster-whisper, openai-whisper"
            )
        if self.job_hard_time_limit_s < self.job_soft_time_limit_s:
            raise ValueError("JOB_HARD_TIME_LIMIT_S must be at least JOB_SOFT_TIME_LIMIT_S")
        if self.job_time_limit_floor_s > self.job_soft_time_limit_s:
            raise ValueError("JOB_TIME_LIMIT_FLOOR_S must not exceed JOB_SOFT_TIME_LIMIT_S")
        return self


def default_cpu_threads(concurrency: int) -> int:
    """CPU threads per model: the CPUs this process may run on, split between the slots."""
    return max(1, len(os.sched_getaffinity(0)) // max(1, concurrency))


def load_tuning(**overrides: object) -> WorkerTuning:
    try:
        return WorkerTuning(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, "worker configuration")) from exc
