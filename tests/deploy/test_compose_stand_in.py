"""The stand-in for `docker compose up --scale worker=4` on machines without Docker.

Each service's command is read from docker-compose.yml (entrypoint + command, variables from
.env.example) and run as a local process, with the image's environment and its mounts as local
folders (deploy_files.StandIn). What differs from Docker, and only that, is set here:

- `db` is this machine's Postgres: the storage URL is a private, empty schema of the test
  database instead of postgresql://spectune:...@db:5432/spectune;
- DATA_DIR, RUNS_DIR, the gpu-slots volume: temporary folders; DASHBOARD_PORT: a free port;
- the search is small (the smoke objective, or a tiny MGCN on synthetic data), and
  SPECTUNE_GPU_COUNT pretends that the host has GPUs: -g auto then claims cuda:N slots exactly
  as on a GPU host; the smoke objective never touches the device.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from deploy_files import ENV_EXAMPLE, StandIn, read_env_file, resolve_compose, seconds
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool

from spectune.datasets.synthetic import TINY, make_synthetic, write_mmrec
from spectune.storage import attrs
from spectune.storage.factory import open_existing_study
from spectune.storage.options import StorageOptions
from spectune.storage.testing import poll_until
from spectune.storage.urls import parse_storage_url

WORKERS = 4
DEVICE = r"worker \d+ of study \S+ \(\w+\) on (cpu|cuda:\d+)"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def compose(tmp_path: Path, **values: str) -> dict:
    """docker-compose.yml resolved with .env.example, filled in as a user would, plus ``values``."""
    for folder in ("data", "runs"):
        (tmp_path / folder).mkdir(exist_ok=True)
    variables = read_env_file(ENV_EXAMPLE)
    variables.update(
        POSTGRES_PASSWORD="0123abcdef",  # letters and digits, as .env.example asks
        DATA_DIR=str(tmp_path / "data"),
        RUNS_DIR=str(tmp_path / "runs"),
        DASHBOARD_PORT=str(free_port()),
        **values,
    )
    return resolve_compose(variables)


@pytest.fixture
def launched() -> Iterator[list[StandIn]]:
    """Stand-ins of the test; what they started and a failed test left running is killed."""
    stand_ins: list[StandIn] = []
    yield stand_ins
    for stand_in in stand_ins:
        stand_in.kill_leftovers()


def stand_in(
    project: dict,
    tmp_path: Path,
    storage_url: str,
    gpus: int,
    launched: list[StandIn],
    **environment: str,
) -> StandIn:
    url = project["services"]["worker"]["environment"]["SPECTUNE_STORAGE"]
    assert parse_storage_url(url).server == "db:5432"  # what the stand-in replaces
    overrides = {"SPECTUNE_STORAGE": storage_url, "SPECTUNE_GPU_COUNT": str(gpus)}
    launched.append(
        StandIn(
            project,
            named_volumes={"gpu-slots": tmp_path / "gpu-slots"},
            scratch=tmp_path / "scratch",
            overrides={**overrides, **environment},
        )
    )
    return launched[-1]


def load(storage_url: str, name: str) -> optuna.Study:
    storage = open_existing_study(parse_storage_url(storage_url), StorageOptions(), name)
    return optuna.load_study(study_name=name, storage=storage)


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def check_db_healthcheck(project: dict, postgres_base: str) -> None:
    """The db service's healthcheck command, run against this machine's Postgres."""
    kind, command = project["services"]["db"]["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    url = sqlalchemy.engine.make_url(parse_storage_url(postgres_base).location)
    env = {
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.database or "",
        "PGHOST": url.host or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    # in the container, compose hands "$${VAR}" to the shell as "${VAR}"
    result = subprocess.run(["sh", "-c", command.replace("$$", "$")], env=env, check=False)
    assert result.returncode == 0, f"healthcheck {command!r} failed"


class ConnectionSampler:
    """Counts each watched process's Postgres connections (application_name spectune-<pid>)."""

    def __init__(self, base_url: str, pids: list[int]) -> None:
        self._engine = sqlalchemy.create_engine(
            parse_storage_url(base_url).location, poolclass=NullPool
        )
        self._names = [f"spectune-{pid}" for pid in pids]
        self.most: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._engine.dispose()

    def _run(self) -> None:
        query = sqlalchemy.text(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name = ANY(:names) GROUP BY application_name"
        )
        while not self._stop.wait(0.1):
            with self._engine.connect() as connection:
                for name, count in connection.execute(query, {"names": self._names}):
                    self.most[name] = max(self.most[name], int(count))


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        loaded: dict = json.load(response)
        return loaded


