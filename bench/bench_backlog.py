"""A backlog of 30-second clips through the whole system, against a plain loop.

Starts `whisperstream up --volatile` (API, worker, projector, Tansu, SeaweedFS, Postgres,
cross-job batching on: WHISPER_BATCH_SIZE 8, BATCH_WAIT_MS 50) and, for each engine and
model, submits 40 clips of 25-30 s of varied espeak-ng speech through the API (uploads
included, one after another, as one client would) and measures from the first upload to
the last job's `completed_at`. The plain loop is the same engine and model decoding and
transcribing the same files one after another in this process, with the same decoding
options (beam 5, temperature 0, language en). Both transcripts are scored against the
text that was spoken (WER), and against each other.

Also measured: the CPU seconds each service used during each backlog (where the time
goes on a shared machine), the peak resident memory of each service, the latency of one
clip on an idle system with batching and without it (a second system with
WHISPER_BATCH_SIZE=1, which is how the worker ran a short clip before batching), the
same backlog on that system, and a mixed run: one 10-minute file plus 20 clips.

Run: `python -m bench.bench_backlog [--config faster-whisper/tiny.en ...] [--clips 40]`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.bench_system import MemorySampler, service_processes
from bench.report import Figure, add_json_option, emit
from stream_workers import audio
from stream_workers.engines.base import TranscribeRequest
from stream_workers.engines.loader import EngineLoader
from stream_workers.models.catalog import ModelCatalog
from tests.support.audio import duration_s, normalise, speak, word_error_rate
from whisperstream.stack.ports import free_port

ADMIN_KEY = "bench-admin-key"
MAX_SECONDS = 3600.0
CLIP_MAX_S = 29.5
CONFIGS = ("faster-whisper/tiny.en", "faster-whisper/base", "openai-whisper/tiny.en")
TARGETS = {"faster-whisper": ">= 2.0", "openai-whisper": ">= 1.5"}

SENTENCES = (
    "The committee met on Tuesday morning to review the budget for the coming year.",
    "Several members argued that the library should stay open later in the evening.",
    "Others preferred to spend the money on new bicycles for the postal service.",
    "After a long discussion the chair proposed a compromise that pleased nobody.",
    "The train to the coast leaves from platform four at twenty past seven.",
    "Passengers are asked to keep their luggage with them at all times.",
    "My grandmother grew tomatoes, beans and potatoes behind the old stone house.",
    "Every summer the whole family came to help with the harvest.",
    "The engineer explained that the bridge needs new cables before the winter.",
    "Heavy rain is expected in the north, with strong winds along the coast.",
    "Temperatures will fall sharply overnight, so farmers should protect their crops.",
    "Please remember to return your books to the front desk before Friday.",
    "The museum opens a new exhibition about ancient maps next month.",
    "Visitors can see how sailors found their way across the ocean without satellites.",
    "Our team finished the project two weeks early and under budget.",
    "The manager thanked everyone and promised a dinner at the harbour restaurant.",
    "Doctors recommend walking for at least thirty minutes every day.",
    "A good night's sleep matters as much as a healthy diet.",
    "The orchestra rehearsed the final movement until late in the evening.",
    "Tickets for the concert sold out within an hour of going on sale.",
    "The river flooded the lower fields, but the village itself stayed dry.",
    "Volunteers filled sandbags and carried them to the houses near the water.",
    "The new software update fixes a problem with printing large documents.",
    "Users should restart their computers after the installation has finished.",
    "The children built a small wooden boat and sailed it on the pond.",
    "It sank after a few minutes, but everyone agreed it had been a success.",
    "The bakery on the corner sells fresh bread from six in the morning.",
    "On Sundays there is usually a long queue outside the door.",
    "Scientists measured the depth of the lake at more than two hundred metres.",
    "The results surprised them, because older maps showed a much shallower lake.",
)


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    seconds: float


@dataclass(frozen=True)
class Run:
    seconds: float
    texts: list[str]
    cpu: dict[str, float]
    waits: tuple[float, ...] = ()
    """Each job's seconds from the API accepting it to its completion (the system only)."""


