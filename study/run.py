"""One training run end to end: data -> graphs -> model -> trainer -> result + checkpoint."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from spectune.datasets.cache import Graphs, build_graphs
from spectune.datasets.mmrec import Dataset, load_dataset
from spectune.study.build import build_model, check_compatible, knn_sizes
from spectune.study.config import RunConfig
from spectune.study.trainer import EpochCallback, Trainer, TrainResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    dataset: Dataset
    graphs: Graphs
    seconds: float


def prepare(config: RunConfig, data_root: Path, cache_dir: Path | None) -> PreparedData:
    """Read and validate the dataset, then build (or load cached) graphs; no model yet."""
    if config.dataset is None:
        raise ValueError("no dataset given: pass -d NAME or set `dataset:` in the config file")
    started = time.perf_counter()
    dataset = load_dataset(config.dataset, data_root)
    check_compatible(config, dataset)
    graphs = build_graphs(dataset, knn_sizes(config.model, dataset.modalities), cache_dir)
    return PreparedData(dataset, graphs, time.perf_counter() - started)


def train(
    config: RunConfig,
    data: PreparedData,
    device: torch.device,
    callback: EpochCallback | None = None,
    progress: bool = False,
) -> tuple[TrainResult, torch.nn.Module]:
    """Seed, build, fit. Returns the result and the model holding the best epoch's weights."""
    torch.manual_seed(config.train.seed)
    model = build_model(config, data.dataset, data.graphs)
    trainer = Trainer(config, data.dataset, model, device)
    result = trainer.fit(callback, progress)
    return result, trainer.model
