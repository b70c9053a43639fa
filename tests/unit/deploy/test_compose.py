"""deploy/compose.yaml: valid against the Compose specification's JSON schema (vendored in
tests/data/schemas, see NOTICE there), and consistent with the services and settings.
(No Docker here: the file is validated, not run.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from stream_workers.config import WorkerTuning
from whisperstream.cli.main import app
from whisperstream.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
SCHEMA = REPO / "tests" / "data" / "schemas" / "compose-spec.json"
# variables of the images we run beside ours, which whisperstream.env also feeds
FOREIGN_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"} | {
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
}
OUR_IMAGE = "whisperstream:latest"  # WHISPERSTREAM_IMAGE's default
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default} substitution (and $$ for a literal $)."""
    substituted = _VARIABLE.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), text)
    return substituted.replace("$$", "$")


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    loaded = yaml.safe_load(interpolate((DEPLOY / "compose.yaml").read_text(), env or {}))
    assert isinstance(loaded, dict)
    return loaded


def env_file() -> dict[str, str]:
    lines = (DEPLOY / "whisperstream.env").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name: value for name, value in pairs}  # noqa: C416 - name the two halves


def ours(services: dict[str, Any]) -> dict[str, Any]:
    return {name: s for name, s in services.items() if s["image"] == OUR_IMAGE}


def test_it_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_schema_is_really_checking() -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = compose()
    broken["services"]["api"]["deploy"]["replicas"] = "two"
    broken["services"]["worker"]["stop_grace_period"] = {"seconds": 45}
    broken["services"]["projector"]["healthcheck"] = {"tset": ["CMD", "true"]}
    messages = [
        e.message for e in jsonschema.validators.validator_for(schema)(schema).iter_errors(broken)
    ]
    assert len(messages) >= 3


def test_it_has_the_stack_the_init_job_and_every_service() -> None:
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["minio"]["image"].startswith("minio/minio:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["init"]["command"] == [
        "whisperstream topics apply && whisperstream buckets apply && whisperstream migrate"
    ]
    for name in ("kafka", "minio", "postgres"):
        assert services["init"]["depends_on"][name] == {"condition": "service_healthy"}
    commands = {name: s.get("command") for name, s in ours(services).items()}
    assert {name: commands[name] for name in ("api", "worker", "projector", "notifier")} == {
        "api": ["api"],
        "worker": ["worker"],
        "projector": ["projector"],
        "notifier": ["notifier"],
    }
    assert services["api"]["deploy"]["replicas"] == 2
    for name in ("api", "worker", "projector", "notifier"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }


def test_every_service_command_exists() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name, service in ours(compose()["services"]).items():
        if name == "init":
            steps = service["command"][0].split(" && ")
            for step in steps:
                group, _, sub = step.removeprefix("whisperstream ").partition(" ")
                assert group in commands, step
                assert not sub or sub in commands[group].commands, step
        else:
            assert service["command"][0] in commands, name


def test_every_state_is_on_a_named_volume() -> None:
    document = compose()
    services, volumes = document["services"], document["volumes"]
    for name, target in (
        ("kafka", "/var/lib/kafka/data"),
        ("minio", "/data"),
        ("postgres", "/var/lib/postgresql/data"),
    ):
        mounts = dict(v.split(":", 1)[::-1] for v in services[name]["volumes"])
        assert mounts[target] in volumes, name


def test_workers_get_more_time_to_stop_than_their_grace_period() -> None:
    grace_s = float(env_file()["SHUTDOWN_GRACE_S"])
    assert grace_s == WorkerTuning.model_fields["shutdown_grace_s"].default
    stop = compose()["services"]["worker"]["stop_grace_period"]
    assert int(stop.removesuffix("s")) > grace_s


def test_every_variable_of_the_env_file_is_a_setting_and_they_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = env_file()
    known = {name.upper() for name in Settings.model_fields} | {
        name.upper() for name in WorkerTuning.model_fields
    }
    assert set(env) - known - FOREIGN_VARIABLES == set()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "kafka:9092"
    assert settings.database_url is not None
    assert settings.database_url.endswith("@postgres:5432/whisperstream")
    assert env["S3_SECRET_KEY"] == env["MINIO_ROOT_PASSWORD"]
    assert f":{env['POSTGRES_PASSWORD']}@" in env["DATABASE_URL"]


def test_probes_point_at_what_each_service_serves() -> None:
    env, services = env_file(), compose()["services"]
    assert services["notifier"]["environment"]["WHISPERSTREAM_PROBE"] == (
        f"http http://127.0.0.1:{env['NOTIFIER_METRICS_PORT']}/metrics"
    )
    for name in ("worker", "projector"):
        environment = services[name]["environment"]
        beat = environment["WHISPERSTREAM_HEARTBEAT_FILE"]
        assert environment["WHISPERSTREAM_PROBE"].split()[:2] == ["file", beat]
