"""A worker started anywhere leaves no faust folder in the directory it was started from."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from stream_workers.config import load_tuning
from stream_workers.faust_app import build_app
from whisperstream.settings import Settings


def test_faust_folders_go_to_the_temporary_directory_not_the_working_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    service = SimpleNamespace(settings=Settings(), tuning=load_tuning())
    app = build_app(service)  # type: ignore[arg-type]
    app._create_directories()  # what faust does when the worker starts
    assert list(tmp_path.iterdir()) == []
    assert Path(app.conf.datadir).parent == Path(tempfile.gettempdir())
