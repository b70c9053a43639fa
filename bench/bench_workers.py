"""Worker throughput (Kafka and S3 included) vs a plain in-process loop, per engine.

Starts the embedded stack on random ports, makes 20 clips of ~33 s (jfk.flac three
times, each clip offset differently), and for each engine measures:
- the plain loop: one loaded model decoding and transcribing the 20 files one after
  another, in this process;
- the worker: `whisperstream worker` (one slot) consuming 20 requests from Kafka,
  downloading from S3, writing results and status events; timed from the first request
  produced to the timestamp of the last completed event. The audio is uploaded before the
  clock starts, as the API stores it before producing a request.
Prints audio seconds per wall second for both, their ratio, the pool hit rate, and the
load average (the machine is shared: compare runs made under a similar load).
Options: `--engine NAME` (repeatable) measures only that engine, `--keep-logs DIR`
keeps the worker logs (each job logs where its time went: "job … completed in …").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.report import Figure, add_json_option, emit
from ops.kafka.topics import apply_topics, default_topic_specs
from schemas.events import WorkerHeartbeat
from stream_workers import audio
from stream_workers.engines.base import ENGINES, TranscribeRequest
from stream_workers.engines.loader import EngineLoader
from stream_workers.models.catalog import ModelCatalog
from tests.integration.workers.harness import Bus, wait_for, worker, worker_env
from tests.support.audio import JFK_FLAC
from tests.support.stack import RunningStack, random_stack_settings
from whisperstream.stack.manager import LocalStack

CLIPS = 20
MAX_SECONDS = 3600.0


def make_clips(folder: Path) -> list[Path]:
    ffmpeg = shutil.which("ffmpeg") or "ffmpeg"
    clips = []
    for index in range(CLIPS):
        clip = folder / f"clip{index:02d}.flac"
        # three copies of jfk, started at a different offset so no two clips are identical
        subprocess.run(
            [
                ffmpeg,
                "-v",
                "error",
                "-y",
                "-ss",
                f"{index * 0.2:.1f}",
                "-i",
                str(JFK_FLAC),
                "-i",
                str(JFK_FLAC),
                "-i",
                str(JFK_FLAC),
                "-filter_complex",
                "[0:a][1:a][2:a]concat=n=3:v=0:a=1",
                "-ar",
                "16000",
                "-ac",
                "1",
                str(clip),
            ],
            check=True,
        )
        clips.append(clip)
    return clips


def duration(path: Path) -> float:
    ffprobe = shutil.which("ffprobe") or "ffprobe"
    out = subprocess.run(
        [ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
        capture_output=True,
        check=True,
        text=True,
    )
    return float(out.stdout.strip())


def plain_loop(engine: str, clips: list[Path], cache: Path) -> float:
    """Decode each file and transcribe it, one after another: the work without the service."""
    loader = EngineLoader(ModelCatalog(None, cache), cpu_threads=2)
    model = loader.load(loader.key_for(engine, "tiny.en"))
    try:
        warm_up = audio.decode(clips[0], MAX_SECONDS)
        model.transcribe(warm_up, TranscribeRequest(), lambda _d, _t: None)
        started = time.perf_counter()
        for clip in clips:
            samples = audio.decode(clip, MAX_SECONDS)
            model.transcribe(samples, TranscribeRequest(), lambda _d, _t: None)
        return time.perf_counter() - started
    finally:
        model.close()


def through_worker(
    stack: RunningStack, engine: str, clips: list[Path], tmp: Path
) -> tuple[float, float]:
    suffix = f"bench{time.time_ns()}"
    settings = stack.settings.model_copy(
        update={
            name: f"{getattr(stack.settings, name)}.{suffix}"
            for name in (
                "topic_requests_high",
                "topic_requests_normal",
                "topic_requests_retry",
                "topic_control",
                "topic_status",
                "topic_dlq",
                "topic_workers",
            )
        }
    )
    apply_topics(
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}),
        default_topic_specs(settings),
    )
    bus = Bus(settings, fetch_wait_ms=500)
    env = worker_env(stack, settings, WHISPER_ENGINE=engine, WORKER_CONCURRENCY="1")
    try:
        with worker(env, tmp / f"worker-{engine}.log"):
            # one warm-up job: the group is joined and partitions assigned before timing
            warm_up = bus.request(clips[0])
            wait_for("the warm-up job", lambda: bus.terminal(warm_up.job_id), timeout=300)
            before = bus.read(settings.topic_workers, WorkerHeartbeat)[-1].pool
            # The audio is in S3 before its request exists (as the API does it). The clock
            # runs from the first request produced to the last terminal event, by that
            # event's own timestamp: the bench then checks for it only twice a second, so
            # that its polling does not take CPU from the worker it measures.
            requests = [bus.prepare(clip) for clip in clips]
            job_ids = [r.job_id for r in requests]
            started = time.time()
            for request in requests:
                bus.submit(request)
            bus.flush()
            wait_for("all jobs", lambda: bus.all_terminal(job_ids), timeout=1800, interval=0.5)
            events = [e for r in requests for e in bus.statuses(r.job_id)]
            first_event = min(e.occurred_at.timestamp() for e in events)
            last_event = max(e.occurred_at.timestamp() for e in events)
            elapsed = last_event - started
            print(
                f"{engine}: first status event {first_event - started:.3f}s after the first "
                f"request; the last one {elapsed:.3f}s after it",
                flush=True,
            )
            time.sleep(1.5)  # one more heartbeat, with the final pool stats
            beat = bus.read(settings.topic_workers, WorkerHeartbeat)[-1]
            hits, misses = beat.pool.hits - before.hits, beat.pool.misses - before.misses
        for request in requests:
            event = bus.terminal(request.job_id)
            assert event is not None
            assert event.status.value == "completed", event
        return elapsed, hits / max(1, hits + misses)
    finally:
        bus.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_json_option(parser)
    parser.add_argument(
        "--engine",
        action="append",
        choices=ENGINES,
        default=None,
        help="measure only this engine (repeatable; default: every engine)",
    )
    parser.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the worker logs into this folder"
    )
    args = parser.parse_args()
    engines: list[str] = args.engine or list(ENGINES)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        tmp = Path(folder)
        clips = make_clips(tmp)
        audio_s = sum(duration(c) for c in clips)
        settings = random_stack_settings(tmp / "stack")
        stack = LocalStack(settings)
        stack.up(volatile=True)
        try:
            running = RunningStack(stack, settings)
            for engine in engines:
                loop_s = plain_loop(engine, clips, settings.whisperstream_state_dir / "models")
                worker_s, hit_rate = through_worker(running, engine, clips, tmp)
                rows.append((engine, audio_s, loop_s, worker_s, hit_rate))
        finally:
            stack.down()
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("worker-*.log"):
                    shutil.copy(log, args.keep_logs / log.name)
    load_after = os.getloadavg()
    print(f"{CLIPS} clips, {audio_s:.0f} s of speech in all, tiny.en, 1 slot, 2 CPU threads")
    before, after = (" ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    print(f"load average (1/5/15 min) before: {before}, after: {after}")
    print(f"{'engine':<16}{'loop x RT':>10}{'worker x RT':>13}{'worker/loop':>13}{'pool hits':>11}")
    for engine, audio_total, loop_s, worker_s, hit_rate in rows:
        print(
            f"{engine:<16}{audio_total / loop_s:>10.1f}{audio_total / worker_s:>13.1f}"
            f"{loop_s / worker_s:>12.0%}{hit_rate:>11.0%}"
        )
    figures: list[Figure] = []
    for engine, audio_total, loop_s, worker_s, hit_rate in rows:
        figures += [
            Figure(f"{engine}: plain loop", audio_total / loop_s, "x real time"),
            Figure(f"{engine}: through the worker", audio_total / worker_s, "x real time"),
            Figure(f"{engine}: worker / plain loop", 100 * loop_s / worker_s, "%", ">= 90"),
            Figure(f"{engine}: pool hit rate after warm-up", 100 * hit_rate, "%", ">= 95"),
        ]
    emit(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
