"""`spectune train` end to end: result JSON, checkpoint, seed flags, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spectune.datasets.mmrec import load_dataset
from spectune.datasets.synthetic import TINY, make_synthetic, write_mmrec
from spectune.study.cli import main
from spectune.study.evaluation import RankingEvaluator

TINY_SETTINGS = [
    "--set",
    "knn_k=5",
    "--set",
    "embedding_size=16",
    "--set",
    "batch_size=128",
    "--set",
    "epochs=2",
    "--set",
    "topk=[5,10,20]",
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_mmrec(make_synthetic(TINY, seed=0), root / TINY.name)
    return root


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("no_damps", [False, True])
def test_train_writes_result_and_checkpoint(
    data_root: Path, tmp_path: Path, no_damps: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run" / "result.json"
    args = [
        "train",
        "-m",
        "MGCN",
        "-d",
        TINY.name,
        "-g",
        "-1",
        "--data-root",
        str(data_root),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
        *TINY_SETTINGS,
    ]
    code, stdout, _ = run([*args, "--no-damps"] if no_damps else args, capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert result["config"]["model"]["use_damps"] is not no_damps
    assert result["config"]["dataset"] == TINY.name and result["config"]["train"]["epochs"] == 2
    assert result["epochs_run"] == 2 and 0 <= result["best_epoch"] < 2
    assert set(result["valid"]) == set(result["test"]) and "ndcg@20" in result["test"]
    assert (
        result["valid"]["recall@20"]
        == result["history"][result["best_epoch"]]["valid"]["recall@20"]
    )
    assert result["seconds_per_epoch"] > 0
    payload = torch.load(result["checkpoint"], weights_only=True)
    assert payload["test"] == result["test"]
    assert ("MGCN+DAMPS" in stdout) is not no_damps and "selected by valid recall@20" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-d", "nowhere"], "no dataset directory"),
        (["-d", "baby"], "Google Drive"),
        (["-d", TINY.name, "--set", "knn_k=ten"], "model.knn_k must be an integer"),
        (["-d", TINY.name, "--set", "bnad_high=0.5"], "did you mean band_high"),
        (["-m", "SMORE", "-d", TINY.name], "spectune trains MGCN"),
        (["-d", TINY.name, "--config", "missing.yaml"], "cannot read config file"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(
    data_root: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run" / "result.json"
    code, _, stderr = run(
        ["train", "-g", "-1", "--data-root", str(data_root), "--out", str(out), *args], capsys
    )
    assert code == 2
    assert message in stderr and stderr.startswith("spectune train: error:")
    assert not out.parent.exists()


def popularity_recall(data_root: Path, name: str) -> float:
    """Validation Recall@20 of ranking every item by its train interaction count."""
    dataset = load_dataset(name, data_root)
    counts = np.bincount(dataset.train.items, minlength=dataset.n_items).astype(np.float32)
    evaluator = RankingEvaluator(
        dataset.n_items, dataset.train, dataset.valid, (20,), 4096, torch.device("cpu")
    )
    users = torch.ones(dataset.n_users, 1)
    return evaluator.evaluate(users, torch.from_numpy(counts)[:, None])["recall@20"]


@pytest.mark.slow
@pytest.mark.parametrize("no_damps", [False, True])
def test_ml100k_until_early_stopping_beats_popularity(
    shared_data: Path, tmp_path: Path, no_damps: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result.json"
    args = [
        "train",
        "-d",
        "ml-100k",
        "-g",
        "-1",
        "--data-root",
        str(shared_data),
        "--out",
        str(out),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--set",
        "patience=3",
        "--set",
        "epochs=60",
        # 10x the seed's rate: on ml-100k the default needs ~20 epochs to leave its plateau
        "--set",
        "learning_rate=0.01",
    ]
    code, _, _ = run([*args, "--no-damps"] if no_damps else args, capsys)
    assert code == 0
    result = json.loads(out.read_text())
    assert result["stopped_by"] == "patience"
    popularity = popularity_recall(shared_data, "ml-100k")
    assert popularity == pytest.approx(0.1003, abs=1e-4)
    assert result["valid"]["recall@20"] > 1.5 * popularity
    assert result["test"]["recall@20"] > 0.1
