"""MGCN on tiny synthetic graphs, with and without feature filters."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import pytest
import torch
from torch import Tensor, nn

from spectune.models.controls import LinearControl
from spectune.models.damps import DAMPS, DampsConfig
from spectune.models.filters import FeatureFilter
from spectune.models.mgcn import MGCN, feature_parameters

N_USERS = 6
N_ITEMS = 9
DIM = 8


@dataclass
class TinyData:
    features: list[Tensor]
    adjacency: Tensor  # dense (U+N) x (U+N)
    user_item: Tensor  # dense U x N
    item_graphs: list[Tensor]  # dense N x N each

    def sparse(self, layout: str = "coo") -> dict[str, object]:
        def convert(matrix: Tensor) -> Tensor:
            return matrix.to_sparse() if layout == "coo" else matrix.to_sparse_csr()

        return {
            "adjacency": convert(self.adjacency),
            "user_item": convert(self.user_item),
            "item_graphs": [convert(g) for g in self.item_graphs],
        }


def _sym_normalise(matrix: Tensor) -> Tensor:
    degree = matrix.sum(dim=1)
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt[torch.isinf(inv_sqrt)] = 0.0
    return inv_sqrt[:, None] * matrix * inv_sqrt[None, :]


def tiny_data(
    widths: tuple[int, ...] = (12, 5), seed: int = 0, dtype: torch.dtype = torch.float32
) -> TinyData:
    generator = torch.Generator().manual_seed(seed)
    interactions = (torch.rand(N_USERS, N_ITEMS, generator=generator) < 0.35).to(dtype)
    interactions[torch.arange(N_USERS), torch.arange(N_USERS)] = 1.0  # nobody is isolated
    n_nodes = N_USERS + N_ITEMS
    bipartite = torch.zeros(n_nodes, n_nodes, dtype=dtype)
    bipartite[:N_USERS, N_USERS:] = interactions
    bipartite[N_USERS:, :N_USERS] = interactions.T
    adjacency = _sym_normalise(bipartite)
    features = [torch.randn(N_ITEMS, w, generator=generator, dtype=dtype) for w in widths]
    graphs = []
    for f in features:
        unit = f / f.norm(dim=1, keepdim=True)
        knn = (unit @ unit.T).topk(3, dim=1).indices
        graphs.append(
            _sym_normalise(torch.zeros(N_ITEMS, N_ITEMS, dtype=dtype).scatter(1, knn, 1.0))
        )
    return TinyData(features, adjacency, adjacency[:N_USERS, N_USERS:].clone(), graphs)


FilterFactory = Callable[[list[nn.Parameter]], FeatureFilter | None]


def build(
    make_filter: FilterFactory | None = None,
    data: TinyData | None = None,
    seed: int = 0,
    layout: str = "coo",
    **kwargs: object,
) -> MGCN:
    data = data or tiny_data()
    torch.manual_seed(seed)
    tables = feature_parameters(data.features)
    feature_filter = make_filter(tables) if make_filter is not None else None
    options = {"embedding_dim": DIM, **kwargs}
    return MGCN(
        N_USERS, N_ITEMS, tables, feature_filter=feature_filter, **data.sparse(layout), **options
    )


def damps(config: DampsConfig | None = None) -> FilterFactory:
    return lambda tables: DAMPS(DIM, tables, config or DampsConfig())


def linear_control(tables: list[nn.Parameter]) -> FeatureFilter:
    return LinearControl(DIM, len(tables))


FILTERS: dict[str, FilterFactory | None] = {
    "vanilla": None,
    "damps_own": damps(),
    "damps_backbone": damps(DampsConfig(input_source="backbone")),
    "linear_control": linear_control,
    "shuffled_spectrum": damps(DampsConfig(shuffle_spectrum=True)),
}

BATCH = (
    torch.tensor([0, 1, 2, 5, 3]),
    torch.tensor([0, 1, 2, 5, 7]),
    torch.tensor([4, 8, 6, 0, 1]),
)


@contextmanager
def float64_default() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


# ---------------------------------------------------------------- a dense reference


def dense_forward(model: MGCN, data: TinyData) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """MGCN's propagation written with dense matrices, from the model's parameters."""

    def linear(layer: nn.Linear, x: Tensor) -> Tensor:
        return x @ layer.weight.T + (0 if layer.bias is None else layer.bias)

    features = [
        linear(proj, t) for proj, t in zip(model.projections, model.feature_tables, strict=True)
    ]
    views = []
    for m, p in enumerate(features):
        h = model.item_embedding * torch.sigmoid(linear(model.purifier_gates[m], p))
        for _ in range(model.n_layers):
            h = data.item_graphs[m] @ h
        views.append(torch.cat([data.user_item @ h, h]))
    layers = [torch.cat([model.user_embedding, model.item_embedding])]
    for _ in range(model.n_ui_layers):
        layers.append(data.adjacency @ layers[-1])
    content = sum(layers) / len(layers)
    first, _, last = model.fuser_query
    scores = torch.cat([linear(last, torch.tanh(linear(first, v))) for v in views], dim=1)
    weights = torch.exp(scores) / torch.exp(scores).sum(dim=1, keepdim=True)
    common = sum(weights[:, m : m + 1] * v for m, v in enumerate(views))
    specific = sum(
        (v - common) * torch.sigmoid(linear(model.preference_gates[m], content))
        for m, v in enumerate(views)
    )
    side = (specific + common) / (len(views) + 1)
    final = content + side
    return final[:N_USERS], final[N_USERS:], side, content


def dense_loss(model: MGCN, data: TinyData) -> Tensor:
    users_final, items_final, side, content = dense_forward(model, data)
    users, pos, neg = BATCH
    u, p, n = users_final[users], items_final[pos], items_final[neg]
    bpr = -torch.log(torch.sigmoid((u * p).sum(1) - (u * n).sum(1))).mean()
    reg = 0.5 * (u.square().sum() + p.square().sum() + n.square().sum()) / model.reg_batch_size

    def nce(a: Tensor, b: Tensor) -> Tensor:
        a = a / a.norm(dim=1, keepdim=True)
        b = b / b.norm(dim=1, keepdim=True)
        pos_score = torch.exp((a * b).sum(1) / model.temperature)
        total = torch.exp(a @ b.T / model.temperature).sum(1)
        return -torch.log(pos_score / total).mean()

    cl = nce(side[N_USERS:][pos], content[N_USERS:][pos]) + nce(
        side[:N_USERS][users], content[:N_USERS][users]
    )
    return bpr + model.reg_weight * reg + model.cl_weight * cl


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize(("n_layers", "n_ui_layers"), [(1, 2), (2, 1), (0, 0)])
def test_forward_and_loss_match_dense_reference(
    layout: str, n_layers: int, n_ui_layers: int
) -> None:
    data = tiny_data(widths=(12, 5, 3), dtype=torch.float64)
    with float64_default():
        model = build(
            data=data,
            layout=layout,
            n_layers=n_layers,
            n_ui_layers=n_ui_layers,
            reg_weight=0.3,
            cl_weight=0.2,
            temperature=0.4,
            reg_batch_size=4,
        )
    with torch.no_grad():
        actual = model()
        expected = dense_forward(model, data)
        for a, e in zip(actual, expected, strict=True):
            torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(
            model.calculate_loss(*BATCH), dense_loss(model, data), rtol=1e-6, atol=1e-9
        )


def test_loss_divides_regularizer_by_configured_batch_size() -> None:
    data = tiny_data(dtype=torch.float64)
    with float64_default():
        small = build(data=data, reg_weight=1.0, cl_weight=0.0, reg_batch_size=5)
        large = build(data=data, reg_weight=1.0, cl_weight=0.0, reg_batch_size=2048)
    with torch.no_grad():
        users_final, items_final, _, _ = small()
        users, pos, neg = BATCH
        squares = sum(
            0.5 * e.square().sum() for e in (users_final[users], items_final[pos], items_final[neg])
        )
        difference = small.calculate_loss(*BATCH) - large.calculate_loss(*BATCH)
    assert difference.item() == pytest.approx(squares.item() / 5 - squares.item() / 2048, rel=1e-9)


# ---------------------------------------------------------------- every filter, every size


@pytest.mark.parametrize("kind", list(FILTERS))
def test_shapes_finiteness_and_prediction(kind: str) -> None:
    model = build(FILTERS[kind])
    users_final, items_final, side, content = model()
    assert users_final.shape == (N_USERS, DIM)
    assert items_final.shape == (N_ITEMS, DIM)
    assert side.shape == content.shape == (N_USERS + N_ITEMS, DIM)
    assert all(torch.isfinite(t).all() for t in (users_final, items_final, side, content))
    loss = model.calculate_loss(*BATCH)
    assert loss.dim() == 0 and torch.isfinite(loss)
    with torch.no_grad():
        scores = model.full_sort_predict(torch.tensor([1, 4]))
        users_final, items_final = model.final_embeddings()
    assert scores.shape == (2, N_ITEMS)
    torch.testing.assert_close(scores, users_final[[1, 4]] @ items_final.T)


@pytest.mark.parametrize("kind", list(FILTERS))
def test_gradients_reach_embeddings_and_tables(kind: str) -> None:
    model = build(FILTERS[kind])
    model.calculate_loss(*BATCH).backward()
    for param in (model.user_embedding, model.item_embedding, *model.feature_tables):
        assert param.grad is not None and param.grad.abs().sum() > 0
    own = kind in ("damps_own", "shuffled_spectrum")
    for proj in model.projections:
        # own-input DAMPS reads the tables itself: MGCN's projections stay out of the graph
        assert (proj.weight.grad is None) == own
    if model.feature_filter is not None:
        for name, param in model.feature_filter.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kind", ["vanilla", "linear_control"])
@pytest.mark.parametrize("widths", [(7,), (12, 5, 3)])
def test_other_modality_counts(kind: str, widths: tuple[int, ...]) -> None:
    model = build(FILTERS[kind], data=tiny_data(widths=widths))
    loss = model.calculate_loss(*BATCH)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.item_embedding.grad is not None


@pytest.mark.parametrize("widths", [(7,), (12, 5, 3)])
def test_damps_rejects_other_modality_counts(widths: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="DAMPS needs exactly two modalities"):
        build(damps(), data=tiny_data(widths=widths))


def test_filter_modality_count_must_match() -> None:
    with pytest.raises(ValueError, match="takes 2 modalities; MGCN has 3"):
        build(lambda tables: LinearControl(DIM, 2), data=tiny_data(widths=(4, 5, 6)))


# ---------------------------------------------------------------- the shared feature tables


def test_own_input_shares_feature_tables_with_mgcn() -> None:
    model = build(damps())
    filt = model.feature_filter
    assert isinstance(filt, DAMPS)
    for ours, theirs in zip(model.feature_tables, filt.feature_tables, strict=True):
        assert ours is theirs
        assert ours.data_ptr() == theirs.data_ptr()
    # each table is one optimiser parameter, not two
    tables = {id(t) for t in model.feature_tables}
    assert sum(id(p) in tables for p in model.parameters()) == len(tables)
    model.double()
    assert all(a is b for a, b in zip(model.feature_tables, filt.feature_tables, strict=True))


def test_feature_parameters_copy_tensors_and_keep_parameters() -> None:
    data = tiny_data()
    tables = feature_parameters(data.features)
    assert tables[0].data_ptr() != data.features[0].data_ptr()
    assert feature_parameters(tables)[0] is tables[0]
    model = build(data=data)
    with torch.no_grad():
        model.feature_tables[0].add_(1.0)
    assert not torch.equal(model.feature_tables[0], data.features[0])  # the input is untouched


def test_own_input_rejects_unshared_tables() -> None:
    data = tiny_data()
    torch.manual_seed(0)
    other = feature_parameters(data.features)
    with pytest.raises(ValueError, match=r"same\s+nn\.Parameter objects"):
        MGCN(
            N_USERS,
            N_ITEMS,
            data.features,
            embedding_dim=DIM,
            feature_filter=DAMPS(DIM, other),
            **data.sparse(),
        )


# ---------------------------------------------------------------- state and switches


def test_state_dict_keys() -> None:
    vanilla = build().state_dict()
    assert not any("filter" in k or "damps" in k for k in vanilla)
    assert not any(k in vanilla for k in ("adjacency", "user_item", "item_graph_0"))
    with_damps = build(damps()).state_dict()
    for key in ("psi", "avg_phase_gap", "gains.0", "gains.1", "fusion_logits"):
        assert f"feature_filter.{key}" in with_damps
    assert set(vanilla) < set(with_damps)


def test_checkpoint_round_trip() -> None:
    model = build(damps(DampsConfig(psi_init_scale=0.2)), seed=0)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    model.calculate_loss(*BATCH).backward()
    optimiser.step()
    restored = build(damps(DampsConfig(psi_init_scale=0.2)), seed=1)
    restored.load_state_dict(model.state_dict())
    with torch.no_grad():
        for a, b in zip(model(), restored(), strict=True):
            assert torch.equal(a, b)


def _final(make_filter: FilterFactory | None) -> Tensor:
    with torch.no_grad():
        users_final, items_final = build(make_filter).final_embeddings()
    return torch.cat([users_final, items_final])


SWITCHES: dict[str, dict[str, object]] = {
    "apc": {"apc": False},
    "avrf": {"avrf": False},
    "imcf": {"imcf": False},
    "input_source": {"input_source": "backbone"},
    "apc_sign": {"apc_sign": "corrected"},
    "avrf_gain": {"avrf_gain": "sigmoid"},
    "imcf_mode": {"imcf_mode": "averaged"},
    "fusion_fixed": {"fusion": "fixed"},
    "fusion_gain": {"fusion": "gain"},
    "fusion_coherence": {"fusion": "coherence"},
    "fusion_logits": {"fusion_logits": (0.1, 0.9)},
    "band_low": {"band_low": 0.3},
    "band_high": {"band_high": 0.6},
    "band_edge": {"band_high": 0.6, "band_edge": "soft"},
    "band_shared": {"band_shared": False, "second_band_high": 0.5},
    "psi_init_scale": {"psi_init_scale": 0.3},
    "shuffle_spectrum": {"shuffle_spectrum": True},
}


@pytest.mark.parametrize("switch", list(SWITCHES))
def test_each_switch_changes_the_output(switch: str) -> None:
    official = _final(damps())
    changed = _final(damps(DampsConfig(**SWITCHES[switch])))
    assert not torch.equal(official, changed)


@pytest.mark.parametrize(
    ("base", "changed"),
    [
        ({"fusion": "fixed"}, {"fusion": "fixed", "fusion_weight": 0.2}),
        (
            {"band_high": 0.6, "band_edge": "soft"},
            {"band_high": 0.6, "band_edge": "soft", "band_width": 0.2},
        ),
        (
            {"band_shared": False, "second_band_high": 0.5},
            {"band_shared": False, "second_band_low": 0.4},
        ),
        ({"shuffle_spectrum": True}, {"shuffle_spectrum": True, "shuffle_seed": 7}),
    ],
)
def test_dependent_knobs_change_the_output(base: dict, changed: dict) -> None:
    assert not torch.equal(
        _final(damps(DampsConfig(**base))), _final(damps(DampsConfig(**changed)))
    )


def test_filters_change_the_output() -> None:
    vanilla = _final(None)
    for kind in ("damps_own", "damps_backbone", "linear_control", "shuffled_spectrum"):
        assert not torch.equal(vanilla, _final(FILTERS[kind])), kind


def test_psi_smoothness_changes_the_loss() -> None:
    config = DampsConfig(psi_init_scale=0.3)
    plain = build(damps(config)).calculate_loss(*BATCH)
    smooth = build(damps(replace(config, psi_smoothness=0.5))).calculate_loss(*BATCH)
    assert smooth.item() > plain.item()


# ---------------------------------------------------------------- validation


def test_graphs_must_be_sparse_and_shaped() -> None:
    data = tiny_data()
    graphs = data.sparse()
    with pytest.raises(ValueError, match="adjacency must be a sparse COO or CSR tensor"):
        MGCN(
            N_USERS,
            N_ITEMS,
            data.features,
            data.adjacency,
            graphs["user_item"],
            graphs["item_graphs"],
        )
    with pytest.raises(ValueError, match=r"user_item must have shape \(6, 9\)"):
        MGCN(
            N_USERS,
            N_ITEMS,
            data.features,
            graphs["adjacency"],
            graphs["adjacency"],
            graphs["item_graphs"],
        )
    with pytest.raises(ValueError, match="one item graph per modality"):
        MGCN(
            N_USERS,
            N_ITEMS,
            data.features,
            graphs["adjacency"],
            graphs["user_item"],
            graphs["item_graphs"][:1],
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"embedding_dim": 0}, "embedding_dim must be >= 1"),
        ({"n_layers": -1}, "n_layers must be >= 0"),
        ({"reg_weight": -1.0}, "reg_weight must be >= 0"),
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"reg_batch_size": 0}, "reg_batch_size must be >= 1"),
    ],
)
def test_hyperparameter_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(**kwargs)


def test_log_of_softmax_weights_at_init_are_official() -> None:
    """Sanity: the initial fusion weights are 0.55 / 0.45 to two decimals."""
    filt = build(damps()).feature_filter
    assert isinstance(filt, DAMPS)
    weights = torch.softmax(filt.fusion_logits, dim=0)
    assert math.isclose(weights[0].item(), 0.55, abs_tol=1e-3)
