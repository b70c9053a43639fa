"""The end of a whole-system run's command line (bench/chaos.py, bench/scale_out.py): the
state directory kept for a failed run, the table printed, the numbers saved as JSON."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def finish_run(
    state_dir: Path,
    report: dict[str, Any],
    print_table: Callable[[dict[str, Any]], None],
    json_path: Path | None,
) -> int:
    """Keep `state_dir` (logs, data) only when the run failed; the exit code."""
    failed = bool(report["failures"])
    if failed:
        print(f"state and logs kept in {state_dir}")
    else:
        shutil.rmtree(state_dir, ignore_errors=True)
    print_table(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))
    return 1 if failed else 0
