"""The trainer on tiny synthetic data: determinism, early stopping, selection, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from spectune.datasets.cache import build_graphs
from spectune.datasets.synthetic import TINY, make_synthetic
from spectune.study.build import build_model
from spectune.study.checkpoint import load_checkpoint, save_checkpoint
from spectune.study.config import RunConfig, build_config
from spectune.study.run import PreparedData, train
from spectune.study.trainer import EpochResult, NonFiniteError, Trainer

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny() -> PreparedData:
    dataset = make_synthetic(TINY, seed=0)
    return PreparedData(dataset, build_graphs(dataset, 5, None), 0.0)


def tiny_config(**overrides: object) -> RunConfig:
    base = {
        "dataset": TINY.name,
        "knn_k": 5,
        "embedding_size": 16,
        "batch_size": 128,
        "epochs": 4,
        "topk": [5, 10, 20],
        "learning_rate": 0.01,
    }
    return build_config({}, base | overrides)


@pytest.mark.parametrize("use_damps", [True, False])
def test_same_seed_gives_identical_runs(tiny: PreparedData, use_damps: bool) -> None:
    config = tiny_config(use_damps=use_damps)
    first, _ = train(config, tiny, CPU)
    second, _ = train(config, tiny, CPU)
    assert [e.loss for e in first.history] == [e.loss for e in second.history]
    assert first.valid == second.valid and first.test == second.test
    assert first.epochs_run == 4 and first.stopped_by == "epochs"
    assert all(math.isfinite(e.loss) for e in first.history)
    other, _ = train(tiny_config(use_damps=use_damps, seed=1), tiny, CPU)
    assert [e.loss for e in other.history] != [e.loss for e in first.history]


def scripted_trainer(
    tiny: PreparedData, values: list[float], patience: int
) -> tuple[Trainer, list]:
    """A trainer whose validation metric follows ``values``; records the weights per epoch."""
    config = tiny_config(epochs=len(values), patience=patience)
    torch.manual_seed(0)
    trainer = Trainer(config, tiny.dataset, build_model(config, tiny.dataset, tiny.graphs), CPU)
    script = iter(values)
    real_evaluate = trainer.evaluate
    test_calls: list[int] = []

    def evaluate(evaluator):  # type: ignore[no-untyped-def]
        if evaluator is trainer.valid_evaluator:
            return {**real_evaluate(evaluator), "recall@20": next(script)}
        test_calls.append(1)
        return real_evaluate(evaluator)

    trainer.evaluate = evaluate  # type: ignore[method-assign]
    return trainer, test_calls


def test_early_stopping_counts_epochs_and_restores_the_best(tiny: PreparedData) -> None:
    trainer, test_calls = scripted_trainer(
        tiny, [0.1, 0.2, 0.2, 0.15, 0.1, 0.1, 0.3, 0.4], patience=2
    )
    snapshots: dict[int, torch.Tensor] = {}

    def remember(result: EpochResult) -> None:
        snapshots[result.epoch] = trainer.model.user_embedding.detach().clone()

    result = trainer.fit(remember)
    # a tie counts as an improvement (MMRec): best is epoch 2; epochs 3, 4, 5 bring none -> stop
    assert result.best_epoch == 2 and result.epochs_run == 6 and result.stopped_by == "patience"
    assert result.valid["recall@20"] == 0.2
    assert torch.equal(trainer.model.user_embedding, snapshots[2])
    assert not torch.equal(snapshots[2], snapshots[5])
    assert len(test_calls) == 1  # the test split is ranked once, after training


def test_callback_can_stop_and_can_raise(tiny: PreparedData) -> None:
    trainer, _ = scripted_trainer(tiny, [0.1, 0.3, 0.2, 0.1], patience=10)
    seen: list[int] = []
    result = trainer.fit(lambda r: seen.append(r.epoch) or r.epoch == 1)
    assert seen == [0, 1] and result.stopped_by == "callback" and result.best_epoch == 1

    class Pruned(Exception):
        pass

    def prune(result: EpochResult) -> bool:
        raise Pruned

    trainer, _ = scripted_trainer(tiny, [0.1, 0.3], patience=10)
    with pytest.raises(Pruned):
        trainer.fit(prune)


def test_non_finite_loss_raises_a_clear_error(tiny: PreparedData) -> None:
    config = tiny_config()
    trainer = Trainer(config, tiny.dataset, build_model(config, tiny.dataset, tiny.graphs), CPU)
    with torch.no_grad():
        trainer.model.user_embedding.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="training loss is nan at epoch 0"):
        trainer.fit()


def test_checkpoint_reload_reproduces_test_metrics(tiny: PreparedData, tmp_path: Path) -> None:
    config = tiny_config(epochs=3)
    result, model = train(config, tiny, CPU)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, result)
    loaded_config, payload = load_checkpoint(path)
    assert loaded_config == config
    fresh = build_model(loaded_config, tiny.dataset, tiny.graphs)
    fresh.load_state_dict(payload["state_dict"])
    trainer = Trainer(loaded_config, tiny.dataset, fresh, CPU)
    assert trainer.evaluate(trainer.test_evaluator) == result.test == payload["test"]
    assert trainer.evaluate(trainer.valid_evaluator) == result.valid
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary left behind
