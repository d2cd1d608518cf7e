"""Reading the builder's raw delimited files: CSV, TSV and RecBole atomic files (``.inter``...).

A table keeps each row's 1-based line number (header = line 1) so that every later check can
name the file and the line it objects to.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from spectune.datasets.errors import DataError

_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, eq=False)
class RawTable:
    """Header and string rows of one file; ``lines[k]`` is the line number of ``rows[k]``."""

    source: str  # the path (or archive member) named in error messages
    header: tuple[str, ...]  # column names with any RecBole ``:type`` suffix removed
    rows: list[list[str]]
    lines: list[int]

    def where(self, row: int) -> str:
        return f"{self.source} line {self.lines[row]}"

    def column(self, names: Sequence[str], role: str) -> int:
        """Index of the first header name matching one of ``names`` (case-insensitive).

        ``role`` describes the column in the error raised when none matches.
        """
        index = self.optional_column(names)
        if index is None:
            expected = names[0] if len(names) == 1 else f"one of {', '.join(names)}"
            raise DataError(
                f"{self.source} line 1: no {role} column; expected {expected} "
                f"(header has: {', '.join(self.header)})"
            )
        return index

    def optional_column(self, names: Sequence[str]) -> int | None:
        lowered = [name.lower() for name in self.header]
        for name in names:
            if name.lower() in lowered:
                return lowered.index(name.lower())
        return None


def read_table_file(path: Path, encoding: str = "utf-8-sig") -> RawTable:
    """Read ``path``: comma-separated (with quoting) for ``.csv``, else tab-separated."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    return parse_table(data, str(path), comma=path.suffix.lower() == ".csv", encoding=encoding)


def parse_table(
    data: bytes, source: str, comma: bool = False, encoding: str = "utf-8-sig"
) -> RawTable:
    """Parse a header line plus rows; every row must have as many fields as the header.

    Tab-separated text is split on tabs with no quoting (RecBole's atomic files hold titles with
    quote characters); CSV follows the csv module's quoting. Empty lines are skipped and a
    trailing ``\\r`` is dropped, so CRLF files read like LF files.
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{source} line {line}: not {encoding} text ({e.reason})") from e
    numbered = _csv_rows(text, source) if comma else _tsv_rows(text)
    if not numbered:
        raise DataError(f"{source}: empty file (a header line is required)")
    header_line, header = numbered[0]
    names = tuple(_column_name(field) for field in header)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DataError(
            f"{source} line {header_line}: column {duplicates[0]!r} appears more than once"
        )
    rows, lines = [], []
    for number, fields in numbered[1:]:
        if len(fields) != len(names):
            raise DataError(
                f"{source} line {number}: expected {len(names)} "
                f"{'comma' if comma else 'tab'}-separated fields as in the header, "
                f"got {len(fields)}"
            )
        rows.append(fields)
        lines.append(number)
    return RawTable(source, names, rows, lines)


def _column_name(field: str) -> str:
    # RecBole atomic headers type their columns: ``user_id:token``, ``rating:float``.
    return field.strip().partition(":")[0]


def _tsv_rows(text: str) -> list[tuple[int, list[str]]]:
    return [
        (number, line.split("\t"))
        for number, raw in enumerate(text.split("\n"), start=1)
        if (line := raw.rstrip("\r"))
    ]


def _csv_rows(text: str, source: str) -> list[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    numbered: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            if fields:
                numbered.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{source} line {reader.line_num}: not valid CSV: {e}") from e
    return numbered


def parse_number(table: RawTable, row: int, column: int) -> float:
    """The float value of one cell, or a DataError naming the cell."""
    value = table.rows[row][column]
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise DataError(
            f"{table.where(row)}: {table.header[column]} must be a finite number, got {value!r}"
        )
    return number


def format_number(value: float) -> str:
    """Integers without a decimal point (``3``, ``978300760``), other values as Python does."""
    return str(int(value)) if value.is_integer() else repr(value)


def natural_order(ids: Sequence[str]) -> list[int]:
    """Positions of ``ids`` in ascending order: numeric when every id is an integer, else text."""
    if all(_is_integer(value) for value in ids):
        return sorted(range(len(ids)), key=lambda k: int(ids[k]))
    return sorted(range(len(ids)), key=lambda k: ids[k])


def _is_integer(value: str) -> bool:
    return _INTEGER.fullmatch(value) is not None
