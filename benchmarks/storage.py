"""Storage benchmark of the study service on Postgres (a private schema, dropped afterwards).

(a) 4 worker processes run a smoke study: seconds spent in storage calls per trial (on the
    worker's main thread, which delays the trial; and on its heartbeat/sweep threads) against
    the trial's wall time.
(b) 64 simulated workers (threads, each with its own running trial) report every 50 ms for
    ~10 s: latency p50/p99 of ``trial.report`` and connection errors. Targets: p99 < 50 ms,
    0 errors. Threads are spread over processes (one storage, one pool per process, sized to
    its threads), as real workers are processes with a small pool each.

    python benchmarks/storage.py                       # both parts, default test database
    python benchmarks/storage.py --postgres postgresql://postgres@127.0.0.1:5432/test \\
        --reporters 64 --processes 4 --seconds 10 --out runs/bench/storage.json
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
from optuna.trial import TrialState

from spectune.storage.factory import ServiceRDBStorage, build_storage, init_storage
from spectune.storage.locks import AdvisoryStudyLock
from spectune.storage.options import StorageOptions
from spectune.storage.testing import DEFAULT_TEST_POSTGRES, postgres_schema
from spectune.storage.urls import parse_storage_url
from spectune.study.spec import LivenessSpec, SmokeSpec, StudySpec, create_study
from spectune.study.worker import WorkerSettings, run_worker

OPTIONS = StorageOptions(heartbeat_interval=1, heartbeat_grace=5, connect_tries=3)
TIMED = (
    "create_new_trial", "set_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial", "get_all_trials",
    "get_study_id_from_name", "get_study_user_attrs", "get_study_system_attrs",
    "get_study_directions", "get_trial_id_from_study_id_trial_number", "get_best_trial",
    "record_heartbeat", "_get_stale_trial_ids", "set_study_user_attr",
)  # fmt: skip


def _timed(calls: dict[str, list[float]], name: str, method: Callable[..., Any]) -> Any:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            where = "main" if threading.current_thread() is threading.main_thread() else "bg"
            calls[f"{where}:{name}"].append(time.perf_counter() - started)

    return call


def _timed_worker(url: str, study_name: str, out: Any) -> None:
    """One worker process whose storage calls (and study-lock waits) are timed."""
    warnings.filterwarnings("ignore")
    calls: dict[str, list[float]] = defaultdict(list)
    for name in TIMED:
        setattr(ServiceRDBStorage, name, _timed(calls, name, getattr(ServiceRDBStorage, name)))
    for name in ("__enter__", "__exit__"):
        method = getattr(AdvisoryStudyLock, name)
        setattr(AdvisoryStudyLock, name, _timed(calls, f"lock.{name.strip('_')}", method))
    report = run_worker(WorkerSettings(study_name, parse_storage_url(url), OPTIONS, gpu="cpu"))
    out.put({"trials": sum(report.states.values()), "calls": dict(calls)})


def bench_workers(
    url: str, workers: int, n_trials: int, epochs: int, seconds: float
) -> dict[str, Any]:
    target = parse_storage_url(url)
    spec = StudySpec(
        study_name="bench-workers", objective="smoke", dataset="toy", n_trials=n_trials,
        epochs=epochs, smoke=SmokeSpec(epoch_seconds=seconds),
        liveness=LivenessSpec(
            OPTIONS.heartbeat_interval, OPTIONS.heartbeat_grace, OPTIONS.max_retry
        ),
    )  # fmt: skip
    storage = build_storage(target, OPTIONS)
    create_study(storage, spec)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    started = time.perf_counter()
    processes = [
        context.Process(target=_timed_worker, args=(url, spec.study_name, out))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    wall = time.perf_counter() - started

    study = optuna.load_study(study_name=spec.study_name, storage=storage)
    finished = [
        t for t in study.get_trials() if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    durations = [
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in finished
        if t.datetime_complete and t.datetime_start
    ]
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for result in results:
        for name, times in result["calls"].items():
            totals[name] += sum(times)
            counts[name] += len(times)
    n = len(finished)
    main = sum(v for k, v in totals.items() if k.startswith("main:") and "lock." not in k)
    lock = sum(v for k, v in totals.items() if "lock." in k)
    background = sum(v for k, v in totals.items() if k.startswith("bg:"))
    top = sorted(totals.items(), key=lambda item: -item[1])[:8]
    return {
        "workers": workers,
        "trials_finished": n,
        "wall_s": round(wall, 2),
        "trial_s_mean": round(statistics.mean(durations), 4),
        "compute_s_per_trial_max": round(epochs * seconds, 4),
        "storage_main_s_per_trial": round(main / n, 4),
        "study_lock_s_per_trial": round(lock / n, 4),
        "storage_background_s_per_trial": round(background / n, 4),
        "storage_main_share_of_trial": round(main / n / statistics.mean(durations), 4),
        "top_calls": {k: {"total_s": round(v, 3), "calls": counts[k]} for k, v in top},
    }


def _reporters(
    url: str, study_name: str, threads: int, seconds: float, every: float, out: Any
) -> None:
    """``threads`` simulated workers in one process: each reports its own trial every ``every``."""
    warnings.filterwarnings("ignore")
    options = StorageOptions(
        heartbeat_interval=OPTIONS.heartbeat_interval,
        heartbeat_grace=OPTIONS.heartbeat_grace,
        pool_size=threads,  # one connection per simulated worker (each is a process in real life)
        max_overflow=4,
    )
    storage = build_storage(parse_storage_url(url), options)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = [study.ask() for _ in range(threads)]
    latencies: list[float] = []
    errors: list[str] = []
    start = threading.Barrier(threads)

    def report(trial: optuna.Trial) -> None:
        start.wait()
        # Real workers are not in phase: each starts at a random point of the period.
        begin = time.perf_counter() + random.uniform(0, every)
        time.sleep(max(0.0, begin - time.perf_counter()))
        step = 0
        while (now := time.perf_counter()) - begin < seconds:
            try:
                trial.report(0.1 + step * 1e-4, step)
                latencies.append(time.perf_counter() - now)
            except Exception as error:  # counted, not fatal
                errors.append(f"{type(error).__name__}: {error}")
            step += 1
            time.sleep(max(0.0, begin + step * every - time.perf_counter()))

    workers = [threading.Thread(target=report, args=(trial,)) for trial in trials]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    for trial in trials:
        study.tell(trial, 0.1)
    out.put({"latencies": latencies, "errors": errors})


def bench_reports(
    url: str, reporters: int, processes: int, seconds: float, every: float, run: int = 0
) -> dict[str, Any]:
    name = f"bench-reports-{run}"
    storage = build_storage(parse_storage_url(url), OPTIONS)
    optuna.create_study(storage=storage, study_name=name)
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    shares = [reporters // processes + (i < reporters % processes) for i in range(processes)]
    started = [
        context.Process(target=_reporters, args=(url, name, n, seconds, every, out)) for n in shares
    ]
    for process in started:
        process.start()
    results = [out.get(timeout=seconds + 300) for _ in started]
    for process in started:
        process.join()
    latencies = sorted(x for result in results for x in result["latencies"])
    errors = [e for result in results for e in result["errors"]]

    def quantile(q: float) -> float:
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "reporters": reporters,
        "processes": processes,
        "report_every_ms": every * 1000,
        "offered_reports_per_s": round(reporters / every, 1),
        "reports": len(latencies),
        "reports_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": quantile(0.50),
        "p95_ms": quantile(0.95),
        "p99_ms": quantile(0.99),
        "max_ms": round(1000 * latencies[-1], 2),
        "connection_errors": len(errors),
        "first_errors": errors[:3],
        "target": "p99 < 50 ms, 0 connection errors",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=DEFAULT_TEST_POSTGRES, help="database to use")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--n-trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--epoch-seconds", type=float, default=0.05)
    parser.add_argument("--reporters", type=int, default=64)
    parser.add_argument("--processes", type=int, default=4, help="processes for the reporters")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--every",
        type=float,
        nargs="+",
        default=[0.05],
        help="seconds between reports (several: a sweep)",
    )
    parser.add_argument(
        "--synchronous-commit-off",
        action="store_true",
        help="sessions without waiting for the WAL flush (shows how much is fsync)",
    )
    parser.add_argument("--skip-workers", action="store_true", help="only part (b)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with postgres_schema(args.postgres, prefix="spectune_bench") as url:
        if args.synchronous_commit_off:
            url = url.replace("options=", f"options={quote('-csynchronous_commit=off ')}")
        init_storage(parse_storage_url(url), OPTIONS)
        results: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "load_1min": os.getloadavg()[0]},
            "synchronous_commit": "off" if args.synchronous_commit_off else "on",
        }
        if not args.skip_workers:
            results["workers"] = bench_workers(
                url, args.workers, args.n_trials, args.epochs, args.epoch_seconds
            )
        results["reports"] = [
            bench_reports(url, args.reporters, args.processes, args.seconds, every, run)
            for run, every in enumerate(args.every)
        ]
        results["machine"]["load_1min_after"] = os.getloadavg()[0]
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
