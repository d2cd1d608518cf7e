"""Device selection from ``-g/--gpu``."""

from __future__ import annotations

import torch

from spectune.study.typed import ConfigError


def select_device(gpu: int | None) -> torch.device:
    """``None``: GPU 0 when CUDA is present, else CPU. ``-1``: CPU. ``N``: GPU N (must exist)."""
    if gpu is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if gpu < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"-g {gpu} asks for GPU {gpu}, but CUDA is not available; use -g -1 for CPU"
        )
    if gpu >= torch.cuda.device_count():
        raise ConfigError(f"-g {gpu}: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device(f"cuda:{gpu}")
