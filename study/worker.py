"""The worker loop: claim a trial within the budget, run it, record it; survive what goes wrong.

Many workers (processes, machines) share one study. Each one loads the study and its spec,
claims trials under the study lock (``budget``), keeps its running trial alive (``liveness``)
and, whatever the trial does, records one final state:

- the objective raises (CUDA OOM, a bug) or returns a non-finite value: FAIL with the reason
  in ``fail_reason``; memory is freed and the worker goes on (such failures repeat, so they are
  not retried and do not count toward the budget);
- SIGTERM/SIGINT: the running trial is failed and its configuration re-queued, then the worker
  exits (code 0) within seconds;
- the trial was failed by another worker meanwhile (a heartbeat false positive): logged, and
  the worker goes on; that worker already re-queued it;
- this worker dies (kill -9, node loss): others see its heartbeat stop and re-queue the trial.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from tqdm import tqdm

from spectune.storage import attrs
from spectune.storage.errors import StorageError
from spectune.storage.factory import is_transient, load_study, open_existing_study, study_lock
from spectune.storage.liveness import (
    PeriodicSweep,
    Requeue,
    TrialBeat,
    fail_and_requeue,
    sweep_stale_trials,
    trial_id,
)
from spectune.storage.locks import StudyLock, try_lock_file
from spectune.storage.options import StorageOptions
from spectune.storage.urls import StorageTarget
from spectune.study.budget import Counts, Decision, claim_trial, count_trials, next_worker_index
from spectune.study.spec import (
    RequestedSettings,
    StudySpec,
    build_pruner,
    build_sampler,
    check_worker_settings,
    load_spec,
    search_grid,
)
from spectune.study.typed import ConfigError

log = logging.getLogger(__name__)

Objective = Callable[[optuna.Trial], float]


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker runs; ``requested`` settings are only checked against the study's spec."""

    study_name: str
    target: StorageTarget
    options: StorageOptions = field(default_factory=StorageOptions)
    requested: RequestedSettings = field(default_factory=RequestedSettings)
    gpu: str = "auto"  # auto | cpu | a GPU index
    trials_per_gpu: int = 1  # at most this many workers per GPU under -g auto
    gpu_count: int | None = None  # None: ask CUDA (SPECTUNE_GPU_COUNT simulates GPUs)
    gpu_slot_dir: Path = Path("/tmp/spectune-gpu-slots")
    data_root: str | None = None  # replaces the spec's data root (paths differ per machine)
    max_consecutive_failures: int = 5  # a deterministic error would otherwise loop forever
    progress: bool = False  # tqdm bars (on a terminal)
    poll_seconds: float | None = None  # waiting for others; default min(heartbeat interval, 10)


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did: trials it ended per state, and why it stopped."""

    worker_index: int
    device: str
    states: dict[str, int] = field(default_factory=dict)
    stopped_by: str = "budget"  # budget | signal | failures


class WorkerStopped(BaseException):
    """SIGTERM or SIGINT arrived during a trial (BaseException: objectives must not catch it)."""


class TrialLost(Exception):
    """Another worker finished this worker's trial (it judged the trial stale)."""


# -- progress ---------------------------------------------------------------------------------


class EpochBar:
    """The running trial's epoch bar; ``advance`` once per epoch."""

    def __init__(self, bar: tqdm[Any] | None, metric: str) -> None:
        self._bar = bar
        self._metric = metric

    def advance(self, value: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"{self._metric} {value:.4f}", refresh=False)


class Progress:
    """A bar for the study (finished / budget, best) above one for the trial's epochs."""

    def __init__(self, budget: int, metric: str, enabled: bool) -> None:
        self._metric = metric
        self._enabled = enabled
        self._study = (
            tqdm(total=budget, position=0, desc="study", unit="trial") if enabled else None
        )

    def study(self, finished: int, best: float | None) -> None:
        if self._study is not None:
            self._study.n = finished
            if best is not None:
                self._study.set_postfix_str(f"best {self._metric} {best:.4f}", refresh=False)
            self._study.refresh()

    @contextlib.contextmanager
    def epochs(self, total: int, trial_number: int) -> Iterator[EpochBar]:
        bar = None
        if self._enabled:
            bar = tqdm(total=total, position=1, leave=False, desc=f"trial {trial_number}")
        try:
            yield EpochBar(bar, self._metric)
        finally:
            if bar is not None:
                bar.close()

    def close(self) -> None:
        if self._study is not None:
            self._study.close()


ObjectiveFactory = Callable[[StudySpec, str, Progress], Objective]


# -- signals ----------------------------------------------------------------------------------


