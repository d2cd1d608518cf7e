"""The dataset builder's inputs: interactions and an item table, with the line of every row.

``read_interactions`` and ``read_items`` read a user's own files; the MovieLens presets build
the same two objects from their sources. Everything after this module works on these objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectune.datasets.errors import DataError
from spectune.datasets.raw_tables import RawTable, parse_number, read_table_file

USER_NAMES = ("user_id", "user", "userid")
ITEM_NAMES = ("item_id", "item", "itemid", "movie_id", "movieid")
TIMESTAMP_NAMES = ("timestamp", "time")
RATING_NAMES = ("rating",)
IMAGE_NAMES = ("image", "image_file", "poster")


@dataclass(frozen=True, eq=False)
class Interactions:
    """One entry per input row: original user and item ids, time, optional rating."""

    source: str
    users: list[str]
    items: list[str]
    timestamps: np.ndarray  # float64
    ratings: np.ndarray | None  # float64, None when the input has no rating column
    lines: list[int]  # line number of each row in ``source``

    def __len__(self) -> int:
        return len(self.users)

    def where(self, row: int) -> str:
        return f"{self.source} line {self.lines[row]}"


@dataclass(frozen=True, eq=False)
class ItemTable:
    """Items with their content; row k describes item ``ids[k]``.

    ``texts[k]`` is the string the text encoder embeds. ``images`` (image files, None for an
    item without one) and ``kg_tokens`` (knowledge-graph tokens) are the candidates for the
    first modality; at most one of them is set. ``columns`` are written to ``items.tsv`` after
    ``itemID``, in order.
    """

    source: str
    ids: list[str]
    lines: list[int]
    texts: list[str]
    columns: dict[str, list[str]]
    images: list[Path | None] | None = None
    kg_tokens: list[list[str]] | None = None

    def __post_init__(self) -> None:
        assert self.images is None or self.kg_tokens is None, "one first modality at most"
        lengths = {len(self.lines), len(self.texts), *(len(c) for c in self.columns.values())}
        lengths |= {len(self.images)} if self.images is not None else set()
        lengths |= {len(self.kg_tokens)} if self.kg_tokens is not None else set()
        assert lengths <= {len(self.ids)}, "every column has one entry per item"

    def where(self, row: int) -> str:
        return f"{self.source} line {self.lines[row]}"


def check_unique(ids: Sequence[str], lines: Sequence[int], source: str, what: str) -> None:
    """Raise DataError naming both lines when an id appears twice."""
    first: dict[str, int] = {}
    for value, line in zip(ids, lines):
        if value in first:
            raise DataError(
                f"{source} line {line}: duplicate {what} {value!r} "
                f"(first on line {first[value]}); each must appear once"
            )
        first[value] = line


def read_interactions(path: Path) -> Interactions:
    """A CSV, TSV or RecBole atomic file with user, item and timestamp columns (rating optional)."""
    return interactions_from_table(read_table_file(path))


def interactions_from_table(table: RawTable) -> Interactions:
    user = table.column(USER_NAMES, "user id")
    item = table.column(ITEM_NAMES, "item id")
    time = table.column(TIMESTAMP_NAMES, "timestamp")
    rating = table.optional_column(RATING_NAMES)
    if not table.rows:
        raise DataError(f"{table.source}: no interaction rows after the header")
    users = [_required_id(table, row, user) for row in range(len(table.rows))]
    items = [_required_id(table, row, item) for row in range(len(table.rows))]
    timestamps = np.array([parse_number(table, row, time) for row in range(len(table.rows))])
    ratings = (
        None
        if rating is None
        else np.array([parse_number(table, row, rating) for row in range(len(table.rows))])
    )
    return Interactions(table.source, users, items, timestamps, ratings, table.lines)


def _required_id(table: RawTable, row: int, column: int) -> str:
    value = table.rows[row][column].strip()
    if not value:
        raise DataError(f"{table.where(row)}: {table.header[column]} is empty")
    return value


def read_items(path: Path, text_fields: Sequence[str], image_dir: Path | None) -> ItemTable:
    """The items file: an id column, the ``text_fields`` and, with ``image_dir``, an image column.

    An item's text is its non-empty text fields joined by ``". "``; an item whose text fields
    are all empty is an error (text is the modality every dataset has). Image file names are
    relative to ``image_dir``; an item with an empty image field gets no image (and is dropped by
    the builder, like a movie without a poster).
    """
    if image_dir is not None:
        check_image_dir(image_dir)
    table = read_table_file(path)
    if not text_fields:
        raise DataError(f"{path}: at least one text field is required (--text-fields)")
    id_column = table.column(ITEM_NAMES, "item id")
    text_columns = [_text_column(table, name) for name in text_fields]
    image_column = table.column(IMAGE_NAMES, "image file name") if image_dir else None
    if not table.rows:
        raise DataError(f"{path}: no item rows after the header")
    ids = [_required_id(table, row, id_column) for row in range(len(table.rows))]
    check_unique(ids, table.lines, str(path), "item id")
    texts = []
    for row, fields in enumerate(table.rows):
        parts = [fields[column].strip() for column in text_columns]
        if not any(parts):
            raise DataError(
                f"{table.where(row)}: item {ids[row]!r} has no text: the text fields "
                f"{', '.join(text_fields)} are all empty"
            )
        texts.append(". ".join(part for part in parts if part))
    columns = {table.header[id_column]: ids}
    columns |= {table.header[c]: [r[c].strip() for r in table.rows] for c in text_columns}
    images: list[Path | None] | None = None
    if image_dir is not None and image_column is not None:
        names = [fields[image_column].strip() for fields in table.rows]
        images = [image_dir / name if name else None for name in names]
        columns[table.header[image_column]] = names
    return ItemTable(str(path), ids, table.lines, texts, columns, images=images)


def check_image_dir(image_dir: Path) -> None:
    """DataError unless ``image_dir`` is a folder.

    Checked before any file is read: a wrong folder otherwise leaves every item without an image
    file, and the build fails much later, blaming the items.
    """
    if not image_dir.exists():
        raise DataError(f"--images {image_dir}: no such directory")
    if not image_dir.is_dir():
        raise DataError(f"--images {image_dir}: not a directory")


def _text_column(table: RawTable, name: str) -> int:
    """Index of the ``--text-fields`` column ``name``; DataError listing the file's columns."""
    column = table.optional_column((name,))
    if column is None:
        raise DataError(
            f"{table.source} line 1: no column {name!r} (--text-fields); "
            f"the columns are {', '.join(table.header)}"
        )
    return column