@pytest.fixture
def name() -> str:
    return f"compose-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def storage_url(empty_postgres_url: str) -> str:
    """A private schema without tables: `init` must create them, as on a new `db` volume."""
    return empty_postgres_url


SMALL_SPACE = """
params:
  use_damps: {choice: [true, false]}
  apc: {choice: [true, false], when: {use_damps: true}}
  learning_rate: {float: [1.0e-3, 5.0e-2], log: true}
fixed:
  embedding_size: 16
  knn_k: 5
  batch_size: 128
  topk: [5, 10, 20]
"""


@pytest.mark.slow
def test_compose_up_scale_worker_4_stand_in(
    tmp_path: Path, storage_url: str, postgres_base: str, name: str, launched: list[StandIn]
) -> None:
    """The compose workflow of the README with the real objective (MGCN+DAMPS, .env.example's
    default) on tiny synthetic data: init twice, 4 workers in parallel, the dashboard listing
    the study, export; then the ablation workflow and both reports."""
    write_mmrec(make_synthetic(TINY, seed=0), tmp_path / "data" / TINY.name)
    space = tmp_path / "space.yaml"
    space.write_text(SMALL_SPACE)
    n_trials = 6
    search = {"DATASET": TINY.name, "SEARCH_SPACE": str(space), "EPOCHS": "2"}
    project = compose(tmp_path, STUDY_NAME=name, N_TRIALS=str(n_trials), **search)
    assert '--objective "mgcn"' in project["services"]["init"]["command"][0]
    # a CPU host (-g auto -> cpu); the workers share 2 cores, as `make demo` runs them
    services = stand_in(project, tmp_path, storage_url, 0, launched, OMP_NUM_THREADS="1")
    check_db_healthcheck(project, postgres_base)

    # init: schema + study (the data is read and validated through the /data mount); a second
    # run, as on the next `docker compose up`, changes nothing
    first = services.run("init")
    assert first.popen.returncode == 0, first.output
    assert "created the Optuna schema" in first.output
    assert f"created study {name}" in first.output and f"mgcn on {TINY.name}" in first.output
    second = services.run("init")
    assert second.popen.returncode == 0, second.output
    assert "found the Optuna schema" in second.output
    assert f"study {name} exists" in second.output and "same settings" in second.output

    # `--scale worker=4`: four replicas of one service, no numbering; the dashboard beside them
    workers = [services.start("worker") for _ in range(WORKERS)]
    dashboard = services.start("dashboard")
    port = int(project["services"]["dashboard"]["command"][-1])
    with ConnectionSampler(postgres_base, [p.pid for p in [*workers, dashboard]]) as sampler:
        studies = poll_until(
            lambda: _listed(port, name), timeout=90, what="the study in optuna-dashboard"
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard/", timeout=5) as page:
            assert page.status == 200
        codes = [w.finish(timeout=240) for w in workers]
    assert codes == [0] * WORKERS, "\n\n".join(w.output for w in workers)
    assert name in studies
    assert all("on cpu done (budget)" in w.output for w in workers)

    # the connection arithmetic of the README: at most pool_size + max_overflow per process
    options = StorageOptions()
    assert sampler.most, "no connection seen"
    assert max(sampler.most.values()) <= options.pool_size + options.max_overflow, sampler.most

    study = load(storage_url, name)
    assert finished(study) == n_trials  # the budget is exact across the replicas
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    checkpoint = Path(study.best_trial.user_attrs[attrs.CHECKPOINT])
    assert checkpoint.is_file() and (tmp_path / "runs" / "artifacts") in checkpoint.parents

    # `docker compose run --rm export` and `... report`
    export = services.run("export")
    assert export.popen.returncode == 0, export.output
    out = tmp_path / "runs" / name
    assert sorted(p.name for p in out.glob("best*.yaml")) == [
        "best-2.yaml",
        "best-3.yaml",
        "best.yaml",
    ]
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["selection"]["trial"] == study.best_trial.number
    assert best["model"]["embedding_size"] == 16  # the mounted search space's fixed values
    report = services.run("report")
    assert report.popen.returncode == 0, report.output
    assert (out / "report" / "index.html").is_file()

    # the README's ablation workflow: `docker compose run --rm cli ablate ...`, then
    # `STUDY_NAME=NAME-ablation docker compose up -d --no-deps --scale worker=4 worker`
    ablation = f"{name}-ablation"
    planned = services.run(
        "cli", "ablate", "--study-name", ablation, "--from", name, "--seeds", "1",
        "--variants", "vanilla_mgcn",
    )  # fmt: skip
    assert planned.popen.returncode == 0, planned.output
    project = compose(tmp_path, STUDY_NAME=ablation, N_TRIALS=str(n_trials), **search)
    services = stand_in(project, tmp_path, storage_url, 0, launched, OMP_NUM_THREADS="1")
    ran = services.run("worker", timeout=240)
    assert ran.popen.returncode == 0, ran.output
    report = services.run("report")  # STUDY_NAME=NAME-ablation docker compose run --rm report
    assert report.popen.returncode == 0, report.output
    assert (tmp_path / "runs" / ablation / "report" / "ablation.md").is_file()

    # `docker compose stop dashboard`: SIGTERM ends it
    dashboard.popen.send_signal(signal.SIGTERM)
    dashboard.finish(timeout=10)


def _listed(port: int, name: str) -> list[str] | None:
    try:
        answer = get_json(f"http://127.0.0.1:{port}/api/studies")
    except OSError:
        return None
    names = [study["study_name"] for study in answer["study_summaries"]]
    return names if name in names else None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gpus", "expected"),
    [(4, {"cuda:0": 1, "cuda:1": 1, "cuda:2": 1, "cuda:3": 1}), (2, {"cuda:0": 2, "cuda:1": 2})],
    ids=["4-gpus", "2-gpus"],
)
def test_replicas_claim_gpus_and_sigterm_requeues_within_the_grace_period(
    tmp_path: Path,
    storage_url: str,
    name: str,
    gpus: int,
    expected: dict[str, int],
    launched: list[StandIn],
) -> None:
    """4 replicas claim (pretended) GPUs by themselves: one each on 4 GPUs, two each on 2. Then
    `docker compose stop worker` (SIGTERM) re-queues every running trial and each replica
    exits well within stop_grace_period. The smoke objective: nothing runs on the device."""
    project = compose(tmp_path, STUDY_NAME=name, OBJECTIVE="smoke", N_TRIALS="1000", EPOCHS="200")
    services = stand_in(project, tmp_path, storage_url, gpus, launched)
    assert services.run("init").popen.returncode == 0
    workers = [services.start("worker") for _ in range(WORKERS)]
    devices = Counter(w.wait_for(DEVICE, timeout=60).group(1) for w in workers)
    assert devices == expected

    study = load(storage_url, name)
    pids = {w.pid for w in workers}
    poll_until(lambda: _running_pids(study) == pids, 60, "a running trial on every worker")
    grace = seconds(project["services"]["worker"]["stop_grace_period"])
    sent = time.monotonic()
    for worker in workers:
        worker.popen.send_signal(signal.SIGTERM)
    exits = []
    for worker in workers:
        assert worker.finish(timeout=grace) == 0, worker.output
        exits.append(time.monotonic() - sent)
        assert "re-queued" in worker.output and "done (signal)" in worker.output
    assert max(exits) < 10 < grace, exits  # "within seconds", as the compose comment says

    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    reasons = [t.user_attrs.get(attrs.FAIL_REASON) for t in trials]
    assert reasons.count("worker stopped (SIGTERM)") == WORKERS
    assert len([t for t in trials if t.state is TrialState.WAITING]) == WORKERS  # re-queued


def _running_pids(study: optuna.Study) -> set[int]:
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return {
        int(t.user_attrs[attrs.WORKER_PID]) for t in running if attrs.WORKER_PID in t.user_attrs
    }
