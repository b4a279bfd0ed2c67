"""Loaders for tidy behavioural tables (CSV) with strict validation.

Two kinds of table are read:

* **Force matching** (one row per trial): ``participant``, ``group``, ``condition``,
  ``target`` (N) and ``matched`` (N). In the force-matching task (Shergill et al. 2003) the
  experimenter applies a *target* force to the participant's finger and the participant then
  reproduces it; *matched* is the force they produce. Extra columns are kept as data variables
  if numeric, and ignored (with a note in ``attrs``) otherwise.
* **Eye tracking** (one row per sample): ``time_ms`` and ``eye_position_px`` are required;
  ``eye_velocity``, ``eye_velocity_desaccaded``, ``lag`` and ``target_position_px`` are read
  if present (the layout of ``shared/data/spem``). Empty cells are allowed in the optional
  columns (the source marks missing samples that way, or writes ``nan``) and become NaN,
  counted in
  ``attrs["n_missing_<column>"]``.

A malformed file raises :class:`DataError` (a ``ValueError``) naming the file, the line (1-based,
the header is line 1) and the column: missing or misspelt columns (with the closest expected
name), non-numeric or empty cells, non-finite values, negative forces, empty labels,
participants assigned to two groups, groups named in ``groups=`` without rows, time stamps that
do not increase. Rows are never dropped: a loaded table has exactly one trial (or sample) per
data row of the file.

Results are :class:`xarray.Dataset` objects with units in ``attrs``.
"""

from __future__ import annotations

import csv
import difflib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = [
    "DataError",
    "FORCE_COLUMNS",
    "EYE_REQUIRED",
    "EYE_OPTIONAL",
    "load_force_matching",
    "load_eye_tracking",
    "load_spem",
    "write_force_matching",
]

FORCE_COLUMNS = ("participant", "group", "condition", "target", "matched")
EYE_REQUIRED = ("time_ms", "eye_position_px")
EYE_OPTIONAL = ("eye_velocity", "eye_velocity_desaccaded", "lag", "target_position_px")
_UNITS = {"target": "N", "matched": "N", "time_ms": "ms", "eye_position_px": "px",
          "target_position_px": "px", "lag": "px", "eye_velocity": "as recorded",
          "eye_velocity_desaccaded": "as recorded"}


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


