"""The table of released schema fingerprints, ``schemas/fingerprints.json``.

``python -m schemas.fingerprints --write`` regenerates it after a new version is added;
without ``--write`` it checks the table and exits 1 when it is stale. A unit test runs
the same check, so an edit to a released ``.avsc`` that changes its canonical form is
caught. (Docs and defaults are not part of the canonical form.)
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

from schemas.history import load_history

Table = dict[str, dict[str, str]]

TABLE_NAME = "fingerprints.json"


def computed_table() -> Table:
    """{event name: {version: fingerprint hex}} as the ``.avsc`` files give it.

    The hex is the 8 bytes as they appear in the single-object header (little-endian).
    """
    return {
        event: {str(v.version): v.fingerprint.hex() for v in versions}
        for event, versions in load_history().items()
    }


def checked_in_table() -> Table:
    text = (resources.files("schemas") / TABLE_NAME).read_text(encoding="utf-8")
    table: Table = json.loads(text)
    return table


def render(table: Table) -> str:
    return json.dumps(table, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.fingerprints", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite fingerprints.json")
    args = parser.parse_args(argv)
    table = computed_table()
    if args.write:
        Path(__file__).with_name(TABLE_NAME).write_text(render(table), encoding="utf-8")
        return 0
    if checked_in_table() != table:
        sys.stderr.write(f"{TABLE_NAME} is stale or a released schema changed:\n{render(table)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
