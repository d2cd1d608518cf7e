"""deploy/kubernetes/ and the `docker compose` commands of README.md.

Nothing here talks to a cluster or to Docker: the manifests are parsed, their spectune command
lines go through spectune's own argument parser, and the README's compose commands are checked
against the services of docker-compose.yml.
"""

from __future__ import annotations

import argparse
import re
import shlex

import pytest
import yaml
from deploy_files import DEPLOY, ENV_EXAMPLE, ROOT, read_env_file, resolve_compose, seconds

from spectune.study.cli import build_parser

KUBERNETES = DEPLOY / "kubernetes"


def manifest(name: str) -> dict:
    [document] = list(yaml.safe_load_all((KUBERNETES / name).read_text()))
    return document


def spectune_arguments(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` (after ``spectune``) as the CLI would; fails the test when it refuses."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"spectune refuses: {shlex.join(argv)}")


def script_commands(script: str) -> list[list[str]]:
    """The commands of a shell script made of simple lines (continuations joined)."""
    joined = script.replace("\\\n", " ")
    return [shlex.split(line) for line in joined.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def compose() -> dict:
    return resolve_compose({**read_env_file(ENV_EXAMPLE), "POSTGRES_PASSWORD": "0123abcd"})


def test_worker_job(compose: dict) -> None:
    job = manifest("worker-job.yaml")
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    spec = job["spec"]
    assert spec["parallelism"] >= 1 and "completions" not in spec  # work-queue: exit 0 = done
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure"
    compose_grace = seconds(compose["services"]["worker"]["stop_grace_period"])
    assert pod["terminationGracePeriodSeconds"] == compose_grace  # the same arithmetic
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert "command" not in container  # the image's ENTRYPOINT: spectune
    args = spectune_arguments(container["args"])
    assert args.command == "worker" and args.gpu == "auto"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["envFrom"] == [{"secretRef": {"name": "spectune-storage"}}]
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True and "/runs" in mounts


def test_init_job() -> None:
    job = manifest("init-job.yaml")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "OnFailure" and pod["securityContext"]["runAsNonRoot"]
    [container] = pod["containers"]
    assert container["command"] == ["/bin/sh", "-ec"]
    commands = script_commands(container["args"][0])
    assert [c[:3] for c in commands] == [
        ["spectune", "storage", "init"],
        ["spectune", "study", "create"],
    ]
    for command in commands:
        spectune_arguments(command[1:])
    assert container["envFrom"] == [{"secretRef": {"name": "spectune-storage"}}]


def test_manifests_agree_and_hold_no_secret() -> None:
    worker, init = manifest("worker-job.yaml"), manifest("init-job.yaml")
    images = {
        c["image"] for m in (worker, init) for c in m["spec"]["template"]["spec"]["containers"]
    }
    assert len(images) == 1 and not next(iter(images)).endswith(":latest")
    study = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    script = init["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert f"--study-name {study[study.index('--study-name') + 1]} " in script
    for document in (worker, init):  # the URL, with its password, lives in the Secret only
        assert "postgresql://" not in yaml.safe_dump(document)
        assert "PASSWORD" not in yaml.safe_dump(document).upper()


def readme_compose_commands() -> list[list[str]]:
    """``docker compose ...`` lines of README.md's code blocks (comments and VAR=... dropped)."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]
            if words[:2] == ["docker", "compose"]:
                commands.append(words[2:])
    return commands


GLOBAL_OPTIONS_WITH_VALUE = {"-f", "--file", "-p", "--project-name", "--env-file", "--profile"}
OPTIONS_WITH_VALUE = {"--scale", "--entrypoint", "-e", "--env", "-u", "--user", "-w", "--name"}


def split_compose(words: list[str]) -> tuple[list[str], str, list[str], list[str]]:
    """``docker compose`` words -> (files, verb, options, positional arguments)."""
    files, index = [], 0
    while words[index].startswith("-"):
        if words[index] in ("-f", "--file"):
            files.append(words[index + 1])
        index += 2 if words[index] in GLOBAL_OPTIONS_WITH_VALUE else 1
    verb, rest = words[index], words[index + 1 :]
    options: list[str] = []
    index = 0
    while index < len(rest) and rest[index].startswith("-"):
        options.append(rest[index])
        if rest[index] in OPTIONS_WITH_VALUE:
            options.append(rest[index + 1])
            index += 1
        index += 1
    return files, verb, options, rest[index:]


def test_readme_compose_commands_name_real_services_and_arguments(compose: dict) -> None:
    commands = readme_compose_commands()
    assert len(commands) >= 8, commands  # the compose and many-machines sections
    services = set(compose["services"])
    checked_run = 0
    for words in commands:
        files, verb, options, positional = split_compose(words)
        shown = f"docker compose {shlex.join(words)}"
        for path in files:
            assert (ROOT / path).is_file(), f"{shown}: no file {path}"
        assert verb in {"up", "down", "logs", "run", "stop", "build", "pull", "ps"}, shown
        for index, option in enumerate(options):
            if option == "--scale":
                assert options[index + 1].split("=")[0] in services, shown
        if not positional:
            continue
        assert positional[0] in services, f"{shown}: no such service"
        if verb == "run" and positional[0] == "cli":
            spectune_arguments(positional[1:])
            checked_run += 1
        elif verb == "run":
            assert len(positional) == 1, f"{shown}: arguments would replace the command"
    assert checked_run >= 2  # `cli study status`, `cli ablate`


def test_deploy_paths_in_readme_exist() -> None:
    text = (ROOT / "README.md").read_text()
    paths = set(re.findall(r"deploy/[\w./-]+\.ya?ml", text))
    assert paths, "README.md names no deploy/ file"
    for path in paths:
        assert (ROOT / path).is_file(), path
