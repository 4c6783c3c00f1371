"""Tabular files (CSV, TSV, JSONL, Parquet) and text data sets read from them.

CSV/TSV and JSONL are read with the standard library rather than ``pandas.read_csv``/``read_json`` for two
reasons: every record keeps the line it starts on in the file, so a message can say "line 12", and no value is
type-guessed (pandas would read a text ``NA`` or ``None`` as missing, and a label ``007`` as ``7``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from headstart.errors import DataError, listing
from headstart.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

LABEL_COLUMNS = ("label", "class", "target", "category", "supersense")
# Values a cell may not hold: str() of them ("['a']", "b'x'") would pass for text or a class name.
_NESTED = (list, tuple, dict, set, bytes, bytearray, memoryview, np.ndarray)
# How spreadsheets, pandas and Python write a missing value once it has become text.
_MISSING_WORDS = frozenset({"nan", "na", "n/a", "null", "none", "<na>", "nat"})
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# csv's default field limit (128 KiB) refuses long texts such as whole documents; the file is in memory anyway.
_CSV_FIELD_LIMIT = 2**31 - 1
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


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
            DataError: Some values are missing or blank, or are lists, objects or bytes rather than single
                values (names the rows).
        """
        raw = self.frame[column].tolist()
        nested = [f"{self.where(row)} ({type(value).__name__})" for row, value in enumerate(raw)
                  if isinstance(value, _NESTED)]
        if nested:
            raise DataError(f"{self.path}: column {column!r} ({role}) holds lists, objects or bytes, not single "
                            f"values, at {listing(nested)}; make each one a single string (e.g. join a list) "
                            "or choose another column")
        values: list[str] = []
        empty: list[int] = []
        for row, value in enumerate(raw):
            text = "" if _is_missing(value) else str(value)
            if not text.strip():
                empty.append(row)
            values.append(text.strip() if strip else text)
        if empty:
            raise DataError(f"{self.path}: empty or missing {role} (column {column!r}) at "
                            f"{listing(map(self.where, empty))}; fill them in or remove those rows")
        return values

    def column_labels(self, column: str) -> list[str]:
        """The class labels in ``column``, stripped, checked not to look like missing values and not to write
        one number several ways (each spelling would silently become a class of its own).

        Raises:
            DataError: Empty, missing or missing-looking labels (``nan``, ``None``, ``NA``, ...), labels such as
                ``1``, ``1.0`` and ``01`` side by side, or labels that are lists, objects or bytes (names the
                rows).
        """
        labels = self.column_text(column, "label", strip=True)
        missing = [row for row, label in enumerate(labels) if label.lower() in _MISSING_WORDS]
        if missing:
            shown = listing(f"{self.where(row)} ({labels[row]!r})" for row in missing)
            raise DataError(f"{self.path}: label(s) in column {column!r} look like missing values at {shown}; "
                            "fill them in or remove those rows (a class really named so needs another name)")
        first_row: dict[str, int] = {}
        for row, label in enumerate(labels):
            first_row.setdefault(label, row)
        spellings: dict[float, list[str]] = {}
        for label in first_row:
            if _NUMBER.fullmatch(label):
                spellings.setdefault(float(label), []).append(label)
        clashes = [spelled for spelled in spellings.values() if len(spelled) > 1]
        if clashes:
            shown = listing(" = ".join(f"{label!r} ({self.where(first_row[label])})" for label in spelled)
                            for spelled in clashes)
            raise DataError(f"{self.path}: column {column!r} writes the same number as different labels, which "
                            f"would become separate classes: {shown}; write each class one way")
        return labels


def _is_missing(value: Any) -> bool:
    import pandas as pd  # pandas and pyarrow take a second to import: only once a table is read

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


def _duplicates(names: Iterable[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


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
    limit = csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        for record in reader:
            if record and header is None:
                header = [name.strip() for name in record]
                _check_header(path, header, delimiter, start)
            elif record:
                if len(record) != len(header):
                    raise DataError(f"{path} line {start}: {len(record)} fields, but the header has "
                                    f"{len(header)}; quote values that contain {delimiter!r}")
                records.append(record)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as err:
        raise DataError(f"{path} line {reader.line_num}: malformed {path.suffix[1:].upper()}: {err}") from None
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise DataError(f"{path} is empty; it needs a header line and data rows")
    return Table(path, _frame(records, columns=header), lines)


def _check_header(path: Path, header: list[str], delimiter: str, line: int) -> None:
    """Refuse a header that repeats a column, or that is one field holding another delimiter (a
    semicolon-delimited "CSV", as spreadsheets write in many locales, would otherwise read as one column)."""
    if len(header) == 1:
        other = next((d for d in _DELIMITER_NAMES if d != delimiter and d in header[0]), None)
        if other is not None:
            fix = "rename it to .csv" if other == "," else "save it as comma-separated CSV or as TSV"
            raise DataError(f"{path} looks {_DELIMITER_NAMES[other]}-delimited (header line {line}: "
                            f"{header[0][:200]!r}) but is read as {_DELIMITER_NAMES[delimiter]}-delimited; {fix}")
    duplicates = _duplicates(header)
    if duplicates:
        raise DataError(f"{path}: the header (line {line}) repeats column(s) [{listing(map(repr, duplicates))}]; "
                        "give every column a distinct name")


@TABLE_READERS.register(".jsonl")
def _read_jsonl(path: Path) -> Table:
    def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        duplicates = _duplicates([key for key, _ in pairs])
        if duplicates:
            raise DataError(f"repeats key(s) [{listing(map(repr, duplicates))}]")
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
    return Table(path, _frame(records), lines)


@TABLE_READERS.register(".parquet")
def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        arrow = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"cannot read {path} as Parquet: {err}") from None
    duplicates = _duplicates(arrow.column_names)
    if duplicates:
        raise DataError(f"{path} repeats column(s) [{listing(map(repr, duplicates))}]; give every column a "
                        "distinct name")
    return Table(path, _frame({name: arrow.column(name).to_pylist() for name in arrow.column_names}), None)


def _frame(records: Any, columns: list[str] | None = None) -> pd.DataFrame:
    """The records as a data frame of Python objects (cells keep their types: no parsing of numbers)."""
    import pandas as pd

    return pd.DataFrame(records, columns=columns, dtype=object)


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
                            f"--{option.replace('_', '-')}); its columns are {_columns(table)}")
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
                        f"are {_columns(table)}; name the column with {option} "
                        f"(CLI: --{option.replace('_', '-')})")
    return column


def _columns(table: Table) -> str:
    return f"[{listing(repr(str(c)) for c in table.frame.columns)}]"
