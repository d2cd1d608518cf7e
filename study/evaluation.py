"""Full-ranking evaluation: score every item for every held-out user, mask train items, top K."""

from __future__ import annotations

import numpy as np
import torch

from spectune.datasets.mmrec import Split
from spectune.study.metrics import ranking_metrics


class RankingEvaluator:
    """Evaluates final user/item embeddings on one held-out split (valid or test).

    Only train items are masked (as MMRec does), so a test ranking may contain valid items.
    The per-batch masks and relevance keys are prepared once; an evaluation is then one matrix
    product, one masked fill and one top-K per batch of users.
    """

    def __init__(
        self,
        n_items: int,
        train: Split,
        held_out: Split,
        topk: tuple[int, ...],
        batch_size: int,
        device: torch.device,
    ) -> None:
        self._n_items = n_items
        self._topk = topk
        self._max_k = min(max(topk), n_items)
        self._device = device
        users, n_relevant = np.unique(held_out.users, return_counts=True)
        self.n_users = len(users)
        self._n_relevant = n_relevant
        self._relevant_keys = np.unique(held_out.users.astype(np.int64) * n_items + held_out.items)

        order = np.argsort(train.users, kind="stable")
        train_users, train_items = train.users[order], train.items[order]
        self._batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            lo = np.searchsorted(train_users, batch, side="left")
            hi = np.searchsorted(train_users, batch, side="right")
            counts = hi - lo
            rows = np.repeat(np.arange(len(batch)), counts)
            # positions lo[r] .. hi[r]-1 of every row r, without a Python loop
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            cols = train_items[np.repeat(lo, counts) + offsets]
            self._batches.append(
                (
                    torch.from_numpy(batch).to(device),
                    torch.from_numpy(rows).to(device),
                    torch.from_numpy(cols.astype(np.int64)).to(device),
                )
            )

    @torch.no_grad()
    def evaluate(
        self, user_embeddings: torch.Tensor, item_embeddings: torch.Tensor
    ) -> dict[str, float]:
        hits = np.zeros((self.n_users, max(self._topk)), dtype=bool)
        row = 0
        for users, mask_rows, mask_cols in self._batches:
            scores = user_embeddings[users] @ item_embeddings.T  # [B, N]
            scores[mask_rows, mask_cols] = -torch.inf
            top = torch.topk(scores, self._max_k, dim=1).indices.cpu().numpy()  # [B, K]
            keys = users.cpu().numpy()[:, None].astype(np.int64) * self._n_items + top
            where = np.minimum(
                np.searchsorted(self._relevant_keys, keys), len(self._relevant_keys) - 1
            )
            hits[row : row + len(users), : self._max_k] = self._relevant_keys[where] == keys
            row += len(users)
        return ranking_metrics(hits, self._n_relevant, self._topk)
