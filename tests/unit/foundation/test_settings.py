"""Settings: defaults, derived values, and start-up errors that name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from whisperstream.errors import SettingsError
from whisperstream.settings import load_settings


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("STACK_POSTGRES_PORT", "6543")
    settings = load_settings()
    assert settings.kafka_host_port == ("127.0.0.1", 9092)
    assert settings.effective_database_url == "postgresql://postgres@127.0.0.1:6543/whisperstream"
    assert settings.whisper_engine == "faster-whisper"


def test_seed_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "3")
    monkeypatch.setenv("MAX_UPLOAD_SIZE_MB", "7")
    monkeypatch.setenv("WHISPER_ENGINE", "openai-whisper")
    monkeypatch.setenv("S3_SECRET_KEY", "s3cr3t")
    settings = load_settings()
    assert settings.worker_concurrency == 3
    assert settings.max_upload_size_mb == 7
    assert settings.whisper_engine == "openai-whisper"
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WORKER_CONCURRENCY", "zero", "WORKER_CONCURRENCY"),
        ("WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
        ("WHISPER_ENGINE", "tensorflow", "'faster-whisper' or 'openai-whisper'"),
        ("API_PORT", "70000", "less than or equal to 65535"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
        ("S3_ENDPOINT", "ftp://x", "http:// or https://"),
        ("DATABASE_URL", "sqlite:///x.db", "postgresql://"),
    ],
)
def test_invalid_value_names_variable_and_what_it_accepts(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value)
    assert expected in str(info.value)


def test_pool_size_may_not_exceed_max(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_POOL_SIZE", "3")
    monkeypatch.setenv("MODEL_POOL_MAX_SIZE", "2")
    with pytest.raises(SettingsError, match="MODEL_POOL_MAX_SIZE"):
        load_settings()


def test_cli_stops_at_start_with_a_clear_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "whisperstream.cli.main", "stack", "status"],
        env={"PATH": "/usr/bin:/bin", "API_PORT": "not-a-port"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "API_PORT" in result.stderr
    assert "not-a-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_worker_tuning_errors_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_workers.config import load_tuning  # noqa: PLC0415

    monkeypatch.setenv("JOB_SOFT_TIME_LIMIT_S", "soon")
    with pytest.raises(SettingsError) as info:
        load_tuning()
    assert "JOB_SOFT_TIME_LIMIT_S (got 'soon')" in str(info.value)
    assert "valid number" in str(info.value)
