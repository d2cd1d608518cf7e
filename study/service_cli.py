"""``spectune storage init``, ``spectune study create|status`` and ``spectune worker``.

One step creates the schema (``storage init``, Postgres only) and one the study with its spec
(``study create``); any number of workers then load the study and refuse to start when their
settings differ from its spec.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from tqdm.contrib.logging import logging_redirect_tqdm

from spectune.storage import attrs
from spectune.storage.factory import init_storage, load_study, open_existing_study, open_storage
from spectune.storage.options import StorageOptions
from spectune.storage.urls import StorageTarget, default_target, parse_storage_url
from spectune.study import settings
from spectune.study.budget import count_trials
from spectune.study.spec import (
    LivenessSpec,
    PrunerSpec,
    RequestedSettings,
    SamplerSpec,
    SmokeSpec,
    StudySpec,
    create_study,
    current_versions,
    load_spec,
)
from spectune.study.typed import ConfigError

log = logging.getLogger(__name__)


def add_service_parsers(commands: argparse._SubParsersAction) -> None:
    """Register ``storage``, ``study`` and ``worker`` on the ``spectune`` command."""
    storage = commands.add_parser("storage", help="create or upgrade the study database schema")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True)
    init = storage_commands.add_parser(
        "init",
        help="create the Optuna schema once (or upgrade an old one); idempotent",
        description="Create the Optuna tables in Postgres (upgrade them when older), or the "
        "runs folder for journal files. Run it once before workers start.",
    )
    _add_storage_arguments(init)
    init.set_defaults(handler=run_storage_init)

    study = commands.add_parser("study", help="create a study or show its state")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    _add_create_parser(study_commands)
    status = study_commands.add_parser(
        "status", help="trials per state, budget, best trial, running trials"
    )
    status.add_argument("--study-name", required=True)
    _add_storage_arguments(status)
    status.set_defaults(handler=run_study_status)

    _add_worker_parser(commands)


def _add_storage_arguments(parser: argparse.ArgumentParser, liveness: bool = False) -> None:
    group = parser.add_argument_group("storage")
    group.add_argument(
        "--storage",
        help="journal file path or postgresql://user:password@host:port/db "
        "(default $SPECTUNE_STORAGE or runs/<study>.journal)",
    )
    group.add_argument("--connect-tries", type=int, help="Postgres connection attempts (6)")
    group.add_argument(
        "--connect-delay", type=float, help="first wait between them, doubling (1 s)"
    )
    if liveness:
        group.add_argument("--heartbeat-interval", type=int, help="seconds between heartbeats (60)")
        group.add_argument(
            "--heartbeat-grace",
            type=int,
            help="seconds without heartbeat before another worker re-queues a trial (600)",
        )
        group.add_argument("--max-retry", type=int, help="re-runs of a lost trial's config (3)")


def _add_create_parser(study_commands: argparse._SubParsersAction) -> None:
    parser = study_commands.add_parser(
        "create",
        help="create a study and store its spec (idempotent with the same settings)",
        description="Create the study and store its spec: objective, dataset, search space, "
        "budget, metric, sampler, pruner and heartbeat settings. Running it again with the same "
        "settings does nothing; with others it refuses and names the field.",
    )
    parser.add_argument("--study-name", required=True)
    parser.add_argument("--dataset", required=True, help="dataset name under the data root")
    parser.add_argument(
        "--objective",
        choices=("mgcn", "smoke"),
        default="mgcn",
        help="mgcn (train MGCN+DAMPS) or smoke (a fast stand-in: checks a deployment)",
    )
    parser.add_argument(
        "--search-space", type=Path, help="search-space YAML (default: the packaged one)"
    )
    parser.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed base (+ worker index)")
    parser.add_argument(
        "--sampler-startup-trials", type=int, default=10, help="TPE random trials first"
    )
    parser.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    parser.add_argument(
        "--pruner-startup-trials",
        type=int,
        default=5,
        help="median: COMPLETE trials before pruning starts",
    )
    parser.add_argument(
        "--pruner-warmup-steps",
        type=int,
        default=1,
        help="median: epochs of each trial never pruned",
    )
    parser.add_argument("--n-trials", type=int, default=50, help="global budget: COMPLETE + PRUNED")
    parser.add_argument(
        "--epochs", type=int, default=50, help="epochs per trial (Hyperband's max resource)"
    )
    parser.add_argument("--metric", default="recall@20", help="validation metric to optimise")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default="maximize")
    parser.add_argument("--data-root", help="data root stored as the workers' default")
    smoke = parser.add_argument_group("smoke objective")
    smoke.add_argument("--smoke-epoch-seconds", type=float, default=0.05, help="seconds per epoch")
    smoke.add_argument(
        "--smoke-fail-trials",
        type=_numbers,
        default=(),
        metavar="N,M",
        help="trial numbers that raise (drills failure handling)",
    )
    smoke.add_argument(
        "--smoke-nan-trials",
        type=_numbers,
        default=(),
        metavar="N,M",
        help="trial numbers whose metric is NaN",
    )
    _add_storage_arguments(parser, liveness=True)
    parser.set_defaults(handler=run_study_create)


def _add_worker_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "worker",
        help="run trials of a study until its budget is spent",
        description="Load the study, check these settings against its spec, then claim and "
        "run trials until COMPLETE + PRUNED reaches the budget. SIGTERM re-queues the running "
        "trial and exits.",
    )
    parser.add_argument("--study-name", required=True)
    parser.add_argument("--data-root", help="data root on this machine (default: the study's)")
    parser.add_argument(
        "-g",
        "--gpu",
        default="auto",
        help="auto (claim a free GPU slot on this host; CPU without CUDA), cpu, or an index",
    )
    parser.add_argument(
        "--trials-per-gpu", type=int, default=1, help="most workers per GPU under -g auto"
    )
    parser.add_argument(
        "--gpu-slot-dir",
        help="GPU claims (default $SPECTUNE_GPU_SLOT_DIR or /tmp/spectune-gpu-slots)",
    )
    parser.add_argument(
        "--max-consecutive-failures",
        type=int,
        default=5,
        help="stop this worker after so many failed trials in a row",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    check = parser.add_argument_group("checked against the study's spec (refuses on mismatch)")
    check.add_argument("--objective", choices=("mgcn", "smoke", "ablation"))
    check.add_argument("--metric")
    check.add_argument("--direction", choices=("maximize", "minimize"))
    check.add_argument("--sampler", choices=("tpe", "random", "grid"))
    check.add_argument("--pruner", choices=("median", "hyperband", "none"))
    _add_storage_arguments(parser, liveness=True)
    parser.set_defaults(handler=run_worker_command)


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected trial numbers like 2,5, got {text!r}") from None


def resolve_target(cli_value: str | None, study_name: str) -> StorageTarget:
    raw = settings.storage_url(cli_value)
    return default_target(study_name) if raw is None else parse_storage_url(raw)


def storage_options(args: argparse.Namespace) -> StorageOptions:
    values: dict[str, Any] = {
        "connect_tries": settings.connect_tries(args.connect_tries),
        "connect_delay": settings.connect_delay(args.connect_delay),
        "heartbeat_interval": settings.heartbeat_interval(
            getattr(args, "heartbeat_interval", None)
        ),
        "heartbeat_grace": settings.heartbeat_grace(getattr(args, "heartbeat_grace", None)),
        "max_retry": settings.max_retry(getattr(args, "max_retry", None)),
    }
    return StorageOptions(**{key: value for key, value in values.items() if value is not None})


def _quiet_optuna() -> None:
    # The service logs each trial itself; Optuna's INFO lines would repeat them.
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_storage_init(args: argparse.Namespace) -> int:
    _quiet_optuna()
    raw = settings.storage_url(args.storage)
    target = parse_storage_url(raw) if raw else default_target("_")
    print(init_storage(target, storage_options(args)))
    return 0


def run_study_create(args: argparse.Namespace) -> int:
    _quiet_optuna()
    target = resolve_target(args.storage, args.study_name)
    options = storage_options(args)
    spec = StudySpec(
        study_name=args.study_name,
        objective=args.objective,
        dataset=args.dataset,
        n_trials=args.n_trials,
        epochs=args.epochs,
        search_space=_search_space(args.objective, args.search_space),
        metric=args.metric,
        direction=args.direction,
        sampler=_checked(
            SamplerSpec,
            name=args.sampler,
            seed=args.seed,
            n_startup_trials=args.sampler_startup_trials,
        ),
        pruner=_checked(
            PrunerSpec,
            name=args.pruner,
            n_startup_trials=args.pruner_startup_trials,
            n_warmup_steps=args.pruner_warmup_steps,
            max_resource=args.epochs,
        ),
        smoke=_checked(
            SmokeSpec,
            epoch_seconds=args.smoke_epoch_seconds,
            fail_trial_numbers=args.smoke_fail_trials,
            nan_trial_numbers=args.smoke_nan_trials,
        ),
        liveness=LivenessSpec(
            options.heartbeat_interval, options.heartbeat_grace, options.max_retry
        ),
        data_root=args.data_root,
        versions=current_versions(),
    )
    if spec.objective == "mgcn":
        # the data is read and validated once here, not failed on by every worker's first trial
        from spectune.datasets.mmrec import load_dataset

        load_dataset(spec.dataset, settings.data_root(args.data_root))
    storage = open_storage(target, options, create=True)
    if create_study(storage, spec):
        print(
            f"created study {spec.study_name} in {target.masked}: {spec.objective} on "
            f"{spec.dataset}, {spec.n_trials} trials of {spec.epochs} epochs, {spec.metric} "
            f"({spec.direction}), sampler {spec.sampler.name}, pruner {spec.pruner.name}"
        )
    else:
        print(f"study {spec.study_name} exists in {target.masked}, same settings")
    return 0


def _checked(kind: Any, **values: Any) -> Any:
    try:
        return kind(**values)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def _search_space(objective: str, path: Path | None) -> dict[str, Any]:
    if objective == "smoke":
        if path is not None:
            log.warning("--search-space is ignored by the smoke objective (it has its own)")
        return {}
    from spectune.study.space import load_search_space  # imports the model stack

    return load_search_space(path)


def run_worker_command(args: argparse.Namespace) -> int:
    from spectune.study.worker import WorkerSettings, run_worker

    _quiet_optuna()
    options = storage_options(args)
    worker_settings = WorkerSettings(
        study_name=args.study_name,
        target=resolve_target(args.storage, args.study_name),
        options=options,
        requested=RequestedSettings(
            objective=args.objective,
            metric=args.metric,
            direction=args.direction,
            sampler=args.sampler,
            pruner=args.pruner,
            # only what was given (flag or environment) is checked; the rest is the study's
            heartbeat_interval=settings.heartbeat_interval(args.heartbeat_interval),
            heartbeat_grace=settings.heartbeat_grace(args.heartbeat_grace),
            max_retry=settings.max_retry(args.max_retry),
        ),
        gpu=args.gpu,
        trials_per_gpu=args.trials_per_gpu,
        gpu_count=settings.gpu_count(),
        gpu_slot_dir=settings.gpu_slot_dir(args.gpu_slot_dir),
        data_root=args.data_root,
        max_consecutive_failures=args.max_consecutive_failures,
        progress=sys.stderr.isatty() and not args.no_progress,
    )
    redirect = logging_redirect_tqdm() if worker_settings.progress else contextlib.nullcontext()
    with redirect:
        report = run_worker(worker_settings)
    states = ", ".join(f"{state} {count}" for state, count in sorted(report.states.items()))
    print(
        f"worker {report.worker_index} on {report.device} done ({report.stopped_by}): "
        f"{states or 'no trials'}"
    )
    return 1 if report.stopped_by == "failures" else 0


def run_study_status(args: argparse.Namespace) -> int:
    _quiet_optuna()
    target = resolve_target(args.storage, args.study_name)
    storage = open_existing_study(target, storage_options(args), args.study_name)
    study = load_study(storage, args.study_name)
    spec = load_spec(study)
    counts = count_trials(study)
    print(f"study {args.study_name} in {target.masked}")
    if spec is not None:
        print(
            f"  {spec.objective} on {spec.dataset}: {spec.metric} ({spec.direction}), "
            f"{spec.epochs} epochs per trial, sampler {spec.sampler.name}, pruner "
            f"{spec.pruner.name}"
        )
    budget = f"{counts.finished} of {spec.n_trials}" if spec else str(counts.finished)
    print(
        f"  finished {budget} (COMPLETE {counts.complete}, PRUNED {counts.pruned}); "
        f"RUNNING {counts.running}, WAITING {counts.waiting}, FAIL {counts.failed}"
    )
    if counts.complete:
        best = study.best_trial
        params = ", ".join(f"{name}={value}" for name, value in best.params.items())
        print(f"  best: trial {best.number} value {best.value:.4f} ({params})")
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if running:
        print("  running:")
    now = time.time()
    for trial in running:
        started = trial.datetime_start
        age = f"{now - started.timestamp():.0f} s" if isinstance(started, datetime) else "?"
        lease = trial.system_attrs.get(attrs.LEASE)
        beat = f"{now - float(lease):.0f} s ago" if lease is not None else "none yet"
        user = trial.user_attrs
        print(
            f"    trial {trial.number}: host {user.get(attrs.WORKER_HOST, '?')} pid "
            f"{user.get(attrs.WORKER_PID, '?')} on {user.get(attrs.DEVICE, '?')}, age {age}, "
            f"last heartbeat {beat}"
        )
    return 0
