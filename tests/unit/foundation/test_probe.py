"""The container probe and the heartbeat file it reads."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from whisperstream.heartbeat_file import HeartbeatFile
from whisperstream.probe import main, probe


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_probe_wants_a_200(server: str) -> None:
    assert probe(["http", f"{server}/health"]) is None
    assert probe(["http", f"{server}/other"]) == f"{server}/other answered 503"
    nothing = probe(["http", "http://127.0.0.1:1/health"])
    assert nothing is not None
    assert "did not answer" in nothing


def test_without_arguments_it_reads_whisperstream_probe_or_the_api_port(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WHISPERSTREAM_PROBE", raising=False)
    monkeypatch.setenv("API_PORT", server.rsplit(":", 1)[1])
    assert probe([]) is None
    monkeypatch.setenv("WHISPERSTREAM_PROBE", f"http {server}/other")
    assert probe([]) == f"{server}/other answered 503"


def test_file_probe_wants_a_recent_file(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    assert probe(["file", str(path), "30"]) == f"{path} does not exist yet"
    HeartbeatFile(path).beat()
    assert probe(["file", str(path), "30"]) is None
    an_hour_ago = time.time() - 3600
    os.utime(path, (an_hour_ago, an_hour_ago))
    stale = probe(["file", str(path), "30"])
    assert stale is not None
    assert "s old (limit 30 s)" in stale


def test_bad_arguments_are_a_usage_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file", "/x", "soon"]) == 1
    assert "usage: probe" in capsys.readouterr().err


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    path = tmp_path / "beat"
    HeartbeatFile(path).beat()
    command = [sys.executable, "-m", "whisperstream.probe", "file", str(path), "60"]
    assert subprocess.run(command, check=False, timeout=60).returncode == 0
    path.unlink()
    done = subprocess.run(command, check=False, timeout=60, capture_output=True, text=True)
    assert (done.returncode, done.stderr.strip()) == (1, f"{path} does not exist yet")


def test_heartbeat_file_touches_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "beat"
    beats = HeartbeatFile(path, min_interval_s=3600)
    beats.beat()  # creates the folder and the file
    os.utime(path, (0, 0))
    beats.beat()  # within the interval: not touched again
    assert path.stat().st_mtime == 0
    HeartbeatFile(None).beat()  # no path: nothing to do, no error
