"""Checkpoints: the resolved config, the learned state and the metrics they reproduce."""

from __future__ import annotations

import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from spectune.study.config import RunConfig, build_config
from spectune.study.trainer import TrainResult

FORMAT = 1


def save_checkpoint(path: Path, model: torch.nn.Module, result: TrainResult) -> None:
    """Write atomically (temp file + rename) so a killed run never leaves half a checkpoint."""
    payload = {
        "format": FORMAT,
        "config": result.config,
        "state_dict": model.state_dict(),
        "best_epoch": result.best_epoch,
        "valid": result.valid,
        "test": result.test,
        "versions": {"spectune": metadata.version("spectune"), "torch": str(torch.__version__)},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> tuple[RunConfig, dict[str, Any]]:
    """-> (config, payload). Only tensors and plain values are unpickled (weights_only)."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {payload.get('format')!r}")
    return build_config(payload["config"]), payload
