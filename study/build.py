"""RunConfig + prepared data -> the model to train (the only place configs meet torch modules)."""

from __future__ import annotations

import logging
import warnings

import scipy.sparse as sp
import torch
from torch import nn

from spectune.datasets.cache import Graphs
from spectune.datasets.mmrec import Dataset
from spectune.models.controls import LinearControl
from spectune.models.damps import DAMPS
from spectune.models.filters import FeatureFilter
from spectune.models.mgcn import MGCN
from spectune.study.config import ModelConfig, RunConfig
from spectune.study.typed import ConfigError

log = logging.getLogger(__name__)


def knn_sizes(model: ModelConfig, modalities: tuple[str, ...]) -> dict[str, int]:
    """kNN size per modality: ``knn_k`` for all, ``second_knn_k`` for the second if set."""
    sizes = {name: model.knn_k for name in modalities}
    if model.second_knn_k is not None and len(modalities) > 1:
        sizes[modalities[1]] = model.second_knn_k
    return sizes


def check_compatible(config: RunConfig, dataset: Dataset) -> None:
    """Reject settings the dataset cannot support, before any tensor is built."""
    if config.model.use_damps and len(dataset.modalities) != 2:
        raise ConfigError(
            f"DAMPS calibrates a pair of modalities, but dataset {dataset.name} has "
            f"{len(dataset.modalities)} ({', '.join(dataset.modalities)}); "
            "train vanilla MGCN with --no-damps (model.use_damps=false)"
        )
    largest_k = max(knn_sizes(config.model, dataset.modalities).values())
    if largest_k > dataset.n_items:
        raise ConfigError(
            f"knn_k {largest_k} exceeds the {dataset.n_items} items of {dataset.name}"
        )


def sparse_tensor(matrix: sp.spmatrix) -> torch.Tensor:
    """scipy CSR -> torch sparse CSR (fastest sparse x dense product on CPU, supported on CUDA)."""
    csr = sp.csr_matrix(matrix, dtype="float32")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(csr.indptr.astype("int64")),
            torch.from_numpy(csr.indices.astype("int64")),
            torch.from_numpy(csr.data),
            size=csr.shape,
            check_invariants=False,  # built from a valid scipy CSR just above
        )


def build_model(config: RunConfig, dataset: Dataset, graphs: Graphs) -> MGCN:
    """Build MGCN (with DAMPS, the linear control or nothing) on CPU; the caller moves it."""
    check_compatible(config, dataset)
    model_config = config.model
    tables = [
        nn.Parameter(torch.from_numpy(dataset.features[name]).clone())
        for name in dataset.modalities
    ]
    feature_filter: FeatureFilter | None = None
    if model_config.use_damps:
        feature_filter = DAMPS(model_config.embedding_size, tables, config.damps)
    elif model_config.control == "linear":
        feature_filter = LinearControl(model_config.embedding_size, len(tables))
    return MGCN(
        n_users=dataset.n_users,
        n_items=dataset.n_items,
        features=tables,
        adjacency=sparse_tensor(graphs.adjacency),
        user_item=sparse_tensor(graphs.user_item),
        item_graphs=[sparse_tensor(graphs.item_item[name]) for name in dataset.modalities],
        embedding_dim=model_config.embedding_size,
        n_layers=model_config.n_layers,
        n_ui_layers=model_config.n_ui_layers,
        reg_weight=model_config.reg_weight,
        cl_weight=model_config.cl_loss,
        temperature=model_config.temperature,
        reg_batch_size=config.train.batch_size,
        feature_filter=feature_filter,
    )