# -- the clips ------------------------------------------------------------------------


def make_clip(folder: Path, name: str, first: int, words_per_minute: int) -> Clip:
    """25-30 s of speech: sentences from `first` on, until the clip would pass 29.5 s."""
    count = 6
    while True:
        text = " ".join(SENTENCES[(first + i) % len(SENTENCES)] for i in range(count))
        path = speak(text, folder / f"{name}.flac", words_per_minute=words_per_minute)
        seconds = duration_s(path)
        if seconds <= CLIP_MAX_S or count == 1:
            return Clip(path, text, seconds)
        count -= 1


def make_clips(folder: Path, count: int, offset: int = 0) -> list[Clip]:
    return [
        make_clip(folder, f"clip{offset + i:03d}", 7 * (offset + i), 150 + 7 * ((offset + i) % 6))
        for i in range(count)
    ]


def concatenate(clips: list[Clip], target: Path) -> Clip:
    listing = target.with_suffix(".txt")
    listing.write_text("".join(f"file '{clip.path}'\n" for clip in clips))
    subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing)),
            *("-ar", "16000", "-ac", "1", str(target)),
        ],
        check=True,
    )
    return Clip(target, " ".join(c.text for c in clips), duration_s(target))


# -- the plain loop -------------------------------------------------------------------


def plain_loop(engine: str, model: str, clips: list[Clip], cache: Path) -> Run:
    """Each file decoded and transcribed one after another: the work without the service."""
    loader = EngineLoader(ModelCatalog(None, cache), cpu_threads=2)
    transcriber = loader.load(loader.key_for(engine, model))
    request = TranscribeRequest(language="en")
    try:
        warm_up = audio.decode(clips[0].path, MAX_SECONDS)
        transcriber.transcribe(warm_up, request, lambda _d, _t: None)
        texts = []
        cpu_before = sum(psutil.Process().cpu_times()[:2])
        started = time.perf_counter()
        for clip in clips:
            samples = audio.decode(clip.path, MAX_SECONDS)
            texts.append(transcriber.transcribe(samples, request, lambda _d, _t: None).text)
        seconds = time.perf_counter() - started
        cpu = sum(psutil.Process().cpu_times()[:2]) - cpu_before
        return Run(seconds, texts, {"plain loop": cpu})
    finally:
        transcriber.close()


# -- the system -----------------------------------------------------------------------


