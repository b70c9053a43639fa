"""`make bench`: run every benchmark script several times and write docs/BENCHMARKS.md.

Each script prints its own table and, with `--json`, saves named figures; this runner
reports each figure's median, min and max over the runs, with the machine it ran on.
Run: `python -m bench.run_all [--runs 3] [--only NAME ...]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

from bench.benchmarks_doc import Section, merge, parse, render
from bench.report import Figure, load

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    args: tuple[str, ...] = ()
    max_runs: int | None = None
    """Fewer runs for the slowest benchmarks (minutes each)."""


BENCHMARKS = (
    Benchmark(
        "bench_stack_start", "Local stack start (`stack up` until all ready)", ("--runs", "1")
    ),
    Benchmark("bench_codec", "Event codec, one core (TranscriptionRequested)"),
    Benchmark("bench_api", "API on loopback, workers idle"),
    Benchmark("bench_projector_fold", "Projector fold into Postgres"),
    Benchmark("bench_projector_replay", "Projector replay of 100,000 events through the broker"),
    Benchmark("bench_workers", "Worker pipeline vs. the raw engine", max_runs=2),
    Benchmark("bench_batching", "faster-whisper on long audio: batched vs. one window at a time"),
    Benchmark(
        "bench_decoding",
        "Decoding choices on both engines: beam 1 vs. 5, temperature fallback off vs. on",
        max_runs=1,
    ),
    Benchmark("bench_system", "Whole system: priority latency and peak memory"),
    Benchmark(
        "bench_backlog",
        "A backlog of 30 s clips through the whole system with cross-job batching vs. a plain loop",
        max_runs=1,
    ),
    Benchmark("bench_webhooks", "Notifier: signed webhook deliveries to a local receiver"),
    Benchmark(
        "bench_events",
        "Live job events (1,000 SSE streams on one API process) and the OpenAI endpoint's "
        "added latency",
        max_runs=2,
    ),
)


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return [
        f"- CPU: {cpu}, {psutil.cpu_count(logical=True)} logical cores; no GPU used",
        f"- memory: {memory:.1f} GiB",
        f"- OS: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()}",
    ]


def run_one(bench: Benchmark, out: Path) -> tuple[str, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{bench.name}", *bench.args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{bench.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout, time.perf_counter() - started


def table(runs: list[list[Figure]]) -> list[str]:
    names = [f.name for f in runs[0]]
    lines = [
        "| figure | unit | median | min | max | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name in names:
        values = [f.value for run in runs for f in run if f.name == name]
        first = next(f for f in runs[0] if f.name == name)
        lines.append(
            f"| {name} | {first.unit} | {_fmt(statistics.median(values))} | {_fmt(min(values))}"
            f" | {_fmt(max(values))} | {first.target or ''} |"
        )
    return lines


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="benchmark names to run; their sections replace the old ones, the rest stay",
    )
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    chosen = [b for b in BENCHMARKS if args.only is None or b.name in args.only]
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="whisperstream-bench-") as tmp:
        for bench in chosen:
            sections.append(run_benchmark(bench, args.runs, Path(tmp)))
    now = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    old_header: list[str] = []
    old_sections: list[Section] = []
    if args.output.exists():
        old_header, old_sections = parse(args.output.read_text())
    if args.only is not None and old_header:
        names = ", ".join(f"`{b.name}`" for b in chosen)
        header = [*old_header[:-1], "", f"Re-run alone on {now}: {names}.", ""]
    else:
        old_sections = [s for s in old_sections if any(b.title == s.title for b in BENCHMARKS)]
        header = [
            "# Benchmarks",
            "",
            f"Written by `make bench` (`python -m bench.run_all --runs {args.runs}`) on {now}."
            " Every figure is the median of the runs, with their min and max; the targets"
            " are those of the issues. Each section gives the load average before and after"
            " it ran, since the machine may be shared.",
            "",
            "Machine:",
            "",
            *machine(),
            "",
        ]
    merged = merge(old_sections, sections, [b.title for b in BENCHMARKS])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(header, merged))
    print(f"wrote {args.output}")
    return 0


def run_benchmark(bench: Benchmark, runs_asked: int, tmp: Path) -> Section:
    runs: list[list[Figure]] = []
    last_output = ""
    seconds = 0.0
    runs_wanted = min(runs_asked, bench.max_runs or runs_asked)
    load_before = os.getloadavg()[0]
    for index in range(runs_wanted):
        out = tmp / f"{bench.name}-{index}.json"
        print(f"{bench.name}: run {index + 1}/{runs_wanted}", flush=True)
        last_output, took = run_one(bench, out)
        seconds += took
        runs.append(load(out))
    print(last_output)
    load_after = os.getloadavg()[0]
    return Section(
        bench.title,
        [
            "",
            f"`python -m bench.{bench.name} {' '.join(bench.args)}`".replace(" `", "`"),
            f"— {runs_wanted} runs, {seconds:.0f} s in all, {datetime.now(UTC):%Y-%m-%d}; "
            f"load average {load_before:.1f} before, {load_after:.1f} after.",
            "",
            *table(runs),
            "",
            "<details><summary>the last run's own output</summary>",
            "",
            "```",
            last_output.rstrip(),
            "```",
            "</details>",
        ],
        [],
    )


if __name__ == "__main__":
    raise SystemExit(main())
