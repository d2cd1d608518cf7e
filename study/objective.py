"""The MGCN+DAMPS objective: one trial = one training run, reported epoch by epoch.

Each epoch's validation metric is reported once (step = epoch index from 0), then the pruner is
asked. The trial's value is the best validation metric; the test metrics of that epoch are stored
as a trial attribute for reports and are never returned, so neither the sampler nor selection can
see them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch

from spectune.storage import attrs
from spectune.study import settings
from spectune.study.checkpoint import save_checkpoint
from spectune.study.config import RunConfig, build_config
from spectune.study.run import PreparedData, prepare, train
from spectune.study.space import parse_space
from spectune.study.spec import StudySpec
from spectune.study.trainer import EpochResult, TrainResult

if TYPE_CHECKING:
    from spectune.study.worker import Progress

log = logging.getLogger(__name__)


def base_config(spec: StudySpec) -> RunConfig:
    """What every trial of ``spec`` starts from before its sampled parameters."""
    return build_config(
        {"dataset": spec.dataset},
        {"epochs": spec.epochs, "valid_metric": spec.metric},
    )


class DataCache:
    """Prepared data per graph setting: trials with the same knn_k share one read and build."""

    def __init__(self, data_root: Path, cache_dir: Path) -> None:
        self._data_root = data_root
        self._cache_dir = cache_dir
        self._prepared: dict[tuple[int, int | None], PreparedData] = {}

    def get(self, config: RunConfig) -> PreparedData:
        key = (config.model.knn_k, config.model.second_knn_k)
        if key not in self._prepared:
            self._prepared.clear()  # keep one graph set in memory, not one per knn_k ever seen
            self._prepared[key] = prepare(config, self._data_root, self._cache_dir)
        return self._prepared[key]


def run_trial(
    trial: optuna.Trial,
    config: RunConfig,
    data: DataCache,
    spec: StudySpec,
    device: str,
    progress: Progress,
) -> float:
    """Train ``config`` for ``trial``: report each epoch, prune, store results; best valid."""
    prepared = data.get(config)
    trial.set_user_attr(attrs.CONFIG, config.to_dict())
    metric = spec.metric
    train_seconds: list[float] = []
    with progress.epochs(config.train.epochs, trial.number) as bar:

        def report(epoch: EpochResult) -> bool:
            value = epoch.valid[metric]
            train_seconds.append(epoch.train_seconds)
            trial.set_user_attr(attrs.EPOCH_SECONDS, sum(train_seconds) / len(train_seconds))
            trial.report(value, epoch.epoch)
            bar.advance(value)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric} {value:.4f} at epoch {epoch.epoch}")
            return False

        result, model = train(config, prepared, torch.device(device), report)
    store_result(trial, spec, result, model)
    return result.valid[metric]


def store_result(
    trial: optuna.Trial, spec: StudySpec, result: TrainResult, model: torch.nn.Module
) -> None:
    summary = result.to_dict()
    summary.pop("config")  # stored on its own
    trial.set_user_attr(attrs.RESULT, summary)
    trial.set_user_attr(attrs.TEST_METRICS, result.test)
    path = settings.artifact_dir(None) / spec.study_name / f"trial-{trial.number}" / "model.pt"
    save_checkpoint(path, model, result)
    trial.set_user_attr(attrs.CHECKPOINT, str(path.resolve()))


def make_objective(
    spec: StudySpec, device: str, progress: Progress
) -> Callable[[optuna.Trial], float]:
    """The search objective: sample a config from the study's space, train it."""
    space = parse_space(spec.search_space, f"the search space of study {spec.study_name}")
    base = base_config(spec)
    data = DataCache(settings.data_root(spec.data_root), settings.cache_dir(None))

    def objective(trial: optuna.Trial) -> float:
        return run_trial(trial, space.config(trial, base), data, spec, device, progress)

    return objective