class StopSignal:
    """SIGTERM/SIGINT handling: raise WorkerStopped inside a trial, else just note the request.

    Training loops can run for minutes without returning to the worker, so the handler raises
    in the main thread; outside a trial (storage calls, claims) it only sets a flag that the
    loop reads, so no storage call is cut in half.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._in_trial = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.requested = signal.Signals(number).name
        if self._in_trial:
            self._in_trial = False  # raise once; a second signal must not cut the re-queue
            raise WorkerStopped(self.requested)

    @contextlib.contextmanager
    def trial(self) -> Iterator[None]:
        """The section where a signal interrupts the running trial."""
        if self.requested:
            raise WorkerStopped(self.requested)
        self._in_trial = True
        try:
            yield
        finally:
            self._in_trial = False

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.requested and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))


# -- devices ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceClaim:
    """The device a worker trains on, and the lock file descriptor that claims it."""

    device: str  # cpu | cuda:N
    gpu: int | None = None
    slot: int | None = None
    fd: int | None = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)


def detect_gpu_count(simulated: int | None) -> int:
    if simulated is not None:
        return simulated
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def claim_device(gpu: str, gpu_count: int, trials_per_gpu: int, slot_dir: Path) -> DeviceClaim:
    """Pick the worker's device; ``auto`` claims a host-local GPU slot through lock files.

    Slots fill one worker per GPU first, then a second per GPU, up to ``trials_per_gpu``. The
    claim is an flock held open for the worker's life: a dead worker frees its slot.
    """
    if trials_per_gpu < 1:
        raise ConfigError(f"--trials-per-gpu must be >= 1, got {trials_per_gpu}")
    if gpu in ("cpu", "-1") or (gpu == "auto" and gpu_count == 0):
        return DeviceClaim("cpu")
    if gpu == "auto":
        for slot in range(trials_per_gpu):
            for index in range(gpu_count):
                fd = try_lock_file(slot_dir / f"gpu{index}-slot{slot}.lock")
                if fd is not None:
                    return DeviceClaim(f"cuda:{index}", index, slot, fd)
        raise ConfigError(
            f"all {gpu_count} GPUs already run {trials_per_gpu} worker(s) each (claims in "
            f"{slot_dir}); raise --trials-per-gpu, pin one with -g N, or stop a worker"
        )
    try:
        index = int(gpu)
    except ValueError:
        raise ConfigError(f"-g {gpu}: expected auto, cpu or a GPU index") from None
    if not 0 <= index < gpu_count:
        raise ConfigError(f"-g {gpu}: this machine has {gpu_count} GPU(s); use -g cpu for CPU")
    for slot in range(trials_per_gpu):
        fd = try_lock_file(slot_dir / f"gpu{index}-slot{slot}.lock")
        if fd is not None:
            return DeviceClaim(f"cuda:{index}", index, slot, fd)
    log.warning("GPU %d already runs %d worker(s); pinned there anyway", index, trials_per_gpu)
    return DeviceClaim(f"cuda:{index}", index)


def free_memory() -> None:
    """Drop what the last trial left (models, optimizers, CUDA cache) before the next one."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# The objective of each kind, imported only when a study uses it (mgcn imports the model stack).
OBJECTIVE_MODULES = {
    "smoke": "spectune.study.smoke",
    "mgcn": "spectune.study.objective",
    "ablation": "spectune.study.ablation",
}


def objective_factory_for(kind: str) -> ObjectiveFactory:
    factory: ObjectiveFactory = importlib.import_module(OBJECTIVE_MODULES[kind]).make_objective
    return factory


# -- the loop ---------------------------------------------------------------------------------


