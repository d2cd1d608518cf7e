"""Reading an MMRec ``.inter`` file: tab-separated, header line, integer id and label columns."""

from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectune.datasets.errors import DataError

logger = logging.getLogger(__name__)

USER_COLUMN = "userID"
ITEM_COLUMN = "itemID"
LABEL_COLUMN = "x_label"
REQUIRED_COLUMNS = (USER_COLUMN, ITEM_COLUMN, LABEL_COLUMN)
LABELS = (0, 1, 2)  # train, valid, test

# What np.loadtxt accepts as an int64, so the slow path agrees with the fast one.
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
_INT64_MIN, _INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


@dataclass(frozen=True, eq=False)
class InterTable:
    """The three columns spectune uses, one int64 entry per data row, in file order."""

    path: Path
    users: np.ndarray
    items: np.ndarray
    labels: np.ndarray

    def line_of(self, row: int) -> int:
        """1-based line number of data row ``row`` (0-based); only for error messages."""
        return _data_line_numbers(_read_text(self.path))[row]

    def where(self, row: int) -> str:
        return f"{self.path} line {self.line_of(row)}"


def read_inter(path: Path) -> InterTable:
    """Parse and check ``path``: required columns, integer values, labels 0/1/2, no negative ids."""
    text = _read_text(path)
    header_line, _, body = text.partition("\n")
    header = [name.strip() for name in header_line.rstrip("\r").split("\t")]
    columns = _column_indices(path, header)
    table = _parse_fast(path, text, body, header, columns)
    _check_values(table)
    return table


def _read_text(path: Path) -> str:
    try:
        # utf-8-sig: a byte order mark would otherwise become part of the first column name.
        return path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise DataError(f"{path}: cannot read the interaction file: {e}") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e


def _column_indices(path: Path, header: list[str]) -> tuple[int, int, int]:
    for name in REQUIRED_COLUMNS:
        count = header.count(name)
        if count == 0:
            raise DataError(
                f"{path} line 1: missing required column {name} "
                f"(tab-separated header has: {', '.join(header)})"
            )
        if count > 1:
            raise DataError(f"{path} line 1: column {name} appears {count} times in the header")
    user, item, label = (header.index(name) for name in REQUIRED_COLUMNS)
    return user, item, label


def _parse_fast(
    path: Path, text: str, body: str, header: list[str], columns: tuple[int, int, int]
) -> InterTable:
    if not body.strip():
        raise DataError(f"{path}: no interaction rows after the header")
    try:
        values = np.loadtxt(
            io.StringIO(body),
            dtype=np.int64,
            delimiter="\t",
            usecols=columns,
            comments=None,
            ndmin=2,
        )
    except ValueError as e:
        _raise_first_bad_line(path, text, header, columns)
        raise DataError(f"{path}: cannot parse the interaction rows: {e}") from e
    # loadtxt ignores extra fields; a row with a different field count is still a broken file.
    if body.count("\t") != len(values) * (len(header) - 1):
        _raise_first_bad_line(path, text, header, columns)
        raise DataError(f"{path}: rows do not all have {len(header)} tab-separated fields")
    return InterTable(
        path,
        np.ascontiguousarray(values[:, 0]),
        np.ascontiguousarray(values[:, 1]),
        np.ascontiguousarray(values[:, 2]),
    )


def _data_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of every data line; empty lines are skipped like loadtxt does."""
    lines = text.split("\n")
    return [
        (number, line.rstrip("\r"))
        for number, line in enumerate(lines[1:], start=2)
        if line.rstrip("\r")
    ]


def _data_line_numbers(text: str) -> list[int]:
    return [number for number, _ in _data_lines(text)]


def _raise_first_bad_line(
    path: Path, text: str, header: list[str], columns: tuple[int, int, int]
) -> None:
    """Slow path, run only after the fast parse failed: name the first offending line."""
    for number, line in _data_lines(text):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path} line {number}: expected {len(header)} tab-separated fields "
                f"as in the header, got {len(fields)}"
            )
        for index in columns:
            value = fields[index]
            if not _INTEGER.fullmatch(value):
                raise DataError(
                    f"{path} line {number}: {header[index]} must be an integer, got {value!r}"
                )
            if not _INT64_MIN <= int(value) <= _INT64_MAX:
                raise DataError(
                    f"{path} line {number}: {header[index]} {value.strip()} is out of int64 range"
                )


def _check_values(table: InterTable) -> None:
    bad_label = ~np.isin(table.labels, LABELS)
    if bad_label.any():
        row = int(np.argmax(bad_label))
        raise DataError(
            f"{table.where(row)}: {LABEL_COLUMN} must be 0, 1 or 2, got {table.labels[row]}"
        )
    for name, ids in ((USER_COLUMN, table.users), (ITEM_COLUMN, table.items)):
        negative = ids < 0
        if negative.any():
            row = int(np.argmax(negative))
            raise DataError(f"{table.where(row)}: {name} must be >= 0, got {ids[row]}")
