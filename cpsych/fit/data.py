"""Generic reading of tidy behavioural tables (CSV) with strict validation.

* :func:`read_data` — a CSV in a paradigm's data format (:class:`cpsych.DataFormat`) as an
  ``xarray.Dataset`` over observations, every value checked (numbers finite and within the
  format's plausible range, no duplicated row, one group per participant). ``cpsych fit``
  and :func:`cpsych.models.force_matching_fit.load_force_matching` read data through it.

The pieces it is built on (also used by :func:`cpsych.models.pursuit.load_eye_tracking`):

* :func:`read_table` — the header and the data rows of a CSV file, each row with its 1-based
  line number (the header is line 1). Binary (NUL bytes) and non-UTF-8 files are errors
  naming the first bad byte; empty lines are errors: rows are never skipped, so a loaded table
  has exactly one observation per data row of the file.
* :func:`check_columns` — required columns present (a missing one is reported with the
  closest unexpected header name, to catch misspellings), no duplicated column.
* :func:`check_widths` — every row has as many cells as the header.
* :func:`parse_number`, :func:`parse_label` — one cell: a finite number (empty or ``nan``
  cells allowed as NaN where asked), a non-empty label.

A malformed file raises :class:`DataError` (a ``ValueError``) naming the file, the line and
the column and saying how to fix it. Nothing here imports numpyro or compiles JAX code, so a
bad file fails before any compilation.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import os

    import xarray as xr

    from cpsych.paradigm import Paradigm

__all__ = ["DataError", "read_data", "LEVEL_COLUMNS", "SINGLE_LEVEL", "read_table",
           "check_columns", "check_widths", "parse_number", "parse_label", "write_csv"]


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

    Cells are stripped of surrounding blanks; a UTF-8 byte-order mark and CRLF line endings
    are accepted. Raises ``FileNotFoundError`` for a missing file and :class:`DataError` for a
    binary file (a NUL byte) or a non-UTF-8 file (both naming the line and byte offset of the
    first bad byte), an empty file, a file with a header only, or an empty line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    text = _decode(path, path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "the file is empty (expected a header line)", 1) from None
    except csv.Error as err:
        raise DataError(path, f"unreadable header ({err}; expected a comma-separated table "
                              "with a header line)", 1) from None
    header = [h.strip() for h in header]
    rows = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                raise DataError(path, "empty line (every line must hold one row; rows "
                                      "are never skipped: delete the line)", line)
            rows.append((line, [c.strip() for c in row]))
    except csv.Error as err:
        raise DataError(path, f"unreadable line ({err}; check the quotes)",
                        reader.line_num) from None
    if not rows:
        raise DataError(path, "no data rows after the header", 1)
    return path, header, rows


def _decode(path: Path, raw: bytes) -> str:
    """The text of a UTF-8 file (BOM dropped); :class:`DataError` for binary or other bytes.

    The error names the line and byte offset of the first bad byte, and the column when the
    header and the bytes before it on that line can tell.
    """
    def where(offset: int) -> tuple[int, str | None, str]:
        line = raw.count(b"\n", 0, offset) + 1
        start = raw.rfind(b"\n", 0, offset) + 1
        before = raw[start:offset].decode("utf-8", "replace")
        head = raw.split(b"\n", 1)[0].decode("utf-8", "replace").lstrip("\ufeff")
        header = [h.strip() for h in next(csv.reader([head.rstrip("\r")]), [])]
        cell = before.count(",")
        column = header[cell] if line > 1 and cell < len(header) else None
        return line, column, f"byte offset {offset}"

    if not raw:
        raise DataError(path, "the file is empty (expected a header line)", 1)
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, column, at = where(nul)
        raise DataError(path, f"binary file, not a text CSV (NUL byte at {at}); export the "
                              "table as a UTF-8 comma-separated text file", line, column)
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + bom
        line, column, at = where(offset)
        raise DataError(path, f"not a text CSV in UTF-8: byte 0x{raw[offset]:02x} at {at} is "
                              "not UTF-8 (re-save the file as 'CSV UTF-8')", line,
                        column) from None


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
    listed = f"required column(s) {missing} missing" if len(missing) > 1 else \
        "required column missing"
    raise DataError(path, f"{listed} (expected columns {list(required)}){hint}; add it to "
                          "the header (line 1)", 1, col)


def check_widths(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> None:
    """Raise :class:`DataError` for a row whose number of cells differs from the header's."""
    for line, row in rows:
        if len(row) < len(header):
            raise DataError(path, f"expected {len(header)} cells (as in the header), found "
                                  f"{len(row)}: no value for column '{header[len(row)]}'"
                                  f"{'' if len(row) + 1 == len(header) else ' onwards'}; "
                                  "fill in the missing cells", line)
        if len(row) > len(header):
            raise DataError(path, f"expected {len(header)} cells (as in the header), found "
                                  f"{len(row)}: cell {len(header) + 1} ({row[len(header)]!r}) "
                                  f"is past the last column '{header[-1]}'; remove it, or "
                                  "quote a value holding a comma", line)