def _read(path: str | Path) -> tuple[Path, list[str], list[tuple[int, list[str]]]]:
    """Header and data rows (with their 1-based line numbers) of a CSV file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(path, "the file is empty (expected a header line)", 1) from None
        header = [h.strip() for h in header]
        rows = []
        for row in reader:
            line = reader.line_num
            if not row or all(not c.strip() for c in row):
                raise DataError(path, "empty line (every line must hold one row; rows are "
                                      "never skipped)", line)
            rows.append((line, [c.strip() for c in row]))
    if not rows:
        raise DataError(path, "no data rows after the header", 1)
    return path, header, rows


def _check_columns(path: Path, header: list[str], required: Sequence[str],
                   optional: Sequence[str] = ()) -> None:
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


def _check_widths(path: Path, header: list[str], rows: list[tuple[int, list[str]]]) -> None:
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(path, f"expected {len(header)} cells (as in the header), "
                                  f"found {len(row)}", line)


def _number(path: Path, line: int, column: str, cell: str, allow_empty: bool = False) -> float:
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


def _label(path: Path, line: int, column: str, cell: str) -> str:
    if cell == "":
        raise DataError(path, "empty label", line, column)
    return cell


def load_force_matching(path: str | Path, groups: Sequence[str] | None = None,
                        conditions: Sequence[str] | None = None) -> xr.Dataset:
    """Read a force-matching table.

    Parameters
    ----------
    path : CSV file with columns ``participant, group, condition, target, matched``.
    groups, conditions : expected labels; a label found in the file but not listed, or listed
        without any row, is an error (the second is the "empty group" case). ``None`` accepts
        whatever labels the file has.

    Returns
    -------
    xarray.Dataset with dimension ``trial`` (one per data row, file order): data variables
    ``target`` and ``matched`` (N); coordinates ``participant``, ``group``, ``condition``
    (strings) and ``line`` (the file's line number of each trial). ``attrs`` hold the source
    path and the sorted labels (``participants``, ``groups``, ``conditions``).
    """
    path, header, rows = _read(path)
    _check_columns(path, header, FORCE_COLUMNS)
    _check_widths(path, header, rows)
    idx = {h: i for i, h in enumerate(header)}
    extra = [h for h in header if h not in FORCE_COLUMNS]
    labels: dict[str, list[str]] = {c: [] for c in ("participant", "group", "condition")}
    values: dict[str, list[float]] = {"target": [], "matched": []}
    extra_vals: dict[str, list[float]] = {h: [] for h in extra}
    non_numeric: set[str] = set()
    group_of: dict[str, tuple[str, int]] = {}
    for line, row in rows:
        for c in labels:
            labels[c].append(_label(path, line, c, row[idx[c]]))
        for c in values:
            v = _number(path, line, c, row[idx[c]])
            if v < 0:
                raise DataError(path, f"negative force {v:g} N (forces are >= 0)", line, c)
            values[c].append(v)
        for h in extra:
            try:
                extra_vals[h].append(float(row[idx[h]]) if row[idx[h]] else math.nan)
            except ValueError:
                non_numeric.add(h)
        p, g = labels["participant"][-1], labels["group"][-1]
        if p in group_of and group_of[p][0] != g:
            raise DataError(path, f"participant '{p}' is in group '{group_of[p][0]}' on line "
                                  f"{group_of[p][1]} and in group '{g}' here", line, "group")
        group_of.setdefault(p, (g, line))
    for column, expected in (("group", groups), ("condition", conditions)):
        found = sorted(set(labels[column]))
        if expected is None:
            continue
        unknown = [f for f in found if f not in expected]
        if unknown:
            line = rows[labels[column].index(unknown[0])][0]
            raise DataError(path, f"unexpected {column} '{unknown[0]}' (expected one of "
                                  f"{list(expected)})", line, column)
        empty = [e for e in expected if e not in found]
        if empty:
            raise DataError(path, f"{column} '{empty[0]}' has no rows (empty {column}); "
                                  f"found {found}", None, column)
    ds = xr.Dataset(
        {c: ("trial", np.asarray(v, float), {"units": "N", "long_name": f"{c} force"})
         for c, v in values.items()},
        coords={**{c: ("trial", np.asarray(v, dtype=str)) for c, v in labels.items()},
                "line": ("trial", np.asarray([r[0] for r in rows]))},
        attrs={"source": str(path), "participants": sorted(set(labels["participant"])),
               "groups": sorted(set(labels["group"])),
               "conditions": sorted(set(labels["condition"]))},
    )
    ds["target"].attrs["long_name"] = "target force applied by the experimenter"
    ds["matched"].attrs["long_name"] = "force produced by the participant to match it"
    for h in extra:
        if h in non_numeric:
            ds.attrs.setdefault("ignored_columns", []).append(h)
        else:
            ds[h] = ("trial", np.asarray(extra_vals[h], float))
    return ds


def write_force_matching(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a force-matching dataset (as returned by :func:`load_force_matching`) to CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(FORCE_COLUMNS)
        for i in range(ds.sizes["trial"]):
            w.writerow([str(ds.participant.values[i]), str(ds.group.values[i]),
                        str(ds.condition.values[i]), f"{float(ds.target[i]):.4f}",
                        f"{float(ds.matched[i]):.4f}"])
    tmp.replace(path)
    return path


def load_eye_tracking(path: str | Path, condition: str | None = None) -> xr.Dataset:
    """Read one eye-tracking time series (one row per sample).

    Parameters
    ----------
    path : CSV with ``time_ms``, ``eye_position_px`` and optionally ``eye_velocity``,
        ``eye_velocity_desaccaded``, ``lag`` (target minus eye position, px, as recorded in
        the SPM data: ``target = eye + lag``), ``target_position_px``.
    condition : label stored in ``attrs`` (default: the file's stem).

    Returns
    -------
    xarray.Dataset over ``time`` (ms): one variable per column present (empty optional
    cells are NaN), and ``target_position_px`` reconstructed as ``eye + lag`` when the
    file has ``lag`` but no target column (``attrs["target_source"]`` says which).
    """
    path, header, rows = _read(path)
    _check_columns(path, header, EYE_REQUIRED, EYE_OPTIONAL)
    _check_widths(path, header, rows)
    known = [h for h in header if h in EYE_REQUIRED or h in EYE_OPTIONAL]
    idx = {h: i for i, h in enumerate(header)}
    cols: dict[str, list[float]] = {h: [] for h in known}
    for line, row in rows:
        for h in known:
            cols[h].append(_number(path, line, h, row[idx[h]], allow_empty=h in EYE_OPTIONAL))
    t = np.asarray(cols.pop("time_ms"))
    bad = np.flatnonzero(np.diff(t) <= 0)
    if bad.size:
        raise DataError(path, f"time does not increase ({t[bad[0]]:g} then {t[bad[0] + 1]:g})",
                        rows[bad[0] + 1][0], "time_ms")
    data = {}
    attrs = {"source": str(path), "condition": condition or path.stem}
    for h, v in cols.items():
        arr = np.asarray(v)
        data[h] = ("time", arr, {"units": _UNITS.get(h, "")})
        attrs[f"n_missing_{h}"] = int(np.isnan(arr).sum())
    if "target_position_px" not in data and "lag" in data:
        data["target_position_px"] = ("time", data["eye_position_px"][1] + data["lag"][1],
                                      {"units": "px", "long_name": "eye + lag"})
        attrs["target_source"] = "eye_position_px + lag"
    elif "target_position_px" in data:
        attrs["target_source"] = "target_position_px"
    return xr.Dataset(data, coords={"time": ("time", t, {"units": "ms"})}, attrs=attrs)


def load_spem(directory: str | Path,
              conditions: Sequence[str] = ("fast_smooth", "fast_noisy", "slow_smooth",
                                           "slow_noisy")) -> dict[str, xr.Dataset]:
    """The four SPM smooth-pursuit grand averages (``<directory>/<condition>.csv``).

    Returns a dict condition -> dataset of :func:`load_eye_tracking` (the conditions differ
    in length, so they are not stacked).
    """
    directory = Path(directory)
    out = {}
    for c in conditions:
        out[c] = load_eye_tracking(directory / f"{c}.csv", condition=c)
    return out
