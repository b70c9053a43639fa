"""deploy/kubernetes: every overlay rendered (tests/support/kustomize.py) and each manifest
validated against the Kubernetes API schemas (kubernetes-validate, strict) or, for KEDA's
kinds, against KEDA's CRD schemas (vendored, tests/data/schemas/NOTICE.md); then checked
against the services, the settings and the autoscaling rules. No cluster here: nothing
is applied."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import certifi
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import typer

from stream_workers.config import WorkerTuning
from stream_workers.faust_app import app_id
from tests.support.kustomize import (
    Manifest,
    UnsupportedKustomizationError,
    render,
    strategic_merge,
)
from whisperstream.cli.main import app
from whisperstream.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[3]
OVERLAYS = REPO / "deploy" / "kubernetes" / "overlays"
SCHEMAS = REPO / "tests" / "data" / "schemas"
KUBERNETES_VERSIONS = ("1.29", "1.37")  # the oldest and newest we check against
KEDA_SCHEMAS = {
    "ScaledObject": "keda-scaledobject.json",
    "TriggerAuthentication": "keda-triggerauthentication.json",
}
SERVICES = ("api", "worker", "projector", "notifier")


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as the API server's strict field validation
    does (a CRD's structural schema would otherwise prune a misspelt field silently)."""
    if isinstance(schema, dict):
        tightened = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            tightened["additionalProperties"] = False
        return tightened
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def keda_validator(kind: str) -> jsonschema.protocols.Validator:
    schema = strict(json.loads((SCHEMAS / KEDA_SCHEMAS[kind]).read_text()))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta, checked by the server
    return jsonschema.Draft7Validator(schema)


def validate(manifest: Manifest) -> list[str]:
    """Why ``manifest`` is invalid, one line per problem; empty when valid."""
    if manifest["apiVersion"].startswith("keda.sh/"):
        errors = keda_validator(manifest["kind"]).iter_errors(manifest)
        return [f"{list(e.path)}: {e.message}" for e in errors]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{version} {list(exc.path)}: {exc.message}")
    return problems


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def container(manifests: list[Manifest], service: str) -> dict[str, Any]:
    deployment = by_kind(manifests, "Deployment")[f"whisperstream-{service}"]
    found: dict[str, Any] = pod_spec(deployment)["containers"][0]
    return found


def env_of(item: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in item.get("env", []) if "value" in e}