def parse_number(path: Path, line: int, column: str, cell: str,
                 allow_empty: bool = False) -> float:
    """A finite number; with ``allow_empty`` an empty, ``nan`` or ``na`` cell is NaN."""
    if cell == "" or (allow_empty and cell.lower() in ("nan", "na")):
        if allow_empty:
            return math.nan
        raise DataError(path, "empty cell (expected a number; fill it in or delete the row "
                              "- rows are never dropped silently)", line, column)
    try:
        value = float(cell)
    except ValueError:
        raise DataError(path, f"non-numeric cell {cell!r} (expected a number, with a '.' "
                              "as decimal point and no unit)", line, column) from None
    if not math.isfinite(value):
        raise DataError(path, f"non-finite value {cell!r} (expected a finite number; fill "
                              "it in or delete the row)", line, column)
    return value


def parse_label(path: Path, line: int, column: str, cell: str) -> str:
    """A non-empty text label."""
    if cell == "":
        raise DataError(path, "empty label (every row needs one; fill it in)", line, column)
    return cell


#: Label columns that may be absent from a file even when the data format lists them: the
#: file then holds a single group / condition, :data:`SINGLE_LEVEL`.
LEVEL_COLUMNS = ("group", "condition")
#: The level given to every row when a :data:`LEVEL_COLUMNS` column is absent.
SINGLE_LEVEL = "all"
#: Names of the output's dimension and line coordinate: not allowed as column names.
_RESERVED = ("obs", "line")
#: Physical quantity of a unit, to word an out-of-range negative value.
_QUANTITY = {"N": "force", "ms": "time", "s": "time", "px": "position", "deg": "angle",
             "deg/s": "velocity", "Hz": "frequency"}


