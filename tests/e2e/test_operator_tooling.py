"""Issue 7 end to end: submit with --wait, backfill twice, and a redrive after a fix."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest

from stream_workers.models.catalog import ModelCatalog
from tests.support.system import System

pytestmark = pytest.mark.e2e
REFERENCE = "ask not what your country can do for you"
SRT_BLOCK = re.compile(
    r"^(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.+)$", re.MULTILINE
)


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z ]", " ", text.lower()).split())


def test_submit_wait_writes_a_valid_srt(system: System, jfk_flac: Path, tmp_path: Path) -> None:
    result = system.cli(
        "submit", str(jfk_flac), "--wait", "--format", "srt", "--output", str(tmp_path)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    srt = (tmp_path / "jfk.srt").read_text()
    blocks = SRT_BLOCK.findall(srt)
    assert blocks, srt
    assert [int(b[0]) for b in blocks] == list(range(1, len(blocks) + 1))
    assert all(start <= end for _, start, end, _ in blocks)
    assert REFERENCE in _words(" ".join(b[3] for b in blocks))


def test_backfill_twice_gives_one_job_per_row(
    system: System, jfk_flac: Path, tmp_path: Path
) -> None:
    owner = f"backfill-{uuid.uuid4().hex[:8]}"
    shutil.copy(jfk_flac, tmp_path / "first.flac")
    (tmp_path / "second.flac").write_bytes(jfk_flac.read_bytes())
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(
        f'{{"audio": "first.flac", "owner": "{owner}"}}\n'
        f'{{"audio": "second.flac", "owner": "{owner}", "idempotency_key": "row-2",'
        ' "priority": "high"}\n'
    )
    first = system.cli("backfill", str(manifest))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "published 2" in first.stdout
    job_ids = re.findall(r"line \d+: ([0-9a-f-]{36}) published", first.stdout)
    assert len(set(job_ids)) == 2
    for job_id in job_ids:
        assert system.wait_for_job(job_id)["status"] == "completed"

    second = system.cli("backfill", str(manifest))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "published 0, skipped 2" in second.stdout

    with system.http() as client:
        page = client.get("/jobs", params={"limit": 100}).json()
    mine = [job for job in page["items"] if job["job_id"] in job_ids]
    assert sorted(job["job_id"] for job in mine) == sorted(job_ids)
    assert all(job["status"] == "completed" for job in mine)


def test_failed_job_completes_after_fix_and_redrive(system: System, jfk_flac: Path) -> None:
    model = f"custom-{uuid.uuid4().hex[:6]}"
    with system.http() as client:
        accepted = client.post(
            "/transcribe",
            data={"model": model},
            files={"file": ("jfk.flac", jfk_flac.read_bytes(), "audio/flac")},
        )
    assert accepted.status_code == 202, accepted.text
    failed_id = accepted.json()["job_id"]
    failed = system.wait_for_job(failed_id)
    assert failed["status"] == "failed"
    assert model in (failed["error"]["message"] or "")

    listed = system.cli("dlq", "list")
    assert failed_id in listed.stdout
    error_type = failed["error"]["type"]

    # the fix: install the model under that name (a CTranslate2 directory)
    tiny = ModelCatalog(None, system.model_dir / ".cache").resolve("faster-whisper", "tiny.en")
    shutil.copytree(tiny, system.model_dir / model)

    redrive = system.cli("dlq", "redrive", "--error-type", error_type)
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    row = next(line for line in redrive.stdout.splitlines() if failed_id in line)
    assert "redriven" in row
    new_id = next(j for j in re.findall(r"[0-9a-f-]{36}", row) if j != failed_id)
    done = system.wait_for_job(new_id)
    assert done["status"] == "completed", done
    assert REFERENCE in _words(done["result"]["text"])
    assert done["model_used"] == model
    assert system.wait_for_job(failed_id)["status"] == "failed"
    assert failed_id not in system.cli("dlq", "list").stdout
