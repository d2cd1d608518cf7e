"""Build an MMRec-format dataset from interactions and an item table.

The recipe (``shared/data/README.md``): drop items without the first modality, k-core until
stable, re-index users and items contiguously in ascending original id, label each user's
interactions in time order, encode the item features, and write ``<name>.inter``, one
``<modality>_feat.npy`` per modality, ``items.tsv``, ``users.tsv``, ``spectune.yaml`` and
``build.json``. Everything is written into a temporary folder beside the output, read back with
the training loader, and only then renamed to the output: a failed build leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from spectune.datasets.errors import DataError
from spectune.datasets.kcore import k_core
from spectune.datasets.kg import kg_features
from spectune.datasets.layout import CONFIG_FILE
from spectune.datasets.mmrec import load_dataset
from spectune.datasets.raw_tables import format_number, natural_order
from spectune.datasets.sources import Interactions, ItemTable, check_unique
from spectune.datasets.time_split import SplitRatios, time_ordered_labels

logger = logging.getLogger(__name__)

BUILD_FILE = "build.json"
INSTALL_HINT = 'pip install -e ".[encoders]"'


@dataclass(frozen=True)
class Encoders:
    """Text and image encoders: strings -> float32 [n, d_text]; image files -> [n, d_image]."""

    text: Callable[[Sequence[str]], np.ndarray]
    image: Callable[[Sequence[Path]], np.ndarray]


@dataclass(frozen=True)
class BuildOptions:
    k_core: int = 5
    split: SplitRatios = field(default_factory=SplitRatios)
    kg_dim: int = 128  # SVD components of the kg modality
    seed: int = 0  # of the kg modality's SVD
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.k_core < 3:
            raise ValueError(
                f"k_core must be >= 3 (each user needs a train, a valid and a test row), "
                f"got {self.k_core}"
            )
        if self.kg_dim < 1:
            raise ValueError(f"kg_dim must be >= 1, got {self.kg_dim}")


@dataclass(frozen=True)
class BuildReport:
    """What a build did, for the command line to print."""

    out: Path
    n_users: int
    n_items: int
    split_sizes: tuple[int, int, int]  # train, valid, test rows
    kcore_passes: int
    dropped: tuple[str, ...]  # one sentence per filtering step that removed something
    modalities: tuple[tuple[str, int], ...]  # (name, width) in file order
    seconds: float

    @property
    def n_interactions(self) -> int:
        return sum(self.split_sizes)


@dataclass(frozen=True, eq=False)
class _Core:
    """The filtered, re-indexed interactions: one entry per kept row, sorted for writing."""

    users: np.ndarray  # userID
    items: np.ndarray  # itemID
    timestamps: np.ndarray
    ratings: np.ndarray | None
    labels: np.ndarray
    user_ids: list[str]  # original id of each userID
    item_rows: list[int]  # ItemTable row of each itemID
    passes: int
    dropped: tuple[str, ...]


def build_dataset(
    interactions: Interactions,
    items: ItemTable,
    out: Path,
    encoders: Encoders,
    options: BuildOptions,
    extra_files: Mapping[str, str] | None = None,
) -> BuildReport:
    """Build the dataset ``out.name`` at ``out``; DataError on bad input, with nothing written.

    ``extra_files`` (file name -> UTF-8 text) are written beside the data, e.g. a licence.
    """
    start = time.perf_counter()
    _check_output(out, options.overwrite)
    core = _filter_and_index(interactions, items, options)
    features = _features(core, items, encoders, options)
    build_info = {
        "interactions": interactions.source,
        "items": items.source,
        "k_core": options.k_core,
        "split": options.split.text(),
        "kcore_passes": core.passes,
        "dropped": list(core.dropped),
        "modalities": {name: int(table.shape[1]) for name, table in features.items()},
    } | ({"kg_dim": options.kg_dim, "seed": options.seed} if "kg" in features else {})
    _publish(out, core, items, features, build_info, dict(extra_files or {}), options.overwrite)
    sizes = np.bincount(core.labels, minlength=3)
    report = BuildReport(
        out=out,
        n_users=len(core.user_ids),
        n_items=len(core.item_rows),
        split_sizes=(int(sizes[0]), int(sizes[1]), int(sizes[2])),
        kcore_passes=core.passes,
        dropped=core.dropped,
        modalities=tuple((name, int(table.shape[1])) for name, table in features.items()),
        seconds=time.perf_counter() - start,
    )
    logger.info("built %s in %.1f s", out, report.seconds)
    return report


def _check_output(out: Path, overwrite: bool) -> None:
    if not out.name or out.name in (".", ".."):
        raise DataError(f"--out must end in the dataset name (DIR/NAME), got {out}")
    if out.exists() and not overwrite:
        raise DataError(f"{out} already exists; remove it or pass --overwrite to replace it")


def _filter_and_index(interactions: Interactions, items: ItemTable, options: BuildOptions) -> _Core:
    dropped: list[str] = []
    item_rows = _item_rows(interactions, items)
    kept = _rows_with_content(interactions, items, item_rows, dropped)
    user_names: list[str] = list(dict.fromkeys(interactions.users[r] for r in kept))
    code_of_user = {user: code for code, user in enumerate(user_names)}
    user_codes = np.array([code_of_user[interactions.users[r]] for r in kept], dtype=np.int64)
    in_core, passes = k_core(user_codes, item_rows[kept], options.k_core)
    if not in_core.any():
        raise DataError(
            f"no interactions left after {options.k_core}-core filtering: no subset of the "
            f"{len(kept)} interactions of {interactions.source} gives every user and "
            f"every item >= {options.k_core} interactions"
        )
    rows = kept[in_core]
    if len(rows) < len(kept):
        lost_users = len(user_names) - len(np.unique(user_codes[in_core]))
        lost_items = len(np.unique(item_rows[kept])) - len(np.unique(item_rows[rows]))
        dropped.append(
            f"{options.k_core}-core filtering ({passes} passes) dropped "
            f"{len(kept) - len(rows)} interactions, {lost_users} users and {lost_items} items"
        )
    users, user_codes_in_order = _reindex(user_codes[in_core], user_names)
    item_ids, item_rows_in_order = _reindex(item_rows[rows], items.ids)
    timestamps = interactions.timestamps[rows]
    ratings = interactions.ratings[rows] if interactions.ratings is not None else None
    labels = time_ordered_labels(users, timestamps, item_ids, options.split)
    order = np.lexsort((item_ids, timestamps, users))
    for line in dropped:
        logger.info("%s", line)
    return _Core(
        users=users[order],
        items=item_ids[order],
        timestamps=timestamps[order],
        ratings=ratings[order] if ratings is not None else None,
        labels=labels[order],
        user_ids=[user_names[code] for code in user_codes_in_order],
        item_rows=item_rows_in_order,
        passes=passes,
        dropped=tuple(dropped),
    )


def _item_rows(interactions: Interactions, items: ItemTable) -> np.ndarray:
    """The ItemTable row of every interaction; DataError for an item the table lacks."""
    check_unique(items.ids, items.lines, items.source, "item id")
    row_of = {item_id: row for row, item_id in enumerate(items.ids)}
    rows = np.empty(len(interactions), dtype=np.int64)
    for k, item_id in enumerate(interactions.items):
        row = row_of.get(item_id)
        if row is None:
            raise DataError(
                f"{interactions.where(k)}: item {item_id!r} is not in the items ({items.source})"
            )
        rows[k] = row
    return rows


def _rows_with_content(
    interactions: Interactions, items: ItemTable, item_rows: np.ndarray, dropped: list[str]
) -> np.ndarray:
    """Indices of the interactions whose item has the first modality's input."""
    has_content, missing = _first_modality_present(items)
    keep = has_content[item_rows]
    if not keep.any():
        raise DataError(
            f"no interactions left: none of the {len(np.unique(item_rows))} items of "
            f"{interactions.source} has {missing}"
        )
    if not keep.all():
        lost_items = np.unique(item_rows[~keep])
        example = items.ids[int(lost_items[0])]
        dropped.append(
            f"{len(lost_items)} items without {missing} dropped with their "
            f"{int((~keep).sum())} interactions (e.g. item {example!r})"
        )
    return np.flatnonzero(keep)


