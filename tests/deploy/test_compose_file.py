"""docker-compose.yml, .env.example and deploy/: the structure that `docker compose` relies on.

No Docker here: the file is parsed with PyYAML and interpolated with compose's rules
(deploy_files.interpolate). tests/deploy/test_compose_stand_in.py runs the services' commands.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy.engine
from deploy_files import (
    COMPOSE_FILE,
    DEPLOY,
    DOCKERFILE,
    ENV_EXAMPLE,
    MissingVariable,
    dockerfile,
    image_environment,
    interpolate,
    raw_compose,
    read_env_file,
    resolve_compose,
    seconds,
    variable_names,
    volumes,
)

from spectune.storage.factory import _connect_args
from spectune.storage.options import StorageOptions
from spectune.storage.urls import parse_storage_url

SPECTUNE_SERVICES = ("init", "worker", "dashboard", "export", "report", "cli")
PUBLISHED_DB = DEPLOY / "compose.db-published.yml"
# What .env.example leaves for the user to fill in, filled in.
FILLED = {"POSTGRES_PASSWORD": "0123abcdef", "POSTGRES_PUBLISH": "10.0.0.5:5432"}


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def project(example: dict[str, str]) -> dict:
    return resolve_compose({**example, **FILLED})


def service(project: dict, name: str) -> dict:
    return project["services"][name]


# -- the interpolation helper itself ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${A}", "a"),
        ("$A/x", "a/x"),
        ("${UNSET:-d}", "d"),
        ("${EMPTY:-d}", "d"),
        ("${EMPTY-d}", ""),
        ("${A:-d}", "a"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("$${A} costs $$5", "${A} costs $5"),
        ("${UNSET}", ""),
    ],
)
def test_interpolation_follows_compose(text: str, expected: str) -> None:
    assert interpolate(text, {"A": "a", "EMPTY": ""}) == expected


@pytest.mark.parametrize("text", ["${A:?need A}", "${A?need A}"])
def test_required_variable_missing(text: str) -> None:
    with pytest.raises(MissingVariable, match="need A"):
        interpolate(text, {})
    assert interpolate(text, {"A": "x"}) == "x"
    if ":?" in text:
        with pytest.raises(MissingVariable):
            interpolate(text, {"A": ""})


def test_nested_substitutions_are_refused() -> None:
    # docker-compose v1 cannot read them; the file must not need them
    with pytest.raises(ValueError, match="unsupported"):
        interpolate("${A:-${B}}", {})


# -- the file ---------------------------------------------------------------------------------


def test_services_and_their_roles(project: dict) -> None:
    assert set(project["services"]) == {"db", *SPECTUNE_SERVICES}
    images = {service(project, name)["image"] for name in SPECTUNE_SERVICES}
    assert images == {"spectune:local"}  # one image: workers and dashboard share one Optuna
    for name in SPECTUNE_SERVICES:
        spec = service(project, name)
        assert spec["init"] is True, f"{name}: an init process forwards SIGTERM"
        assert spec["build"]["context"] == "."
    tools = {
        name for name, spec in project["services"].items() if "tools" in spec.get("profiles", [])
    }
    assert tools == {"export", "report", "cli"}  # one-off commands: not started by `up`


def test_worker_scales_without_numbering(project: dict) -> None:
    worker = service(project, "worker")
    assert "container_name" not in worker and "ports" not in worker
    assert "replicas" not in worker.get("deploy", {})  # `--scale worker=N` decides
    command = worker["command"]
    assert command[:3] == ["worker", "--study-name", "s1"]
    assert command[command.index("-g") + 1] == "auto"
    assert int(command[command.index("--trials-per-gpu") + 1]) > 1  # several per GPU if needed
    [gpus] = worker["deploy"]["resources"]["reservations"]["devices"]
    assert gpus == {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    # the replicas of a host share the GPU claims (flock files) through one named volume
    slot_dir = image_environment(dockerfile())["SPECTUNE_GPU_SLOT_DIR"]
    shared = [v for v in volumes(worker) if v.target == slot_dir]
    assert [v.source for v in shared] == ["gpu-slots"]
    assert "gpu-slots" in project["volumes"]
    assert worker["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "init": {"condition": "service_completed_successfully"},
    }
    assert worker["restart"] == "on-failure"


def test_stop_grace_period_exceeds_the_workers_sigterm_exit(project: dict) -> None:
    grace = seconds(service(project, "worker")["stop_grace_period"])
    options = StorageOptions()
    backoff = sum(options.delays())
    # the re-queue's storage write, retried through a Postgres restart: backoff + timeouts
    retried = backoff + options.connect_tries * _connect_args()["connect_timeout"]
    text = " ".join(COMPOSE_FILE.read_text().split())
    assert f"= {backoff:.0f} s" in text and f"= {retried:.0f} s" in text  # the comment's sums
    assert f"Grace {grace:.0f} s > {retried:.0f} s" in text
    assert grace > retried + 10  # + a training step; Docker's default grace is 10 s


def test_db_healthcheck_volume_and_no_published_port(project: dict) -> None:
    db = service(project, "db")
    assert "ports" not in db, "Postgres is reached by the services only, unless asked"
    assert [v.source for v in volumes(db)] == ["pgdata"] and "pgdata" in project["volumes"]
    kind, command = db["healthcheck"]["test"]
    assert kind == "CMD-SHELL" and command.startswith("pg_isready")
    assert re.fullmatch(r"\d+\.\d+-\w+", db["image"].split(":")[1]), "pin the Postgres image"
    assert db["environment"]["POSTGRES_PASSWORD"] == FILLED["POSTGRES_PASSWORD"]


def test_init_is_one_shot_after_a_healthy_db(project: dict) -> None:
    init = service(project, "init")
    assert init["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert init["restart"] == "no"
    assert init["entrypoint"] == ["/bin/sh", "-ec"]
    script = init["command"][0]
    lines = script.replace("\\\n", " ").splitlines()
    assert lines[0] == "spectune storage init"  # idempotent: creates or finds the schema
    assert lines[1].startswith('spectune study create --study-name "s1"')  # same: no-op
    for flag in ("--dataset", "--objective", "--search-space", "--n-trials", "--epochs"):
        assert flag in lines[1]


def test_dashboard_is_published_on_localhost_only(project: dict) -> None:
    dashboard = service(project, "dashboard")
    assert dashboard["command"][:1] == ["dashboard"]
    assert dashboard["ports"] == ["127.0.0.1:8080:8080"]
    assert dashboard["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    for name, spec in project["services"].items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_published_db_override_needs_an_explicit_address(example: dict[str, str]) -> None:
    files = (COMPOSE_FILE, PUBLISHED_DB)
    published = resolve_compose({**example, **FILLED}, files)
    assert published["services"]["db"]["ports"] == ["10.0.0.5:5432:5432"]
    with pytest.raises(MissingVariable, match="POSTGRES_PUBLISH"):
        resolve_compose({**example, "POSTGRES_PASSWORD": "x"}, files)


def test_no_default_password_anywhere(example: dict[str, str]) -> None:
    assert example["POSTGRES_PASSWORD"] == ""
    with pytest.raises(MissingVariable, match="POSTGRES_PASSWORD"):
        resolve_compose(example)
    text = COMPOSE_FILE.read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD[^}]*\}", text)
    assert uses and all(use.startswith("${POSTGRES_PASSWORD:?") for use in uses)
    for path in (COMPOSE_FILE, PUBLISHED_DB, *sorted((DEPLOY / "kubernetes").glob("*.yaml"))):
        for line in path.read_text().splitlines():
            assert not re.search(r"(PASSWORD|SECRET|TOKEN)\w*\s*[:=]\s*[\"']?\w", line) or (
                "${" in line
            ), f"{path.name}: a literal secret? {line.strip()}"
            assert not re.search(r"postgresql://[^$\s:]+:[^$@\s]+@", line), f"{path.name}: {line}"


def test_storage_url_is_built_from_the_env_file(project: dict) -> None:
    for name in SPECTUNE_SERVICES:
        url = service(project, name)["environment"]["SPECTUNE_STORAGE"]
        target = parse_storage_url(url)
        parsed = sqlalchemy.engine.make_url(target.location)
        assert (parsed.host, parsed.port, parsed.database) == ("db", 5432, "spectune")
        assert target.password == FILLED["POSTGRES_PASSWORD"]
        assert FILLED["POSTGRES_PASSWORD"] not in target.masked


def test_password_with_url_characters_must_be_encoded(example: dict[str, str]) -> None:
    # why .env.example asks for letters and digits: a raw "@" or "/" breaks the URL
    project = resolve_compose({**example, "POSTGRES_PASSWORD": "p@ss/word"})
    url = service(project, "worker")["environment"]["SPECTUNE_STORAGE"]
    parsed = sqlalchemy.engine.make_url(parse_storage_url(url).location)
    assert parsed.password != "p@ss/word"
    encoded = resolve_compose({**example, "POSTGRES_PASSWORD": "p%40ss%2Fword"})
    url = service(encoded, "worker")["environment"]["SPECTUNE_STORAGE"]
    assert sqlalchemy.engine.make_url(parse_storage_url(url).location).password == "p@ss/word"


def test_data_and_runs_come_from_host_paths_in_env(project: dict) -> None:
    mounts = {
        name: {v.target: v for v in volumes(service(project, name))} for name in SPECTUNE_SERVICES
    }
    assert mounts["worker"]["/data"].source == "./data" and mounts["worker"]["/data"].read_only
    assert mounts["worker"]["/runs"].source == "./runs" and not mounts["worker"]["/runs"].read_only
    assert mounts["init"]["/config/search-space.yaml"].source == "./study/default_space.yaml"
    assert "/config/search-space.yaml" in service(project, "init")["command"][0]
    assert not mounts["dashboard"], "the dashboard needs the database only"
    raw = COMPOSE_FILE.read_text()
    for variable in ("DATA_DIR", "RUNS_DIR", "SEARCH_SPACE"):
        assert f"${{{variable}" in raw


def test_env_example_documents_every_variable(example: dict[str, str]) -> None:
    used = set()
    for path in (COMPOSE_FILE, PUBLISHED_DB):
        used |= variable_names(path.read_text())
    assert used - set(example) == set(), "used in compose files, missing in .env.example"
    build_args = set(raw_compose()["x-spectune"]["build"]["args"])
    assert set(example) - used - build_args == set(), "in .env.example, used nowhere"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"[A-Z_]+=", line):
            above = lines[max(0, index - 6) : index]
            assert any(entry.startswith("#") for entry in above), f"document {line}"


def test_build_args_default_to_the_dockerfile_args(example: dict[str, str]) -> None:
    args = {}
    for instruction in dockerfile(DOCKERFILE):
        if instruction.keyword == "ARG" and "=" in instruction.arguments:
            key, _, value = instruction.arguments.partition("=")
            args[key] = value.strip('"')
    compose_args = resolve_compose({**example, **FILLED})["services"]["worker"]["build"]["args"]
    for key, value in compose_args.items():
        assert args[key] == value, f"build arg {key}: compose {value!r}, Dockerfile {args[key]!r}"


def test_compose_file_has_no_version_key_and_loads_plainly() -> None:
    raw = raw_compose()
    assert "version" not in raw  # obsolete in the compose spec; compose v2 warns about it
    assert Path(COMPOSE_FILE).name == "docker-compose.yml"