def read_data(path: str | os.PathLike, paradigm: Paradigm) -> xr.Dataset:
    """Read a tidy behavioural CSV in ``paradigm.data``'s format, strictly.

    Parameters
    ----------
    path : CSV file (UTF-8, a byte-order mark and CRLF line endings accepted), one row per
        observation, a header naming the columns of ``paradigm.data.columns``.
    paradigm : a :class:`cpsych.Paradigm` with a data format (``paradigm.data``).

    Returns
    -------
    xarray.Dataset
        One dimension ``obs`` (one per data row, in file order). One variable per column of
        the data format: label columns (kind ``"label"``) as NumPy string arrays, numeric
        columns as float64 with ``attrs["units"]`` from the format. Extra numeric columns of
        the file, as float64 (empty or ``nan`` cells are NaN there, counted in
        ``attrs["n_missing_<column>"]``); extra text columns are not read and are listed in
        ``attrs["ignored_columns"]``. Coordinate ``line``: the file's line number of each
        row (the header is line 1). ``attrs``: ``source`` (the path), ``paradigm`` (its
        name), ``response`` and ``design`` (from the format), ``filled_columns`` and
        ``notes`` when a level column was absent.

    The :data:`LEVEL_COLUMNS` (``group``, ``condition``) may be absent from the file even when
    the format lists them: every row is then given the single level ``"all"`` (a note in
    ``attrs["notes"]`` says so). So may the further kinds of response of the format
    (``DataFormat.other_responses``): a file with one of them fills exactly one response cell
    per row and leaves the others empty (or ``nan``; NaN in the output), and
    ``attrs["responses"]`` lists the response columns it has. Every other column of the
    format is required.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        ``paradigm`` has no data format.
    DataError
        A ``ValueError`` whose one-line message names the file, the line and the column and
        says how to fix it: binary or non-UTF-8 file (line and byte offset of the first bad
        byte), empty or header-only file, empty line, missing required columns, a line with
        the wrong number of cells, an empty, non-numeric or non-finite cell in a numeric
        column of the format (except the empty response cells of rows holding another kind
        of response), a row with no response or with two, a value outside the format's
        plausible range (``DataFormat.plausible``), an empty label, a row identical to an
        earlier one (both lines named), a participant in two groups. Nothing is dropped
        silently.

    Reading imports neither numpyro nor compiles anything: errors come before any JAX work.
    """
    import xarray as xr

    fmt = paradigm.data
    if fmt is None:
        raise ValueError(f"paradigm: {paradigm.name} has no data format (Paradigm.data is "
                         "None), so it cannot be fitted to data")
    path, header, rows = read_table(path)
    for i, h in enumerate(header):
        if not h:
            raise DataError(path, f"header cell {i + 1} is empty (name the column or delete "
                                  "it, e.g. an unnamed index column)", 1)
        if h in _RESERVED:
            raise DataError(path, f"'{h}' is a reserved name (the output's "
                                  f"{'dimension' if h == 'obs' else 'line coordinate'}); "
                                  "rename the column", 1, h)
    columns = dict(fmt.columns)
    optional = set(LEVEL_COLUMNS) | set(fmt.other_responses)
    absent = [c for c in columns if c in optional and c not in header]
    required = [c for c in columns if c not in absent]
    filled = [c for c in absent if c in LEVEL_COLUMNS]
    check_columns(path, header, required, tuple(optional))
    check_widths(path, header, rows)
    idx = {h: i for i, h in enumerate(header)}
    labels = [c for c in required if columns[c] == "label"]
    numeric = [c for c in required if columns[c] != "label"]
    extra = [h for h in header if h not in columns]
    # several kinds of response: one filled response cell per row, the others empty
    kinds = [c for c in fmt.responses if c in required]
    several = len(kinds) > 1
    # an optional response column under a misspelt name: say so when the response is empty
    misspelt = {h: m[0] for h in extra
                for m in [difflib.get_close_matches(h, [c for c in fmt.other_responses
                                                         if c in absent], 1, 0.75)] if m}

    values: dict[str, list[Any]] = {c: [] for c in required}
    for line, row in rows:
        for c in labels:
            values[c].append(parse_label(path, line, c, row[idx[c]]))
        for c in numeric:
            try:
                v = parse_number(path, line, c, row[idx[c]], allow_empty=several and c in kinds)
            except DataError as err:
                if c != fmt.response or not misspelt or row[idx[c]] != "":
                    raise
                h, m = next(iter(misspelt.items()))
                raise DataError(path, f"empty cell; if this row's response is in column "
                                      f"'{h}', rename that column '{m}' (misspelt?)", line,
                                c) from err
            if not math.isnan(v):
                _check_plausible(path, line, c, v, paradigm)
            values[c].append(v)
        if several:
            given = [c for c in kinds if not math.isnan(values[c][-1])]
            if len(given) != 1:
                raise DataError(path, f"{'no response' if not given else 'responses in '}"
                                      f"{' and '.join(given)} (each row holds exactly one of "
                                      f"{', '.join(kinds)}; leave the others empty)", line,
                                kinds[0] if not given else given[1])
    extra_num, ignored = _read_extra(path, rows, idx, extra)

    # identical rows: the format's values (parsed) and every other cell (as written)
    seen: dict[tuple, int] = {}
    others = [idx[h] for h in extra]
    for k, (line, row) in enumerate(rows):
        key = (tuple(None if isinstance(values[c][k], float) and math.isnan(values[c][k])
                     else values[c][k] for c in required), tuple(row[i] for i in others))
        if key in seen:
            raise DataError(path, f"duplicated row: identical to line {seen[key]} (delete "
                                  "one; repeated trials must differ in some column, e.g. a "
                                  "trial number)", line, fmt.response)
        seen[key] = line
    if "participant" in values and "group" in values:
        group_of: dict[str, tuple[str, int]] = {}
        for k, (line, _) in enumerate(rows):
            p, g = values["participant"][k], values["group"][k]
            if p in group_of and group_of[p][0] != g:
                raise DataError(path, f"participant '{p}' is in group '{group_of[p][0]}' on "
                                      f"line {group_of[p][1]} and in group '{g}' here (a "
                                      "participant belongs to one group)", line, "group")
            group_of.setdefault(p, (g, line))

    n = len(rows)
    data: dict[str, Any] = {}
    for c in columns:
        if c in absent and c not in filled:
            continue
        if c in filled:
            data[c] = ("obs", np.full(n, SINGLE_LEVEL),
                       {"note": f"absent from the file: every row is {c} '{SINGLE_LEVEL}'"})
        elif c in labels:
            data[c] = ("obs", np.asarray(values[c], dtype=str))
        else:
            data[c] = ("obs", np.asarray(values[c], dtype=np.float64), {"units": columns[c]})
    attrs: dict[str, Any] = {"source": str(path), "paradigm": paradigm.name,
                             "response": fmt.response, "design": list(fmt.design)}
    if several:
        attrs["responses"] = kinds
    for h, v in extra_num.items():
        data[h] = ("obs", v)
        attrs[f"n_missing_{h}"] = int(np.isnan(v).sum())
    if filled:
        attrs["filled_columns"] = filled
        attrs["notes"] = "; ".join(f"column '{c}' absent: every row is {c} '{SINGLE_LEVEL}'"
                                   for c in filled)
    if ignored:
        attrs["ignored_columns"] = ignored
    line = np.asarray([r[0] for r in rows], dtype=np.int64)
    return xr.Dataset(data, coords={"line": ("obs", line)}, attrs=attrs)


