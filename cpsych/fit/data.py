"""Generic reading of tidy behavioural tables (CSV) with strict validation.

The paradigm data formats are built on these pieces (they live next to their paradigm:
``cpsych.models.force_matching_fit.load_force_matching``,
``cpsych.models.pursuit.load_eye_tracking``):

* :func:`read_table` — the header and the data rows of a CSV file, each row with its 1-based
  line number (the header is line 1). Empty lines are errors: rows are never skipped, so a
  loaded table has exactly one observation per data row of the file.
* :func:`check_columns` — required columns present (a missing one is reported with the
  closest unexpected header name, to catch misspellings), no duplicated column.
* :func:`check_widths` — every row has as many cells as the header.
* :func:`parse_number`, :func:`parse_label` — one cell: a finite number (empty or ``nan``
  cells allowed as NaN where asked), a non-empty label.

A malformed file raises :class:`DataError` (a ``ValueError``) naming the file, the line and
the column.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["DataError", "read_table", "check_columns", "check_widths", "parse_number",
           "parse_label", "write_csv"]


class DataError(ValueError):
    """A malformed data file: the message names the file, line and column."""

    def __init__(self, path: str | Path, message: str, line: int | None = None,
                 column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.column = str(path), line, column


def read_table(path: str | Path) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """Header and data rows (with their 1-based line numbers) of a CSV file.

    Cells are stripped of surrounding blanks; a byte-order mark is ignored. Raises
    ``FileNotFoundError`` for a missing file and :class:`DataError` for an empty file, a file
    with a header only, or an empty line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(path, "the file is empty (expected a header line)", 1) from None
        except (UnicodeDecodeError, csv.Error) as err:
            raise DataError(path, f"not a text CSV file ({type(err).__name__}; expected a "
                                  "comma-separated table with a header line)", 1) from None
        header = [h.strip() for h in header]
        rows = []
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not c.strip() for c in row):
                    raise DataError(path, "empty line (every line must hold one row; rows "
                                          "are never skipped)", line)
                rows.append((line, [c.strip() for c in row]))
        except (UnicodeDecodeError, csv.Error) as err:
            raise DataError(path, f"unreadable line ({type(err).__name__}; expected UTF-8 "
                                  "comma-separated text)", reader.line_num + 1) from None
    if not rows:
        raise DataError(path, "no data rows after the header", 1)
    return path, header, rows


def check_columns(path: Path, header: list[str], required: Sequence[str],
                  optional: Sequence[str] = ()) -> None:
    """Raise :class:`DataError` for a duplicated or a missing required column.

    ``optional`` columns need not be present and are never offered as the misspelling of a
    missing required one.
    """
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise DataError(path, f"duplicated column(s) {dup} in the header", 1, dup[0])
    missing = [c for c in required if c not in header]
    if not missing:
        return
    col = missing[0]
    unknown = [h for h in header if h not in required and h not in optional]
    close = difflib.get_close_matches(col, unknown, n=1, cutoff=0.6)
    hint = (f"; found '{close[0]}' instead (misspelt?)" if close else
            f"; the header has {header}")
    raise DataError(path, f"required column missing (expected columns "
                          f"{list(required)}){hint}", 1, col)


def check_widths(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> None:
    """Raise :class:`DataError` for a row whose number of cells differs from the header's."""
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} cells (as in the header), "
                                  f"found {len(row)}", line)


def parse_number(path: Path, line: int, column: str, cell: str,
                 allow_empty: bool = False) -> float:
    """A finite number; with ``allow_empty`` an empty, ``nan`` or ``na`` cell is NaN."""
    if cell == "" or (allow_empty and cell.lower() in ("nan", "na")):
        if allow_empty:
            return math.nan
        raise DataError(path, "empty cell (expected a number)", line, column)
    try:
        value = float(cell)
    except ValueError:
        raise DataError(path, f"non-numeric cell {cell!r} (expected a number)", line,
                        column) from None
    if not math.isfinite(value):
        raise DataError(path, f"non-finite value {cell!r}", line, column)
    return value


def parse_label(path: Path, line: int, column: str, cell: str) -> str:
    """A non-empty text label."""
    if cell == "":
        raise DataError(path, "empty label", line, column)
    return cell


def write_csv(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """Write a header and rows to a CSV file atomically.

    Through :func:`cpsych.results.atomic_path`: a uniquely named temporary file beside
    ``path``, flushed to disk, then renamed; an error mid-write leaves ``path`` as it was and
    no temporary file behind.
    """
    from cpsych.results import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path
