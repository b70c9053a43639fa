"""What every benchmark script shares: named figures, printed and optionally saved as JSON.

`bench/run_all.py` (`make bench`) runs each script several times with `--json PATH` and
turns the figures into docs/BENCHMARKS.md with the median, min and max of each.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    name: str
    value: float
    unit: str
    target: str | None = None
    """What the issue asks for, e.g. ">= 100"; None where no target was set."""


def nearest_rank(values: list[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank, in the values' own unit; NaN if none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the figures to this JSON file"
    )


def emit(json_path: Path | None, figures: list[Figure]) -> None:
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(f) for f in figures], indent=2))


def load(json_path: Path) -> list[Figure]:
    return [Figure(**item) for item in json.loads(json_path.read_text())]