def run_worker(
    settings: WorkerSettings, objective_factory: ObjectiveFactory | None = None
) -> WorkerReport:
    """Run trials of ``settings.study_name`` until the budget is spent or a signal stops it."""
    _silence_expected_warnings()
    target, options = settings.target, settings.options
    storage = open_existing_study(target, options, settings.study_name)
    plain = load_study(storage, settings.study_name)
    spec = load_spec(plain)
    if spec is None:
        raise StorageError(
            f"study {settings.study_name!r} in {target.masked} has no spectune spec (made by "
            "another tool, or its `spectune study create` was interrupted); use another name"
        )
    check_worker_settings(spec, settings.requested)
    # Liveness settings not given to this worker are the study's: every worker must use the
    # same, or one with a shorter grace would fail the others' live trials.
    stored = spec.liveness
    adopted = replace(
        options,
        heartbeat_interval=stored.heartbeat_interval,
        heartbeat_grace=stored.heartbeat_grace,
        max_retry=stored.max_retry,
    )
    if adopted != options:
        options = adopted
        settings = replace(settings, options=adopted)
        storage = open_existing_study(target, options, settings.study_name)
        plain = load_study(storage, settings.study_name)
    # Everything that can refuse (device, objective setup) comes before the first write.
    device = claim_device(
        settings.gpu,
        detect_gpu_count(settings.gpu_count),
        settings.trials_per_gpu,
        settings.gpu_slot_dir,
    )
    progress = Progress(spec.n_trials, spec.metric, settings.progress)
    lock: StudyLock | None = None
    try:
        factory = objective_factory or objective_factory_for(spec.objective)
        objective = factory(
            replace(spec, data_root=settings.data_root or spec.data_root), device.device, progress
        )
        study_id = storage.get_study_id_from_name(settings.study_name)
        lock = study_lock(storage, target, settings.study_name, study_id)
        index = next_worker_index(plain, lock)
        grid = search_grid(spec) if spec.sampler.name == "grid" else None
        study = load_study(
            storage, settings.study_name, build_sampler(spec, index, grid), build_pruner(spec)
        )
        log.info(
            "worker %d of study %s (%s) on %s in %s",
            index,
            spec.study_name,
            spec.objective,
            device.device,
            target.masked,
        )
        loop = _Loop(settings, spec, study, storage, lock, index, device.device, progress)
        return loop.run(objective)
    finally:
        progress.close()
        device.release()
        if lock is not None:
            lock.close()