def _reindex(codes: np.ndarray, original_ids: Sequence[str]) -> tuple[np.ndarray, list[int]]:
    """Contiguous ids 0..n-1 for the codes present, in ascending (natural) original id.

    Returns the new id of every entry of ``codes`` and, for each new id, its code.
    """
    present = np.unique(codes)
    order = natural_order([original_ids[c] for c in present])
    by_new_id = present[order]
    new_id = np.empty(len(original_ids), dtype=np.int64)
    new_id[by_new_id] = np.arange(len(by_new_id))
    return new_id[codes], by_new_id.tolist()


def _first_modality_present(items: ItemTable) -> tuple[np.ndarray, str]:
    """Which item rows have the first modality's input, and its name for messages."""
    if items.images is not None:
        present = [path is not None and path.is_file() for path in items.images]
        return np.array(present, dtype=bool), "an image file"
    if items.kg_tokens is not None:
        present = [bool(tokens) for tokens in items.kg_tokens]
        return np.array(present, dtype=bool), "knowledge-graph triples"
    return np.ones(len(items.ids), dtype=bool), "content"


def _features(
    core: _Core, items: ItemTable, encoders: Encoders, options: BuildOptions
) -> dict[str, np.ndarray]:
    """Feature tables in file order (first modality, then text), row i = itemID i."""
    rows = core.item_rows
    features: dict[str, np.ndarray] = {}
    image_paths: list[Path] = []
    if items.images is not None:
        image_paths = [_image_path(items, row) for row in rows]
        _check_images(image_paths, items, rows)
    if items.kg_tokens is not None:
        features["kg"] = kg_features(
            [items.kg_tokens[r] for r in rows], options.kg_dim, options.seed
        )
    texts = [items.texts[r] for r in rows]
    logger.info("encoding %d item texts", len(texts))
    text = _checked(encoders.text(texts), len(rows), "text")
    if image_paths:
        logger.info("encoding %d item images", len(image_paths))
        features["image"] = _checked(encoders.image(image_paths), len(rows), "image")
    features["text"] = text
    return features