def _check_plausible(path: Path, line: int, column: str, value: float,
                     paradigm: Paradigm) -> None:
    """:class:`DataError` if ``value`` is outside the format's plausible range of ``column``."""
    assert paradigm.data is not None
    if column not in paradigm.data.plausible:
        return
    lo, hi = paradigm.data.plausible[column]
    if lo <= value <= hi:
        return
    unit = paradigm.data.columns[column]
    u = f" {unit}" if unit not in ("1", "") else ""
    what = (f"negative {_QUANTITY.get(unit, 'value')} " if value < 0 <= lo else "")
    raise DataError(path, f"{what}{value:g}{u} is outside the plausible range [{lo:g}, "
                          f"{hi:g}]{u} of {paradigm.name}; check the units/typo", line, column)


def _read_extra(path: Path, rows: list[tuple[int, list[str]]], idx: dict[str, int],
                extra: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Extra columns: numeric ones as float64 (empty / ``nan`` / ``na`` cells NaN), and the
    names of the text ones (any other non-numeric cell), which are ignored."""
    numeric: dict[str, np.ndarray] = {}
    ignored: list[str] = []
    for h in extra:
        out = np.empty(len(rows))
        for k, (line, row) in enumerate(rows):
            cell = row[idx[h]]
            if cell == "" or cell.lower() in ("nan", "na"):
                out[k] = math.nan
                continue
            try:
                out[k] = float(cell)
            except ValueError:
                ignored.append(h)
                break
            if not math.isfinite(out[k]):
                raise DataError(path, f"non-finite value {cell!r} (expected a finite number, "
                                      "or an empty cell for a missing value)", line, h)
        else:
            numeric[h] = out
    return numeric, ignored


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