class System:
    """`whisperstream up --volatile` on free ports, and a client of its API."""

    def __init__(self, folder: Path, **settings: str) -> None:
        self.state = folder / "state"
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
            "STACK_POSTGRES_PORT": str(free_port()),
            "WHISPERSTREAM_STATE_DIR": str(self.state),
            "API_PORT": str(port),
            "WHISPERSTREAM_ADMIN_KEY": ADMIN_KEY,
            "LOG_LEVEL": "WARNING",
            **settings,
        }
        env.pop("DATABASE_URL", None)
        self.log = folder / "up.log"
        with self.log.open("wb") as log:
            self.up = subprocess.Popen(
                [sys.executable, "-m", "whisperstream.cli.main", "up", "--volatile"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.memory = MemorySampler(self.up.pid, self.state)
        self.memory.start()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or self.up.poll() is not None:
                self.close()
                raise RuntimeError(self.log.read_text()[-3000:])
            time.sleep(0.3)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.client = httpx.Client(base_url=base, headers=headers, timeout=120)

    def submit(self, clip: Path, engine: str, model: str) -> str:
        response = self.client.post(
            "/transcribe",
            data={"engine": engine, "model": model, "language": "en"},
            files={"file": (clip.name, clip.read_bytes(), "audio/flac")},
        )
        response.raise_for_status()
        return str(response.json()["job_id"])

    def wait(self, job_ids: list[str], timeout: float = 1800) -> list[dict[str, Any]]:
        """Every job's document once all ended (checked twice a second, not to steal CPU)."""
        deadline = time.monotonic() + timeout
        done: dict[str, dict[str, Any]] = {}
        while len(done) < len(job_ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(job_ids) - len(done)} jobs unfinished")
            for job_id in job_ids:
                if job_id not in done:
                    job = self.client.get(f"/transcribe/{job_id}").json()
                    if job["status"] in ("completed", "failed", "cancelled"):
                        if job["status"] != "completed":
                            raise RuntimeError(f"job {job_id} ended {job['status']}: {job}")
                        done[job_id] = job
            time.sleep(0.5)
        return [done[j] for j in job_ids]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each service has used so far, its child processes included."""
        used: dict[str, float] = {}
        for name, proc in service_processes(psutil.Process(self.up.pid), self.state).items():
            with contextlib.suppress(psutil.Error):
                total = sum(proc.cpu_times()[:2])
                for child in proc.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += sum(child.cpu_times()[:2])
                used[name] = total
        bench = psutil.Process().cpu_times()
        used["bench client"] = bench.user + bench.system
        return used

    def backlog(self, clips: list[Path], engine: str, model: str) -> Run:
        self.wait([self.submit(clips[0], engine, model)])  # loads the model
        before = self.cpu_seconds()
        started = datetime.now(UTC)
        jobs = self.wait([self.submit(clip, engine, model) for clip in clips])
        after = self.cpu_seconds()
        finished = max(datetime.fromisoformat(job["completed_at"]) for job in jobs)
        cpu = {name: after[name] - before.get(name, 0.0) for name in after}
        texts = [str(job["result"]["text"]) for job in jobs]
        waits = tuple(_seconds(job["created_at"], job["completed_at"]) for job in jobs)
        return Run((finished - started).total_seconds(), texts, cpu, waits)

    def latency(self, clip: Path, engine: str, model: str, runs: int) -> list[float]:
        """Seconds from the API accepting one clip to its completion, the system idle."""
        seconds = []
        for _ in range(runs):
            [job] = self.wait([self.submit(clip, engine, model)])
            created = datetime.fromisoformat(job["created_at"])
            seconds.append((datetime.fromisoformat(job["completed_at"]) - created).total_seconds())
            time.sleep(1.0)
        return seconds

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        self.memory.stop()
        self.up.send_signal(signal.SIGTERM)
        try:
            self.up.wait(120)
        except subprocess.TimeoutExpired:
            self.up.kill()


@contextlib.contextmanager
def system(folder: Path, **settings: str) -> Iterator[System]:
    folder.mkdir(parents=True)
    running = System(folder, **settings)
    try:
        yield running
    finally:
        running.close()


# -- scoring and the report -----------------------------------------------------------


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Word errors over all clips divided by the words spoken (long clips weigh more)."""
    words = [len(normalise(r)) for r in references]
    errors = [
        word_error_rate(r, h) * n for r, h, n in zip(references, hypotheses, words, strict=True)
    ]
    return sum(errors) / sum(words)


@dataclass(frozen=True)
class Compared:
    config: str
    audio_s: float
    loop: Run
    system: Run
    wer_loop: float
    wer_system: float
    disagreement: float
    identical: int

    @property
    def ratio(self) -> float:
        return self.loop.seconds / self.system.seconds


def compare(config: str, clips: list[Clip], loop: Run, through: Run) -> Compared:
    references = [c.text for c in clips]
    return Compared(
        config=config,
        audio_s=sum(c.seconds for c in clips),
        loop=loop,
        system=through,
        wer_loop=corpus_wer(references, loop.texts),
        wer_system=corpus_wer(references, through.texts),
        disagreement=corpus_wer([t if normalise(t) else "-" for t in loop.texts], through.texts),
        identical=sum(
            normalise(a) == normalise(b) for a, b in zip(loop.texts, through.texts, strict=True)
        ),
    )


def print_comparisons(rows: list[Compared]) -> None:
    print(
        f"{'run':<34}{'audio s':>8}{'loop s':>8}{'system s':>9}{'ratio':>7}"
        f"{'WER loop':>9}{'WER sys':>8}{'sys vs loop':>12}{'same':>6}"
    )
    for r in rows:
        print(
            f"{r.config:<34}{r.audio_s:>8.0f}{r.loop.seconds:>8.1f}{r.system.seconds:>9.1f}"
            f"{r.ratio:>6.2f}x{r.wer_loop:>9.1%}{r.wer_system:>8.1%}{r.disagreement:>12.1%}"
            f"{r.identical:>3}/{len(r.loop.texts)}"
        )
    print(
        "CPU seconds per service during each backlog, all services together, and the plain "
        "loop's (the machine has 2 CPUs; CPU seconds are what a busy machine disturbs least):"
    )
    names = sorted({name for r in rows for name in r.system.cpu})
    print(
        f"{'run':<34}"
        + "".join(f"{name[:11]:>12}" for name in names)
        + f"{'all':>8}{'loop':>8}{'loop/all':>9}"
    )
    for r in rows:
        total = sum(r.system.cpu.values())
        loop = r.loop.cpu.get("plain loop", 0.0)
        print(
            f"{r.config:<34}"
            + "".join(f"{r.system.cpu.get(n, 0.0):>12.1f}" for n in names)
            + f"{total:>8.1f}{loop:>8.1f}{loop / total:>8.2f}x"
        )


def figures_of(rows: list[Compared]) -> list[Figure]:
    figures = []
    for r in rows:
        engine = r.config.split("/")[0]
        target = (
            TARGETS.get(engine) if "today" not in r.config and "mixed" not in r.config else None
        )
        figures += [
            Figure(f"{r.config}: system / plain loop throughput", r.ratio, "x", target),
            Figure(f"{r.config}: WER, plain loop", 100 * r.wer_loop, "%"),
            Figure(
                f"{r.config}: WER, system",
                100 * r.wer_system,
                "%",
                None if target is None else "<= loop + 1",
            ),
            Figure(f"{r.config}: system vs loop transcripts (WER)", 100 * r.disagreement, "%"),
            Figure(
                f"{r.config}: plain loop CPU / whole system CPU",
                r.loop.cpu.get("plain loop", 0.0) / sum(r.system.cpu.values()),
                "x",
            ),
            *(
                Figure(f"{r.config}: CPU, {name}", seconds, "s")
                for name, seconds in sorted(r.system.cpu.items())
            ),
        ]
    return figures


# -- main -----------------------------------------------------------------------------


def main() -> int:  # noqa: PLR0915 - one benchmark, step by step
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", action="append", choices=CONFIGS, default=None, help="engine/model (repeatable)"
    )
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--latency-runs", type=int, default=5)
    parser.add_argument("--no-mixed", action="store_true", help="skip the mixed run")
    parser.add_argument("--no-today", action="store_true", help="skip the system without batching")
    parser.add_argument("--keep-logs", type=Path, default=None)
    add_json_option(parser)
    args = parser.parse_args()
    configs: list[str] = args.config or list(CONFIGS)
    load_before = os.getloadavg()
    rows: list[Compared] = []
    latencies: dict[str, list[float]] = {}
    peaks: dict[str, dict[str, float]] = {}
    mixed_waits: tuple[float, ...] = ()
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as folder:
        tmp = Path(folder)
        clips = make_clips(tmp, args.clips)
        paths = [c.path for c in clips]
        long_file = None
        if not args.no_mixed:
            long_file = concatenate(make_clips(tmp, 21, offset=args.clips), tmp / "long.flac")
        try:
            with system(tmp / "batching") as running:
                cache = running.state / "models"
                for config in configs:
                    engine, model = config.split("/")
                    through = running.backlog(paths, engine, model)
                    loop = plain_loop(engine, model, clips, cache)
                    rows.append(compare(config, clips, loop, through))
                    print(f"{config}: loop {loop.seconds:.1f}s, system {through.seconds:.1f}s")
                first_engine, first_model = configs[0].split("/")
                latencies["batching"] = running.latency(
                    paths[0], first_engine, first_model, args.latency_runs
                )
                if long_file is not None:
                    mixed = [long_file, *clips[:20]]
                    through = running.backlog([c.path for c in mixed], first_engine, first_model)
                    loop = plain_loop(first_engine, first_model, mixed, cache)
                    mixed_waits = through.waits
                    rows.append(
                        compare(f"mixed 10 min + 20 clips, {configs[0]}", mixed, loop, through)
                    )
                peaks["batching"] = dict(running.memory.peaks)
            if not args.no_today:
                with system(tmp / "today", WHISPER_BATCH_SIZE="1") as today:
                    first_engine, first_model = configs[0].split("/")
                    latencies["today"] = today.latency(
                        paths[0], first_engine, first_model, args.latency_runs
                    )
                    through = today.backlog(paths, first_engine, first_model)
                    # the same loop as the batching system's first row
                    rows.append(
                        compare(f"today (no batching), {configs[0]}", clips, rows[0].loop, through)
                    )
                    peaks["today"] = dict(today.memory.peaks)
        finally:
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in tmp.glob("*/up.log"):
                    (args.keep_logs / f"{log.parent.name}-up.log").write_bytes(log.read_bytes())
    load_after = os.getloadavg()
    before, after = (" ".join(f"{x:.2f}" for x in load) for load in (load_before, load_after))
    audio_total = sum(c.seconds for c in clips)
    print(
        f"{args.clips} clips of espeak-ng speech, {audio_total:.0f} s in all "
        f"({min(c.seconds for c in clips):.1f}-{max(c.seconds for c in clips):.1f} s each); "
        "beam 5, temperature 0, language en; loop and worker 2 CPU threads"
    )
    print(f"load average (1/5/15 min) before: {before}, after: {after}")
    print_comparisons(rows)
    figures = figures_of(rows)
    for name, seconds in latencies.items():
        median = statistics.median(seconds)
        print(
            f"one {clips[0].seconds:.1f} s clip on an idle system, {name}: median {median:.2f}s "
            f"({', '.join(f'{s:.2f}' for s in seconds)})"
        )
        figures.append(Figure(f"idle single-clip latency, {name}", median, "s"))
    if "today" in latencies and "batching" in latencies:
        change = statistics.median(latencies["batching"]) / statistics.median(latencies["today"])
        print(f"idle latency with batching / without: {change:.2f}")
        figures.append(Figure("idle single-clip latency, batching / today", change, "x", "<= 1.10"))
    print("peak resident memory per service (MiB, with child processes):")
    for name, services in peaks.items():
        for service, peak in sorted(services.items()):
            print(f"  {name:<9}{service:<11}{peak:8.0f}")
            figures.append(Figure(f"peak memory, {service} ({name})", peak, "MiB"))
    if mixed_waits and long_file is not None:
        clip_waits = sorted(mixed_waits[1:])
        print(
            f"mixed run: the {long_file.seconds:.0f} s file completed {mixed_waits[0]:.1f}s after "
            f"it was accepted; the clips {clip_waits[0]:.1f}..{clip_waits[-1]:.1f}s "
            f"(median {statistics.median(clip_waits):.1f}s)"
        )
        figures += [
            Figure("mixed run: the 10-minute file's time to completion", mixed_waits[0], "s"),
            Figure(
                "mixed run: clips' median time to completion", statistics.median(clip_waits), "s"
            ),
        ]
    emit(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
