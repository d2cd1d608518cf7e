"""Epoch-by-epoch training with full-ranking validation and early stopping.

One epoch: shuffle the train pairs, draw one negative per pair, BPR mini-batches with Adam, then
rank all items for every validation user. Selection reads validation metrics only: the best
epoch's weights are restored at the end and the test split is ranked once, with those weights.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from spectune.datasets.mmrec import Dataset
from spectune.models.mgcn import MGCN
from spectune.study.config import RunConfig
from spectune.study.evaluation import RankingEvaluator
from spectune.study.sampling import NegativeSampler

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinite loss or metric; the run cannot be trusted."""


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 0-based
    loss: float  # mean training loss over the epoch's batches
    valid: dict[str, float]
    train_seconds: float
    eval_seconds: float


# Called after every epoch; returning True stops training (the best epoch so far is kept).
# It may raise (a pruner's TrialPruned, say): the exception leaves `fit` unchanged.
EpochCallback = Callable[[EpochResult], bool | None]


@dataclass(frozen=True)
class TrainResult:
    config: dict[str, Any]
    best_epoch: int
    valid: dict[str, float]  # at the best epoch
    test: dict[str, float]  # at the best epoch, computed once after training
    epochs_run: int
    stopped_by: str  # "patience", "epochs" or "callback"
    seconds_per_epoch: float
    eval_seconds: float
    history: list[EpochResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "best_epoch": self.best_epoch,
            "valid": self.valid,
            "test": self.test,
            "epochs_run": self.epochs_run,
            "stopped_by": self.stopped_by,
            "seconds_per_epoch": self.seconds_per_epoch,
            "seconds_per_evaluation": self.eval_seconds,
            "history": [
                {
                    "epoch": e.epoch,
                    "loss": e.loss,
                    "valid": e.valid,
                    "train_seconds": e.train_seconds,
                }
                for e in self.history
            ],
        }


def check_finite(name: str, value: float, epoch: int) -> None:
    if not math.isfinite(value):
        raise NonFiniteError(
            f"{name} is {value} at epoch {epoch}; lower learning_rate or check the data"
        )


class Trainer:
    """Trains one model on one dataset; ``fit`` can be driven by a per-epoch callback."""

    def __init__(
        self, config: RunConfig, dataset: Dataset, model: MGCN, device: torch.device
    ) -> None:
        self.config = config
        self.dataset = dataset
        self.device = device
        self.model = model.to(device)
        train = config.train
        self._rng = np.random.default_rng(train.seed)
        self._sampler = NegativeSampler(dataset.n_items, dataset.train)
        # fused Adam: one kernel per parameter group instead of several temporaries the size of
        # the 4096-d feature table (the official run spends a quarter of its epoch there).
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=train.learning_rate, fused=True
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda epoch: train.lr_decay ** (epoch / train.lr_decay_step)
        )
        self.valid_evaluator = RankingEvaluator(
            dataset.n_items, dataset.train, dataset.valid, train.topk, train.eval_batch_size, device
        )
        self.test_evaluator = RankingEvaluator(
            dataset.n_items, dataset.train, dataset.test, train.topk, train.eval_batch_size, device
        )

    def train_epoch(self, epoch: int, progress: bool = False) -> float:
        """One pass over the shuffled train pairs; returns the mean batch loss."""
        train = self.dataset.train
        order = self._rng.permutation(len(train.users))
        users = train.users[order]
        positives = train.items[order]
        negatives = self._sampler.sample(users, self._rng)
        batch_size = self.config.train.batch_size
        starts = range(0, len(users), batch_size)
        self.model.train()
        total = torch.zeros((), device=self.device)
        for start in tqdm(
            starts, desc=f"epoch {epoch}", leave=False, disable=not progress, unit="batch"
        ):
            batch = slice(start, start + batch_size)
            loss = self.model.calculate_loss(
                torch.from_numpy(users[batch]).to(self.device),
                torch.from_numpy(positives[batch]).to(self.device),
                torch.from_numpy(negatives[batch]).to(self.device),
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.detach()
        self.scheduler.step()
        mean = total.item() / len(starts)
        check_finite("training loss", mean, epoch)
        return mean

    @torch.no_grad()
    def evaluate(self, evaluator: RankingEvaluator) -> dict[str, float]:
        self.model.eval()
        users, items = self.model.final_embeddings()
        return evaluator.evaluate(users, items)

    def fit(self, callback: EpochCallback | None = None, progress: bool = False) -> TrainResult:
        train = self.config.train
        metric = train.valid_metric
        best_value = -math.inf  # every ranking metric here is higher-is-better
        best_epoch, best_valid, best_state = -1, {}, None
        since_best = 0
        history: list[EpochResult] = []
        stopped_by = "epochs"
        for epoch in range(train.epochs):
            started = time.perf_counter()
            loss = self.train_epoch(epoch, progress)
            trained = time.perf_counter()
            valid = self.evaluate(self.valid_evaluator)
            evaluated = time.perf_counter()
            check_finite(f"validation {metric}", valid[metric], epoch)
            result = EpochResult(epoch, loss, valid, trained - started, evaluated - trained)
            history.append(result)
            # MMRec: a tie counts as an improvement; stop after `patience` epochs without one.
            if valid[metric] >= best_value:
                best_value, best_epoch, best_valid, since_best = valid[metric], epoch, valid, 0
                best_state = copy.deepcopy(self.model.state_dict())
            else:
                since_best += 1
            log.info(
                "epoch %d loss %.4f valid %s %.4f (best %.4f at %d) %.1fs + %.1fs",
                epoch,
                loss,
                metric,
                valid[metric],
                best_value,
                best_epoch,
                result.train_seconds,
                result.eval_seconds,
            )
            if callback is not None and callback(result):
                stopped_by = "callback"
                break
            if since_best > train.patience:
                stopped_by = "patience"
                break
        assert best_state is not None
        self.model.load_state_dict(best_state)
        test = self.evaluate(self.test_evaluator)
        return TrainResult(
            config=self.config.to_dict(),
            best_epoch=best_epoch,
            valid=best_valid,
            test=test,
            epochs_run=len(history),
            stopped_by=stopped_by,
            seconds_per_epoch=float(np.mean([e.train_seconds for e in history])),
            eval_seconds=float(np.mean([e.eval_seconds for e in history])),
            history=history,
        )
