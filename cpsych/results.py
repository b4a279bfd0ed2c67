"""Labelled results: construction of ``xarray`` datasets and atomic netCDF input/output."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["save", "load", "time_coord", "clean_attrs", "check_finite_result", "atomic_path"]


def time_coord(T: int, dt: float, time: Any = None, units: str = "bin") -> xr.DataArray:
    """Time coordinate: ``time`` values if given, else ``arange(T) * dt`` in ``units``."""
    values = np.arange(T) * dt if time is None else np.asarray(time, dtype=float)
    if values.shape != (T,):
        raise ValueError(f"time: expected {T} values, got shape {values.shape}")
    return xr.DataArray(values, dims="time", attrs={"units": units, "long_name": "time"})


def clean_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes netCDF can store: numbers, strings and 1-D numeric arrays (bools as ints)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bool | np.bool_):
            out[k] = int(v)
        elif isinstance(v, str | int | float | np.integer | np.floating):
            out[k] = v
        elif isinstance(v, list | tuple | np.ndarray):
            arr = np.asarray(v)
            out[k] = arr.astype(str).tolist() if arr.dtype.kind in "UO" else arr
        elif v is None:
            continue
        else:
            out[k] = str(v)
    return out


def check_finite_result(ds: xr.Dataset, what: str, on_divergence: str = "raise") -> xr.Dataset:
    """Flag (``diverged`` attribute) or raise when any variable holds non-finite values.

    Parameters
    ----------
    on_divergence : {"raise", "flag"}
        ``"raise"``: ``FloatingPointError`` naming the first non-finite variable and time.
        ``"flag"``: return the dataset with ``attrs["diverged"] = 1``.
    """
    if on_divergence not in ("raise", "flag"):
        raise ValueError(f"on_divergence: must be 'raise' or 'flag', got {on_divergence!r}")
    bad = None
    for name, da in ds.data_vars.items():
        if da.dtype.kind == "f":
            finite = np.isfinite(da.values)
            if not finite.all():
                idx = np.argwhere(~finite)[0]
                t = da["time"].values[idx[da.dims.index("time")]] if "time" in da.dims else None
                bad = (name, t)
                break
    ds.attrs["diverged"] = int(bad is not None)
    if bad is not None and on_divergence == "raise":
        raise FloatingPointError(
            f"{what} diverged: variable '{bad[0]}' is non-finite from time {bad[1]} on. "
            "Lower the precisions or the time step, or pass on_divergence='flag' to keep the "
            "partial results."
        )
    return ds


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    ``suffix`` ends the temporary name (for writers that insist on an extension).

    A crash or an exception mid-write leaves ``path`` untouched (the temporary file is
    removed), so readers never see a truncated file. The file gets the mode the umask gives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to netCDF atomically: to a temporary file beside ``path``, then rename.

    A crash mid-write never leaves a truncated file at ``path``.
    """
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return Path(path)


def load(path: str | os.PathLike) -> xr.Dataset:
    """Read a results file written by :func:`save` fully into memory (the file is closed)."""
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()