def config(manifests: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = by_kind(manifests, "ConfigMap")["whisperstream-config"]["data"]
    return data


def settings_of(manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch) -> Settings:
    secret = by_kind(manifests, "Secret")["whisperstream-secrets"]["stringData"]
    for name, value in {**config(manifests), **secret}.items():
        monkeypatch.setenv(name, value)
    # the CA is mounted from a Secret in the cluster; here any real CA bundle stands in
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", certifi.where())
    return load_settings()


@pytest.fixture(params=sorted(p.name for p in OVERLAYS.iterdir()))
def overlay(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(OVERLAYS / request.param)


# -- schemas ------------------------------------------------------------------------


def test_every_rendered_manifest_is_valid(overlay: list[Manifest]) -> None:
    problems = {f"{m['kind']}/{m['metadata']['name']}": validate(m) for m in overlay}
    assert {name: found for name, found in problems.items() if found} == {}


def test_it_has_every_part_the_deployment_needs(overlay: list[Manifest]) -> None:
    kinds = {(m["kind"], m["metadata"]["name"]) for m in overlay}
    wanted = {("Deployment", f"whisperstream-{s}") for s in SERVICES} | {
        ("PodDisruptionBudget", f"whisperstream-{s}") for s in SERVICES
    }
    wanted |= {
        ("Job", "whisperstream-init"),
        ("Service", "whisperstream-api"),
        ("HorizontalPodAutoscaler", "whisperstream-api"),
        ("ConfigMap", "whisperstream-config"),
        ("Secret", "whisperstream-secrets"),
        ("ScaledObject", "whisperstream-worker"),
        ("TriggerAuthentication", "whisperstream-kafka"),
    }
    assert wanted <= kinds
    assert all(
        m["metadata"].get("namespace") == "whisperstream"
        for m in overlay
        if m["kind"] != "Namespace"
    )


def test_the_validation_really_checks() -> None:
    manifests = render(OVERLAYS / "cpu")
    deployment = copy.deepcopy(by_kind(manifests, "Deployment")["whisperstream-worker"])
    deployment["spec"]["replica"] = 2  # misspelt
    scaled = copy.deepcopy(by_kind(manifests, "ScaledObject")["whisperstream-worker"])
    scaled["spec"]["maxReplicas"] = 4  # the HPA's name, not KEDA's
    auth = copy.deepcopy(by_kind(manifests, "TriggerAuthentication")["whisperstream-kafka"])
    del auth["spec"]["secretTargetRef"][0]["key"]
    for broken in (deployment, scaled, auth):
        assert validate(broken), broken["kind"]


# -- services, probes, shutdown -----------------------------------------------------


def test_each_service_runs_a_command_that_exists(overlay: list[Manifest]) -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for service in SERVICES:
        assert container(overlay, service)["args"] == [service]
        assert service in commands
    init = pod_spec(by_kind(overlay, "Job")["whisperstream-init"])["containers"][0]
    for step in init["args"][0].split(" && "):
        group, _, sub = step.removeprefix("whisperstream ").partition(" ")
        assert group in commands, step
        assert not sub or sub in commands[group].commands, step


def test_every_image_is_the_released_one(overlay: list[Manifest]) -> None:
    for manifest in overlay:
        if "template" in manifest.get("spec", {}):
            for item in pod_spec(manifest)["containers"]:
                assert item["image"].startswith("registry.example.com/whisperstream:"), item


def test_probes_read_what_each_service_provides(overlay: list[Manifest]) -> None:
    api = container(overlay, "api")
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health"
    for service in ("worker", "projector"):
        item = container(overlay, service)
        beat = env_of(item)["WHISPERSTREAM_HEARTBEAT_FILE"]
        for probe in (item["readinessProbe"], item["livenessProbe"]):
            command = probe["exec"]["command"]
            assert command[:5] == ["python", "-m", "whisperstream.probe", "file", beat]
            assert (
                float(command[5]) >= 2 * WorkerTuning.model_fields["heartbeat_interval_s"].default
            )
    notifier = container(overlay, "notifier")
    port = int(config(overlay)["NOTIFIER_METRICS_PORT"])
    assert notifier["ports"] == [{"name": "metrics", "containerPort": port}]
    assert notifier["readinessProbe"]["httpGet"]["port"] == "metrics"


def test_workers_get_longer_to_stop_than_their_grace_period(overlay: list[Manifest]) -> None:
    grace_s = float(config(overlay)["SHUTDOWN_GRACE_S"])
    worker = by_kind(overlay, "Deployment")["whisperstream-worker"]
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > grace_s


def test_every_container_requests_resources(overlay: list[Manifest]) -> None:
    for manifest in overlay:
        if "template" in manifest.get("spec", {}):
            for item in pod_spec(manifest)["containers"]:
                assert {"cpu", "memory"} <= set(item["resources"]["requests"]), item["name"]
                assert "memory" in item["resources"]["limits"], item["name"]


def test_disruption_budgets_select_their_deployments(overlay: list[Manifest]) -> None:
    deployments = by_kind(overlay, "Deployment")
    for name, budget in by_kind(overlay, "PodDisruptionBudget").items():
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


# -- configuration ------------------------------------------------------------------


def test_the_configuration_is_made_of_settings_that_load(
    overlay: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {n.upper() for n in Settings.model_fields} | {
        n.upper() for n in WorkerTuning.model_fields
    }
    secret = by_kind(overlay, "Secret")["whisperstream-secrets"]["stringData"]
    assert set(config(overlay)) | set(secret) <= known
    settings = settings_of(overlay, monkeypatch)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"


def test_every_secret_and_config_map_referenced_exists(overlay: list[Manifest]) -> None:
    data = {
        m["metadata"]["name"]: set(m.get("stringData", {})) | set(m.get("data", {}))
        for m in overlay
        if m["kind"] in ("Secret", "ConfigMap")
    }
    for manifest in overlay:
        if "template" not in manifest.get("spec", {}):
            continue
        spec = pod_spec(manifest)
        for item in spec["containers"]:
            for source in item.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                assert ref["name"] in data
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in data
    auth = by_kind(overlay, "TriggerAuthentication")["whisperstream-kafka"]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in data[ref["name"]], ref


# -- autoscaling ----------------------------------------------------------------------


def test_keda_scales_the_workers_on_their_groups_lag(
    overlay: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_of(overlay, monkeypatch)
    worker = by_kind(overlay, "Deployment")["whisperstream-worker"]
    assert "replicas" not in worker["spec"]  # KEDA owns the count
    scaled = by_kind(overlay, "ScaledObject")["whisperstream-worker"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "whisperstream-worker"
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    assert scaled["maxReplicaCount"] <= settings.topic_partitions
    group = app_id(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    topics = []
    for trigger in scaled["triggers"]:
        assert trigger["type"] == "kafka"
        assert trigger["authenticationRef"]["name"] == "whisperstream-kafka"
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == group
        assert metadata["bootstrapServers"] == settings.kafka_bootstrap_servers
        assert int(metadata["lagThreshold"]) >= 1
        assert metadata["offsetResetPolicy"] == "earliest"  # as the workers' consumer
        topics.append(metadata["topic"])
    assert sorted(topics) == sorted(settings.request_topics)


def test_the_api_scales_on_cpu_with_an_hpa(overlay: list[Manifest]) -> None:
    api = by_kind(overlay, "Deployment")["whisperstream-api"]
    assert "replicas" not in api["spec"]  # the HPA owns the count
    hpa = by_kind(overlay, "HorizontalPodAutoscaler")["whisperstream-api"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "whisperstream-api",
    }
    assert hpa["minReplicas"] >= 2
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"


def test_the_gpu_overlay_gives_each_worker_a_gpu_and_the_cuda_image() -> None:
    manifests = render(OVERLAYS / "gpu")
    worker = container(manifests, "worker")
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["image"].endswith("-cuda")
    env = env_of(worker)
    assert env["WHISPER_DEVICE"] == "cuda"
    # the base's variables are kept: the patch merged the env list by name
    assert env["WHISPERSTREAM_HEARTBEAT_FILE"] == "/var/lib/whisperstream/heartbeat"
    assert worker["env"][0]["name"] == "WORKER_ID"
    assert container(manifests, "api")["image"].endswith("-cpu")
    tolerations = pod_spec(by_kind(manifests, "Deployment")["whisperstream-worker"])["tolerations"]
    assert tolerations[0]["key"] == "nvidia.com/gpu"


# -- the renderer itself --------------------------------------------------------------


def test_the_renderer_merges_named_lists_and_refuses_what_it_does_not_know(
    tmp_path: Path,
) -> None:
    base = {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "args": ["p"]}]}
    patch = {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}], "args": ["q"]}]}
    assert strategic_merge(base, patch) == {
        "containers": [
            {
                "name": "a",
                "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                "args": ["q"],
            }
        ]
    }
    with pytest.raises(UnsupportedKustomizationError):
        strategic_merge(base, {"$patch": "delete"})
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(UnsupportedKustomizationError, match="configMapGenerator"):
        render(tmp_path)
