"""A knowledge-graph item modality: one-hop (relation, entity) tokens -> TF-IDF -> truncated SVD.

RecBole's atomic KG files: ``.link`` maps an item to its entity (``item_id``, ``entity_id``) and
``.kg`` lists triples (``head_id``, ``relation_id``, ``tail_id``). An item's tokens are the
triples that touch its entity: ``relation=tail`` where it is the head, ``~relation=head`` where it
is the tail.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from spectune.datasets.errors import DataError
from spectune.datasets.raw_tables import RawTable
from spectune.datasets.sources import check_unique

logger = logging.getLogger(__name__)


def item_kg_tokens(link: RawTable, kg: RawTable) -> dict[str, list[str]]:
    """Tokens of every linked item (item id -> tokens in the order of the ``.kg`` rows)."""
    item_column = link.column(("item_id",), "item id")
    entity_column = link.column(("entity_id",), "entity id")
    head_column = kg.column(("head_id",), "head entity")
    relation_column = kg.column(("relation_id",), "relation")
    tail_column = kg.column(("tail_id",), "tail entity")
    items = [row[item_column] for row in link.rows]
    check_unique(items, link.lines, link.source, "item id")
    by_entity: dict[str, list[str]] = defaultdict(list)
    for item, row in zip(items, link.rows):
        by_entity[row[entity_column]].append(item)
    tokens: dict[str, list[str]] = {item: [] for item in items}
    for row in kg.rows:
        head, relation, tail = row[head_column], row[relation_column], row[tail_column]
        for item in by_entity.get(head, ()):
            tokens[item].append(f"{relation}={tail}")
        for item in by_entity.get(tail, ()):
            tokens[item].append(f"~{relation}={head}")
    return tokens


def kg_features(tokens: Sequence[Sequence[str]], dim: int, seed: int) -> np.ndarray:
    """float32 [len(tokens), dim]: TF-IDF of each item's tokens, reduced by a seeded SVD.

    Raises DataError when there are too few items or distinct tokens for ``dim`` components.
    """
    if any(not item_tokens for item_tokens in tokens):
        raise ValueError("every item needs at least one knowledge-graph token")
    vectorizer = TfidfVectorizer(analyzer=_identity, lowercase=False)
    matrix = vectorizer.fit_transform(tokens)
    n_items, n_tokens = matrix.shape
    if dim >= min(n_items, n_tokens):
        raise DataError(
            f"the kg modality needs fewer SVD components than items and distinct tokens: "
            f"asked for {dim}, but there are {n_items} items and {n_tokens} tokens"
        )
    svd = TruncatedSVD(n_components=dim, algorithm="randomized", random_state=seed)
    table = svd.fit_transform(matrix).astype(np.float32)
    logger.info(
        "kg modality: %d items, %d distinct tokens, TF-IDF -> SVD %d-d (explained variance %.2f)",
        n_items,
        n_tokens,
        dim,
        float(svd.explained_variance_ratio_.sum()),
    )
    return np.ascontiguousarray(table)


def _identity(tokens: Sequence[str]) -> Sequence[str]:
    return tokens
