"""How long `stack up` takes until all three services do real work.

Prints a table: cold start (empty state dir) and warm restart (existing state), durable
and volatile, median/min/max over several runs. Run: `python -m bench.bench_stack_start`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.report import Figure, add_json_option, emit
from whisperstream.settings import load_settings
from whisperstream.stack.manager import LocalStack
from whisperstream.stack.ports import free_port


def _stack(state_dir: Path) -> LocalStack:
    settings = load_settings(
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        s3_endpoint=f"http://127.0.0.1:{free_port()}",
        stack_postgres_port=free_port(),
        whisperstream_state_dir=state_dir,
        database_url=None,
    )
    return LocalStack(settings)


def measure(runs: int, *, volatile: bool) -> tuple[list[float], list[float]]:
    cold, warm = [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="whisperstream-bench-") as tmp:
            stack = _stack(Path(tmp))
            try:
                started = time.perf_counter()
                stack.up(volatile=volatile)
                cold.append(time.perf_counter() - started)
                stack.down()
                started = time.perf_counter()
                stack.up(volatile=volatile)
                warm.append(time.perf_counter() - started)
            finally:
                stack.down()
    return cold, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    add_json_option(parser)
    args = parser.parse_args()
    rows = []
    for volatile in (False, True):
        cold, warm = measure(args.runs, volatile=volatile)
        mode = "volatile" if volatile else "durable"
        rows.append((f"{mode}, cold (empty state dir)", cold))
        rows.append((f"{mode}, restart (existing state)", warm))
    print(f"stack up until all ready, {args.runs} runs each (seconds)")
    print(f"| {'case':<34} | median | min   | max   |")
    print(f"|{'-' * 36}|--------|-------|-------|")
    for name, values in rows:
        print(
            f"| {name:<34} | {statistics.median(values):6.2f} | {min(values):5.2f} |"
            f" {max(values):5.2f} |"
        )
    emit(
        args.json,
        [
            Figure(
                f"stack up, {name}",
                statistics.median(values),
                "s",
                "< 15" if "durable" in name else None,
            )
            for name, values in rows
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
