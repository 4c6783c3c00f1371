"""Tabular files (CSV, TSV, JSONL, Parquet) and text data sets read from them.

CSV/TSV and JSONL are read with the standard library rather than ``pandas.read_csv``/``read_json`` for two
reasons: every record keeps the line it starts on in the file, so a message can say "line 12", and no value is
type-guessed (pandas would read a text ``NA`` or ``None`` as missing, and a label ``007`` as ``7``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from headstart.errors import DataError
from headstart.registry import Registry

LABEL_COLUMNS = ("label", "class", "target", "category", "supersense")
_SHOWN = 10


@dataclass
class Table:
    """A tabular file's records.

    Attributes:
        path: The file.
        frame: One row per record; CSV/TSV values are strings, JSONL/Parquet values keep their JSON/Arrow type.
        lines: The 1-based line each row starts on in the file, or ``None`` for Parquet (rows are counted).
    """

    path: Path
    frame: pd.DataFrame
    lines: list[int] | None

    def where(self, row: int) -> str:
        """``"line N"`` (text files) or ``"row N"`` (Parquet) for the 0-based ``row``."""
        return f"line {self.lines[row]}" if self.lines is not None else f"row {row + 1}"

    def column_text(self, column: str, role: str, *, strip: bool = False) -> list[str]:
        """The values of ``column`` as strings.

        Raises:
            DataError: Some values are missing or blank (names the lines).
        """
        values: list[str] = []
        empty: list[int] = []
        for row, value in enumerate(self.frame[column].tolist()):
            text = "" if _is_missing(value) else str(value)
            if not text.strip():
                empty.append(row)
            values.append(text.strip() if strip else text)
        if empty:
            shown = ", ".join(self.where(row) for row in empty[:_SHOWN])
            more = f" and {len(empty) - _SHOWN} more" if len(empty) > _SHOWN else ""
            raise DataError(f"{self.path}: empty or missing {role} (column {column!r}) at {shown}{more}; "
                            "fill them in or remove those rows")
        return values


def _is_missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def read_utf8(path: Path) -> str:
    """The text of ``path``, which must be UTF-8 (a byte-order mark is dropped).

    Raises:
        DataError: The bytes are not UTF-8 (names the byte offset and line, and how to re-encode).
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path} is not UTF-8 text: byte 0x{data[err.start]:02x} at byte offset {err.start} "
                        f"(line {line}); re-encode it as UTF-8, e.g. "
                        f"`iconv -f latin1 -t utf-8 {path.name} > utf8-{path.name}`") from None


def read_table(path: str | Path) -> Table:
    """Read a table file in any registered format (``.csv``, ``.tsv``, ``.jsonl``, ``.parquet``).

    Raises:
        DataError: Unsupported suffix, not UTF-8, malformed record, duplicate column name, or no rows.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_READERS:
        raise DataError(f"{path}: unsupported table format {suffix!r}; use one of {TABLE_READERS.known()}")
    table = TABLE_READERS.get(suffix)(path)
    if table.frame.empty:
        raise DataError(f"{path} has no data rows")
    return table


def _duplicates(names: Sequence[str]) -> list[str]:
    return sorted({name for name in names if list(names).count(name) > 1})


#: Table file suffix -> reader; a new format is one registered function.
TABLE_READERS: Registry[Callable[[Path], Table]] = Registry("table format", DataError)


@TABLE_READERS.register(".csv")
def _read_csv(path: Path) -> Table:
    return _read_delimited(path, ",")


@TABLE_READERS.register(".tsv")
def _read_tsv(path: Path) -> Table:
    return _read_delimited(path, "\t")


def _read_delimited(path: Path, delimiter: str) -> Table:
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter=delimiter)
    header: list[str] | None = None
    records: list[list[str]] = []
    lines: list[int] = []
    start = 1
    try:
        for record in reader:
            if record and header is None:
                header = [name.strip() for name in record]
                duplicates = _duplicates(header)
                if duplicates:
                    raise DataError(f"{path}: the header (line {start}) repeats column(s) {duplicates}; "
                                    "give every column a distinct name")
            elif record:
                if len(record) != len(header):
                    raise DataError(f"{path} line {start}: {len(record)} fields, but the header has "
                                    f"{len(header)}; quote values that contain {delimiter!r}")
                records.append(record)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path} line {reader.line_num}: malformed {path.suffix[1:].upper()}: {err}") from None
    if header is None:
        raise DataError(f"{path} is empty; it needs a header line and data rows")
    return Table(path, pd.DataFrame(records, columns=header, dtype=object), lines)


@TABLE_READERS.register(".jsonl")
def _read_jsonl(path: Path) -> Table:
    def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        duplicates = _duplicates([key for key, _ in pairs])
        if duplicates:
            raise DataError(f"repeats key(s) {duplicates}")
        return dict(pairs)

    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, line in enumerate(read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=no_duplicate_keys)
        except (json.JSONDecodeError, DataError) as err:
            raise DataError(f"{path} line {number}: not a valid JSON object ({err}); "
                            "JSONL needs one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
        lines.append(number)
    return Table(path, pd.DataFrame(records, dtype=object), lines)


@TABLE_READERS.register(".parquet")
def _read_parquet(path: Path) -> Table:
    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as Parquet: {err}") from None
    duplicates = _duplicates(arrow.column_names)
    if duplicates:
        raise DataError(f"{path} repeats column(s) {duplicates}; give every column a distinct name")
    return Table(path, pd.DataFrame({name: arrow.column(name).to_pylist() for name in arrow.column_names},
                                    dtype=object), None)


#: The suffixes of every registered table format.
TABLE_SUFFIXES = tuple(TABLE_READERS)


def pick_column(table: Table, given: str | None, candidates: Sequence[str], option: str) -> str | None:
    """A column: ``given`` if set (``option`` names where it came from), else the first of ``candidates``
    present (in any case).

    Returns:
        The column name, or ``None`` when nothing was given and no candidate is present.

    Raises:
        DataError: ``given`` is not a column (lists the columns there are and names ``option``).
    """
    columns = [str(c) for c in table.frame.columns]
    if given is not None:
        if given not in columns:
            raise DataError(f"{table.path} has no column {given!r} (given as {option}, CLI: "
                            f"--{option.replace('_', '-')}); its columns are {columns}")
        return given
    by_lower = {c.lower(): c for c in columns}
    return next((by_lower[c] for c in candidates if c in by_lower), None)


def require_column(table: Table, given: str | None, candidates: Sequence[str], role: str, option: str) -> str:
    """Like :func:`pick_column`, but a missing column is an error naming the columns there are and ``option``.

    Raises:
        DataError: No such column.
    """
    column = pick_column(table, given, candidates, option)
    if column is None:
        raise DataError(f"{table.path} has no {role} column (looked for {', '.join(candidates)}); its columns "
                        f"are {list(map(str, table.frame.columns))}; name the column with {option} "
                        f"(CLI: --{option.replace('_', '-')})")
    return column
