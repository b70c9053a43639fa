"""Container health probe: ``python -m whisperstream.probe [http URL | file PATH MAX_AGE_S]``.

Exit 0 when healthy, 1 otherwise, with one line saying why. Standard library only, so a
probe every few seconds costs little. Without arguments it reads ``WHISPERSTREAM_PROBE``
(the same words, space separated), else probes the API at ``API_PORT``'s ``/health``.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

_TIMEOUT_S = 3.0


def probe_http(url: str) -> str | None:
    """None when ``url`` answers 200; else why not."""
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310 - our own URL
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url} did not answer: {exc}"
    return None if status == 200 else f"{url} answered {status}"


def probe_file(path: Path, max_age_s: float) -> str | None:
    """None when ``path`` was modified within ``max_age_s``; else why not."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"{path} does not exist yet"
    return None if age <= max_age_s else f"{path} is {age:.0f} s old (limit {max_age_s:g} s)"


def probe(args: Sequence[str]) -> str | None:
    if not args:
        words = os.environ.get("WHISPERSTREAM_PROBE", "").split()
        port = os.environ.get("API_PORT", "8000")
        args = words or ["http", f"http://127.0.0.1:{port}/health"]
    match list(args):
        case ["http", url]:
            return probe_http(url)
        case ["file", path, max_age] if max_age.replace(".", "", 1).isdigit():
            return probe_file(Path(path), float(max_age))
        case _:
            return f"usage: probe [http URL | file PATH MAX_AGE_S], got {' '.join(args)!r}"


def main(argv: Sequence[str] | None = None) -> int:
    problem = probe(sys.argv[1:] if argv is None else argv)
    if problem is None:
        return 0
    print(problem, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