def _image_path(items: ItemTable, row: int) -> Path:
    assert items.images is not None
    path = items.images[row]
    assert path is not None, "items without an image were filtered out"
    return path


def _check_images(paths: Sequence[Path], items: ItemTable, rows: Sequence[int]) -> None:
    """Decode every image as the encoder will, so that a broken file is named with its row.

    A full decode, not ``verify()``: that reads little more than the header (nothing at all of a
    JPEG's data), so a truncated file would pass here and fail in the encoder without its row.
    """
    try:
        from PIL import Image
    except ImportError as e:
        raise DataError(f"reading images needs Pillow: {INSTALL_HINT} ({e})") from e
    for path, row in zip(paths, rows):
        try:
            with Image.open(path) as image:
                image.convert("RGB")
        except (
            OSError,  # UnidentifiedImageError, "image file is truncated", ...
            ValueError,
            EOFError,
            SyntaxError,
            struct.error,
            Image.DecompressionBombError,
        ) as e:
            raise DataError(
                f"{items.where(row)}: the image of item {items.ids[row]!r}, {path}, "
                f"cannot be read as an image: {e}"
            ) from e


def _checked(table: np.ndarray, n_items: int, modality: str) -> np.ndarray:
    if table.ndim != 2 or table.shape[0] != n_items or table.dtype != np.float32:
        raise RuntimeError(
            f"the {modality} encoder returned {table.dtype} {table.shape}, "
            f"expected float32 [{n_items}, d]"
        )
    return np.ascontiguousarray(table)


def _publish(
    out: Path,
    core: _Core,
    items: ItemTable,
    features: dict[str, np.ndarray],
    build_info: dict[str, object],
    extra_files: dict[str, str],
    overwrite: bool,
) -> None:
    """Write into a temporary folder beside ``out``, check it with the loader, then rename."""
    parent = out.parent
    created_parent = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.building-"))
    try:
        folder = staging / out.name
        folder.mkdir()
        _write_files(folder, out.name, core, items, features, build_info, extra_files)
        load_dataset(out.name, staging)
        if out.exists():
            if not overwrite:
                raise DataError(f"{out} appeared during the build; nothing was replaced")
            out.rename(staging / f"{out.name}.old")
        folder.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_parent:
            _remove_if_empty(parent)
        raise
    shutil.rmtree(staging, ignore_errors=True)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        logger.debug("left %s in place (not empty)", folder)


def _write_files(
    folder: Path,
    name: str,
    core: _Core,
    items: ItemTable,
    features: dict[str, np.ndarray],
    build_info: dict[str, object],
    extra_files: dict[str, str],
) -> None:
    columns = ["userID", "itemID"] + (["rating"] if core.ratings is not None else [])
    columns += ["timestamp", "x_label"]
    lines = ["\t".join(columns)]
    ratings = core.ratings.tolist() if core.ratings is not None else None
    for k, (user, item, timestamp, label) in enumerate(
        zip(
            core.users.tolist(), core.items.tolist(), core.timestamps.tolist(), core.labels.tolist()
        )
    ):
        rating = f"{format_number(ratings[k])}\t" if ratings is not None else ""
        lines.append(f"{user}\t{item}\t{rating}{format_number(timestamp)}\t{label}")
    _write_text(folder / f"{name}.inter", lines)
    item_lines = ["\t".join(["itemID", *items.columns])]
    for item_id, row in enumerate(core.item_rows):
        values = [_tsv_field(values[row]) for values in items.columns.values()]
        item_lines.append("\t".join([str(item_id), *values]))
    _write_text(folder / "items.tsv", item_lines)
    user_lines = ["userID\torig_userID"]
    user_lines += [f"{user_id}\t{_tsv_field(orig)}" for user_id, orig in enumerate(core.user_ids)]
    _write_text(folder / "users.tsv", user_lines)
    for modality, table in features.items():
        np.save(folder / f"{modality}_feat.npy", table)
    config = {
        "inter_file": f"{name}.inter",
        "modalities": {modality: f"{modality}_feat.npy" for modality in features},
    }
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (folder / BUILD_FILE).write_text(json.dumps(build_info, indent=2) + "\n", encoding="utf-8")
    for file_name, text in extra_files.items():
        (folder / file_name).write_text(text, encoding="utf-8")


def _tsv_field(value: str) -> str:
    """A value safe inside a tab-separated line: tabs and line breaks become spaces."""
    return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _write_text(path: Path, lines: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        stream.write("\n".join(lines))
        stream.write("\n")
