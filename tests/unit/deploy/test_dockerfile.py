"""The Dockerfile: hadolint-clean, non-root, a health check, every package copied in, and
every service command it names exists. (No Docker here: the image is not built.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import typer

from whisperstream.cli.main import app

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def _hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hadolint_finds_nothing() -> None:
    done = _hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_really_linting(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN cd /tmp && pip install requests\n")
    done = _hadolint(bad)
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # an untagged base image


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest)
        for word, _, rest in (line.partition(" ") for line in lines)
        if word and not word.startswith("#")
    ]


def test_the_runtime_stage_runs_as_a_user_with_a_health_check_and_tini() -> None:
    instructions = _instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 3  # baked-models, build, runtime
    runtime = instructions[max(i for i, (word, _) in enumerate(instructions) if word == "FROM") :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert any(word == "HEALTHCHECK" and "whisperstream.probe" in rest for word, rest in runtime)
    assert ("ENTRYPOINT", '["tini", "--", "whisperstream"]') in runtime
    args = {rest.split("=")[0] for word, rest in instructions if word == "ARG"}
    assert {"TORCH_VARIANT", "TORCH_VERSION", "MODEL_PACKS"} <= args


def test_torch_is_the_version_the_makefile_tests_with() -> None:
    pinned = re.search(r"TORCH_SPEC \?= torch==(\S+)", (REPO / "Makefile").read_text())
    assert pinned is not None
    assert f"ARG TORCH_VERSION={pinned.group(1)}" in DOCKERFILE.read_text()


def test_every_package_of_the_project_is_copied_in_and_not_docker_ignored() -> None:
    find = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = [name.rstrip("*") for name in find["packages"]["find"]["include"]]
    copied = {rest.split()[0] for word, rest in _instructions() if word == "COPY"}
    ignored_but_kept = (REPO / ".dockerignore").read_text().splitlines()
    for package in packages:
        assert package in copied, f"{package} is not copied into the image"
        assert f"!{package}/" in ignored_but_kept, f"{package} is excluded by .dockerignore"


def test_every_service_command_the_image_names_exists() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    header = DOCKERFILE.read_text().split("\n\n")[0]
    named = re.search(r"docker run IMAGE (.+)", header)
    assert named is not None
    for service in named.group(1).split(" | "):
        words = service.split()
        command = commands[words[0]]
        if len(words) > 1:
            assert words[1] in command.commands, service
