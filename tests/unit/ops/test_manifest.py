"""Backfill manifests and deterministic job ids, without any service."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from ops.kafka.backfill import build_request, plan_job
from ops.kafka.manifest import ManifestError, read_manifest
from schemas.events import AudioRef, TranscriptionOptions
from whisperstream.settings import load_settings


def test_csv_and_jsonl_read_the_same_rows(tmp_path: Path) -> None:
    csv_file = tmp_path / "m.csv"
    csv_file.write_text(
        "audio,priority,model,language,word_timestamps\n"
        "s3://audio/a.flac,high,base,en,true\n"
        "s3://audio/b.flac,,,,\n"
    )
    jsonl_file = tmp_path / "m.jsonl"
    jsonl_file.write_text(
        '{"audio": "s3://audio/a.flac", "priority": "high", "model": "base",'
        ' "language": "en", "word_timestamps": true}\n\n'
        '{"audio": "s3://audio/b.flac"}\n'
    )
    from_csv = [row for _, row in read_manifest(csv_file)]
    from_jsonl = [row for _, row in read_manifest(jsonl_file)]
    assert from_csv == from_jsonl
    assert from_csv[0].priority == "high"
    assert from_csv[0].word_timestamps is True
    assert from_csv[1].model is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("audio,priority\ns3://audio/a.flac,urgent\n", "m.csv:2: priority"),
        ("audio,colour\ns3://audio/a.flac,red\n", "m.csv:2: colour"),
        ("priority\nhigh\n", "m.csv:2: audio"),
        (
            "audio,beam_size\ns3://audio/a.flac,0\n",
            "m.csv:2: beam_size: .*greater than or equal to 1",
        ),
        (
            "audio,beam_size\ns3://audio/a.flac,11\n",
            "m.csv:2: beam_size: .*less than or equal to 10",
        ),
        ("audio,beam_size\ns3://audio/a.flac,2.5\n", "m.csv:2: beam_size: .*valid integer"),
        (
            "audio,temperature\ns3://audio/a.flac,1.2\n",
            "m.csv:2: temperature: .*less than or equal to 1",
        ),
        (
            "audio,temperature\ns3://audio/a.flac,-0.1\n",
            "m.csv:2: temperature: .*greater than or equal to 0",
        ),
        ("audio,temperature\ns3://audio/a.flac,nan\n", "m.csv:2: temperature: .*finite number"),
        ("audio,vad_filter\ns3://audio/a.flac,maybe\n", "m.csv:2: vad_filter: .*valid boolean"),
    ],
)
def test_invalid_rows_name_line_and_field(tmp_path: Path, content: str, expected: str) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(content)
    with pytest.raises(ManifestError, match=expected):
        read_manifest(manifest)


def test_job_ids_are_deterministic_and_distinct(tmp_path: Path) -> None:
    (tmp_path / "one.wav").write_bytes(b"RIFF one")
    (tmp_path / "two.wav").write_bytes(b"RIFF two")
    (tmp_path / "copy.wav").write_bytes(b"RIFF one")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "audio,owner,idempotency_key\n"
        "one.wav,,\n"
        "two.wav,,\n"
        "copy.wav,,\n"
        "s3://audio/x.flac,,\n"
        "s3://audio/x.flac,team-b,\n"
        "s3://audio/x.flac,,key-1\n"
    )

    def ids() -> list[str]:
        return [plan_job(line, row, tmp_path).job_id for line, row in read_manifest(manifest)]

    first = ids()
    assert first == ids()
    one, two, copy, s3, other_owner, keyed = first
    assert one == copy  # the same content is the same job
    assert len({one, two, s3, other_owner, keyed}) == 5
    assert all(uuid.UUID(job_id).version == 5 for job_id in first)


def test_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio\nnowhere.wav\n")
    (line, row), *_ = read_manifest(manifest)
    with pytest.raises(ManifestError, match=r"nowhere\.wav"):
        plan_job(line, row, tmp_path)


def test_decoding_options_reach_the_request(tmp_path: Path) -> None:
    csv_file = tmp_path / "m.csv"
    csv_file.write_text(
        "audio,beam_size,temperature,vad_filter\n"
        "s3://audio/a.flac,3,0.4,true\n"
        "s3://audio/b.flac,,,\n"
    )
    jsonl_file = tmp_path / "m.jsonl"
    jsonl_file.write_text(
        '{"audio": "s3://audio/a.flac", "beam_size": 3, "temperature": 0.4,'
        ' "vad_filter": true}\n'
        '{"audio": "s3://audio/b.flac"}\n'
    )
    rows = read_manifest(csv_file)
    assert [row for _, row in rows] == [row for _, row in read_manifest(jsonl_file)]
    audio = AudioRef("s3://audio/a.flac", 1, "0" * 64, "audio/flac", "a.flac")
    chosen, defaulted = (
        build_request(plan_job(line, row, tmp_path), audio, load_settings()).options
        for line, row in rows
    )
    assert chosen == TranscriptionOptions(beam_size=3, temperature=0.4, vad_filter=True)
    assert defaulted == TranscriptionOptions()  # null beam: the workers' one default