def _silence_expected_warnings() -> None:
    # Heartbeats, constant liar and the retry callback are experimental in Optuna and used on
    # purpose; Optuna also warns that heartbeats are meant for optimize(), while the service
    # runs its own heartbeat thread around ask/tell.
    warnings.filterwarnings("ignore", category=ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")


class _Loop:
    def __init__(
        self,
        settings: WorkerSettings,
        spec: StudySpec,
        study: optuna.Study,
        storage: BaseStorage,
        lock: StudyLock,
        index: int,
        device: str,
        progress: Progress,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.study = study
        self.storage = storage
        self.lock = lock
        self.index = index
        self.device = device
        self.progress = progress
        self.options = settings.options
        self.requeue = Requeue(self.options.max_retry, "worker stopped")
        self.states: Counter[str] = Counter()
        self.stop = StopSignal()

    def run(self, objective: Objective) -> WorkerReport:
        target, options = self.settings.target, self.options
        poll = self.settings.poll_seconds or min(options.heartbeat_interval, 10)
        sweep_args = (self.study, self.storage, target, options, self.lock)
        stopped_by = "budget"
        failures = outages = 0
        with self.stop, PeriodicSweep(*sweep_args):
            while True:
                if self.stop.requested:
                    stopped_by = "signal"
                    break
                try:
                    sweep_stale_trials(*sweep_args)
                    claim = claim_trial(
                        self.study, self.lock, self.spec.n_trials, self.spec.ablation is not None
                    )
                    outages = 0
                except Exception as error:
                    # A storage outage (a Postgres restart) outlasting the call retries: wait.
                    outages += 1
                    if not is_transient(error) or outages >= options.connect_tries:
                        raise
                    delay = options.delays()[outages - 1]
                    log.warning("storage unavailable (%s); next try in %.1f s", error, delay)
                    self.stop.sleep(delay)
                    continue
                self._show(claim.counts)
                if claim.decision is Decision.DONE:
                    break
                if claim.decision is Decision.WAIT:
                    log.debug("budget taken by running trials; waiting %.1f s", poll)
                    self.stop.sleep(poll)
                    continue
                assert claim.trial is not None
                failed = self._run_trial(claim.trial, objective)
                failures = failures + 1 if failed else 0
                if failures >= self.settings.max_consecutive_failures:
                    log.error(
                        "%d trials in a row failed on this worker; stopping it: fix the objective "
                        "or the data (see fail_reason of the FAIL trials)",
                        failures,
                    )
                    stopped_by = "failures"
                    break
            # The last worker out must leave no RUNNING trial behind (Optuna #3215).
            sweep_stale_trials(*sweep_args)
        self._show(count_trials(self.study))
        if self.stop.requested:
            stopped_by = "signal"
            log.info("stopped by %s", self.stop.requested)
        return WorkerReport(self.index, self.device, dict(self.states), stopped_by)

    def _show(self, counts: Counts) -> None:
        if not self.settings.progress:
            return
        best = None
        with contextlib.suppress(ValueError):  # no COMPLETE trial yet
            best = self.study.best_value
        self.progress.study(counts.finished, best)

    def _run_trial(self, trial: optuna.Trial, objective: Objective) -> bool:
        """Run one claimed trial and record its end; True when the objective failed."""
        beat = TrialBeat(self.storage, self.settings.target, trial, self.options.heartbeat_interval)
        started = time.monotonic()
        state, value, reason = TrialState.FAIL, None, ""
        try:
            beat.beat()  # the first sign of life, then the worker's identity
            for key, item in (
                (attrs.WORKER_HOST, socket.gethostname()),
                (attrs.WORKER_PID, os.getpid()),
                (attrs.WORKER_INDEX, self.index),
                (attrs.DEVICE, self.device),
                (attrs.STARTED_AT, datetime.now(timezone.utc).isoformat(timespec="seconds")),
            ):
                trial.set_user_attr(key, item)
            beat.start()
            with self.stop.trial():
                result = objective(trial)
            value = float(result)
            if math.isfinite(value):
                state = TrialState.COMPLETE
            else:
                reason = f"non-finite {self.spec.metric}: the objective returned {value}"
        except optuna.TrialPruned as pruned:
            state, reason = TrialState.PRUNED, str(pruned)
        except WorkerStopped as stop:
            beat.stop()
            self._requeue(trial, f"worker stopped ({stop})")
            return False
        except Exception as error:  # any error of one trial: record it, keep the worker
            reason = f"{type(error).__name__}: {error}"
            if not self._still_mine(trial):
                beat.stop()
                self._lost(trial)
                return False
            log.error("trial %d failed: %s", trial.number, reason, exc_info=True)
        finally:
            beat.stop()
            free_memory()
        seconds = time.monotonic() - started
        ended = self._tell(trial, state, value, reason)
        if ended is not None:
            self.states[ended.name] += 1
            self._log_end(trial, ended, value, seconds, reason)
        return ended is TrialState.FAIL

    def _still_mine(self, trial: optuna.Trial) -> bool:
        try:
            return self.storage.get_trial(trial_id(trial)).state is TrialState.RUNNING
        except Exception:  # the storage is down: assume yes, the tell will tell
            return True

    def _lost(self, trial: optuna.Trial) -> None:
        frozen = self.storage.get_trial(trial_id(trial))
        log.warning(
            "trial %d was ended (%s) by another worker, which judged it stale (%s); its "
            "configuration was re-queued there; going on with the next trial",
            trial.number,
            frozen.state.name,
            frozen.user_attrs.get(attrs.FAIL_REASON, "?"),
        )
        self.states["LOST"] += 1

    def _requeue(self, trial: optuna.Trial, reason: str) -> None:
        try:
            frozen = self.storage.get_trial(trial_id(trial))
            with self.lock:  # no budget claim between the FAIL and the re-queued copy
                requeued = fail_and_requeue(self.study, self.storage, frozen, reason, self.requeue)
            if requeued:
                log.warning(
                    "trial %d: %s; failed it and re-queued its configuration", trial.number, reason
                )
                self.states["REQUEUED"] += 1
            else:
                self._lost(trial)
        except Exception as error:  # storage down: the trial will be swept as stale
            log.error("could not re-queue trial %d (%s); others will sweep it", trial.number, error)

    def _tell(
        self, trial: optuna.Trial, state: TrialState, value: float | None, reason: str
    ) -> TrialState | None:
        """Record the end; None when the trial was not this worker's any more."""
        try:
            if state is TrialState.FAIL:
                trial.set_user_attr(attrs.FAIL_REASON, reason)
            self.study.tell(trial, value if state is TrialState.COMPLETE else None, state=state)
            return state
        except Exception as error:
            try:
                now = self.storage.get_trial(trial_id(trial)).state
            except Exception:
                now = TrialState.RUNNING
            if now is state:  # recorded; the error came after (e.g. a sampler's hook)
                log.warning("trial %d recorded as %s, then: %s", trial.number, state.name, error)
                return state
            if now.is_finished():
                self._lost(trial)
                return None
            log.error(
                "could not record trial %d (%s); it stays RUNNING until a worker sweeps it as "
                "stale and re-queues it",
                trial.number,
                error,
            )
            return None

    def _log_end(
        self,
        trial: optuna.Trial,
        state: TrialState,
        value: float | None,
        seconds: float,
        reason: str,
    ) -> None:
        params = ", ".join(f"{name}={_short(item)}" for name, item in trial.params.items())
        shown = f"{value:.4f}" if state is TrialState.COMPLETE and value is not None else reason
        log.info(
            "trial %d %s%s in %.1f s (%s)",
            trial.number,
            state.name,
            f" {shown}" if shown else "",
            seconds,
            params,
        )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
