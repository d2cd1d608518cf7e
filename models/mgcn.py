"""MGCN, the multimodal recommendation backbone that DAMPS plugs into."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from spectune.models.filters import FeatureFilter
from spectune.models.losses import bpr_loss, info_nce, l2_regularizer
from spectune.models.propagation import propagate, sparse_transpose

_SPARSE_LAYOUTS = (torch.sparse_coo, torch.sparse_csr)


def feature_parameters(features: Sequence[Tensor]) -> list[nn.Parameter]:
    """Trainable feature tables: an nn.Parameter is kept as is, any other tensor is copied once.

    Build the tables with this before constructing a ``DAMPS(input_source="own")`` and pass
    the same list to both DAMPS and MGCN, so that they share the Parameter objects.
    """
    return [
        f if isinstance(f, nn.Parameter) else nn.Parameter(f.detach().clone()) for f in features
    ]


def _check_sparse(name: str, matrix: Tensor, shape: tuple[int, int]) -> Tensor:
    if matrix.layout not in _SPARSE_LAYOUTS:
        raise ValueError(f"MGCN {name} must be a sparse COO or CSR tensor; got {matrix.layout}")
    if tuple(matrix.shape) != shape:
        raise ValueError(f"MGCN {name} must have shape {shape}; got {tuple(matrix.shape)}")
    if matrix.layout == torch.sparse_coo and not matrix.is_coalesced():
        matrix = matrix.coalesce()
    return matrix


class MGCN(nn.Module):
    """MGCN (ACM MM 2023, "Multi-View Graph Convolutional Network for Multimedia
    Recommendation"), with an optional feature filter (DAMPS) replacing the projections p_m.

    With E_u, E_i the ID embeddings and, per modality m, p_m = Linear(F_m) (or the filter's
    output), G_m the item kNN graph, R the normalised user-item block, A the normalised
    (U+N) x (U+N) bipartite graph:
        h_m = E_i * sigmoid(W_m p_m + b_m);  h_m <- G_m h_m (n_layers times);  v_m = [R h_m; h_m]
        C = mean_{l=0..L} A^l [E_u; E_i]   (LightGCN, L = n_ui_layers)
        a = softmax_m(q(v_m)), common = sum_m a_m v_m;  spec_m = (v_m - common) * sigmoid(P_m C)
        S = (sum_m spec_m + common) / (M + 1);  final = C + S
    Loss: BPR + reg_weight * L2(batch rows) / reg_batch_size
          + cl_weight * (InfoNCE(S_i, C_i) + InfoNCE(S_u, C_u)) + filter regularization.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        features: Sequence[Tensor],
        adjacency: Tensor,
        user_item: Tensor,
        item_graphs: Sequence[Tensor],
        embedding_dim: int = 64,
        n_layers: int = 1,
        n_ui_layers: int = 2,
        reg_weight: float = 1e-4,
        cl_weight: float = 0.01,
        temperature: float = 0.2,
        reg_batch_size: int = 2048,
        feature_filter: FeatureFilter | None = None,
    ) -> None:
        super().__init__()
        for name, value, least in (
            ("n_users", n_users, 1),
            ("n_items", n_items, 1),
            ("embedding_dim", embedding_dim, 1),
            ("n_layers", n_layers, 0),
            ("n_ui_layers", n_ui_layers, 0),
            ("reg_batch_size", reg_batch_size, 1),
        ):
            if value < least:
                raise ValueError(f"MGCN {name} must be >= {least}; got {value}")
        for name, value in (("reg_weight", reg_weight), ("cl_weight", cl_weight)):
            if value < 0:
                raise ValueError(f"MGCN {name} must be >= 0; got {value}")
        if not temperature > 0:
            raise ValueError(f"MGCN temperature must be > 0; got {temperature}")
        if len(features) == 0:
            raise ValueError("MGCN needs at least one modality feature table")
        if len(item_graphs) != len(features):
            raise ValueError(
                f"MGCN needs one item graph per modality; got {len(item_graphs)} graphs for "
                f"{len(features)} feature tables"
            )
        for m, f in enumerate(features):
            if f.dim() != 2 or f.shape[0] != n_items:
                raise ValueError(
                    f"MGCN feature table {m} must be n_items x d ({n_items} rows); "
                    f"got {tuple(f.shape)}"
                )

        self.n_users = n_users
        self.n_items = n_items
        self.n_modalities = len(features)
        self.embedding_dim = embedding_dim
        self.n_layers = n_layers
        self.n_ui_layers = n_ui_layers
        self.reg_weight = reg_weight
        self.cl_weight = cl_weight
        self.temperature = temperature
        self.reg_batch_size = reg_batch_size

        self.feature_tables = nn.ParameterList(feature_parameters(features))
        self.user_embedding = nn.Parameter(torch.empty(n_users, embedding_dim))
        self.item_embedding = nn.Parameter(torch.empty(n_items, embedding_dim))
        nn.init.xavier_uniform_(self.user_embedding)
        nn.init.xavier_uniform_(self.item_embedding)
        self.projections = nn.ModuleList(nn.Linear(f.shape[1], embedding_dim) for f in features)
        self.purifier_gates = nn.ModuleList(
            nn.Linear(embedding_dim, embedding_dim) for _ in features
        )
        self.fuser_query = nn.Sequential(
            nn.Linear(embedding_dim, embedding_dim),
            nn.Tanh(),
            nn.Linear(embedding_dim, 1, bias=False),
        )
        self.preference_gates = nn.ModuleList(
            nn.Linear(embedding_dim, embedding_dim) for _ in features
        )

        n_nodes = n_users + n_items
        # Each graph is kept with its transpose, which the backward pass multiplies by.
        graphs = {
            "adjacency": _check_sparse("adjacency", adjacency, (n_nodes, n_nodes)),
            "user_item": _check_sparse("user_item", user_item, (n_users, n_items)),
        }
        for m, graph in enumerate(item_graphs):
            graphs[f"item_graph_{m}"] = _check_sparse(
                f"item_graphs[{m}]", graph, (n_items, n_items)
            )
        for name, graph in graphs.items():
            self.register_buffer(name, graph, persistent=False)
            self.register_buffer(f"{name}_t", sparse_transpose(graph), persistent=False)

        if feature_filter is not None:
            self._check_filter(feature_filter)
            with torch.no_grad():
                feature_filter.initialise(self._backbone_projections())
        self.feature_filter = feature_filter

    def _check_filter(self, feature_filter: FeatureFilter) -> None:
        if feature_filter.n_modalities != self.n_modalities:
            raise ValueError(
                f"the feature filter takes {feature_filter.n_modalities} modalities; MGCN has "
                f"{self.n_modalities}"
            )
        own_tables = getattr(feature_filter, "feature_tables", None)
        if not feature_filter.reads_backbone and own_tables is not None:
            shared = len(own_tables) == self.n_modalities and all(
                a is b for a, b in zip(own_tables, self.feature_tables, strict=False)
            )
            if not shared:
                raise ValueError(
                    "a feature filter that reads the feature tables itself must hold the same "
                    "nn.Parameter objects as MGCN: build them with feature_parameters() and pass "
                    "that list to both"
                )

    def _propagate(self, graph: str, dense: Tensor) -> Tensor:
        return propagate(getattr(self, graph), getattr(self, f"{graph}_t"), dense)

    def _backbone_projections(self) -> list[Tensor]:
        # each: [N, d_m] -> [N, D]
        return [proj(t) for proj, t in zip(self.projections, self.feature_tables, strict=True)]

    def _modality_features(self) -> list[Tensor]:
        """p_m, N x D per modality: MGCN's projections or the filter's replacement."""
        if self.feature_filter is None:
            return self._backbone_projections()
        if self.feature_filter.reads_backbone:
            return self.feature_filter(self._backbone_projections())
        # The filter reads the tables itself: MGCN's projections would be dead work.
        return self.feature_filter(None)

    def forward(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(user_final [U, D], item_final [N, D], side S [U+N, D], content C [U+N, D])."""
        features = self._modality_features()  # M x [N, D]

        # Item-item views per modality.
        views = []
        for m, (feature, gate) in enumerate(zip(features, self.purifier_gates, strict=True)):
            h = self.item_embedding * torch.sigmoid(gate(feature))  # [N, D]
            for _ in range(self.n_layers):
                h = self._propagate(f"item_graph_{m}", h)  # [N, D]
            users = self._propagate("user_item", h)  # [U, D]
            views.append(torch.cat([users, h], dim=0))  # [U+N, D]

        # User-item view: LightGCN, mean over layers 0..n_ui_layers.
        ego = torch.cat([self.user_embedding, self.item_embedding], dim=0)  # [U+N, D]
        total = ego
        for _ in range(self.n_ui_layers):
            ego = self._propagate("adjacency", ego)  # [U+N, D]
            total = total + ego
        content = total / (self.n_ui_layers + 1)  # [U+N, D]

        # Behaviour-aware fuser.
        stacked = torch.stack(views, dim=0)  # [M, U+N, D]
        attention = torch.softmax(self.fuser_query(stacked), dim=0)  # [M, U+N, 1]
        common = (attention * stacked).sum(dim=0)  # [U+N, D]
        side = common
        for view, gate in zip(views, self.preference_gates, strict=True):
            side = side + (view - common) * torch.sigmoid(gate(content))  # [U+N, D]
        side = side / (self.n_modalities + 1)  # [U+N, D]

        final = content + side  # [U+N, D]
        user_final, item_final = torch.split(final, [self.n_users, self.n_items], dim=0)
        return user_final, item_final, side, content

    def calculate_loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor) -> Tensor:
        """Training loss of one batch of (user, positive item, sampled negative item) ids."""
        user_final, item_final, side, content = self.forward()
        u = user_final[users]  # [B, D]
        pos = item_final[pos_items]  # [B, D]
        neg = item_final[neg_items]  # [B, D]
        loss = bpr_loss(u, pos, neg) + self.reg_weight * l2_regularizer(
            u, pos, neg, denominator=self.reg_batch_size
        )
        side_users, side_items = torch.split(side, [self.n_users, self.n_items], dim=0)
        content_users, content_items = torch.split(content, [self.n_users, self.n_items], dim=0)
        contrastive = info_nce(
            side_items[pos_items], content_items[pos_items], self.temperature
        ) + info_nce(side_users[users], content_users[users], self.temperature)
        loss = loss + self.cl_weight * contrastive
        if self.feature_filter is not None:
            loss = loss + self.feature_filter.regularization()
        return loss

    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """(users [U, D], items [N, D]); score many user batches from one call of this."""
        user_final, item_final, _, _ = self.forward()
        return user_final, item_final

    def full_sort_predict(self, users: Tensor) -> Tensor:
        """Scores of every item for each user id, [B, N]; runs the full propagation."""
        user_final, item_final = self.final_embeddings()
        return user_final[users] @ item_final.T  # [B, N]
