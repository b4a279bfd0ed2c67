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
    """Yield a unique temporary path beside ``path``; on success make it ``path``, durably.

    ``suffix`` ends the temporary name (for writers that insist on an extension).

    The temporary file is flushed to disk (``fsync``) before it is renamed onto ``path``, and
    the directory entry after, so neither a crash nor an exception mid-write leaves a
    truncated file at ``path``: on an exception the temporary file is removed and ``path``
    is untouched. Temporary names are unique (process id and a random part), so concurrent
    writers never share one. The file gets the mode the umask gives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}{suffix}"
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def _fsync(path: Path) -> None:
    """Flush a file (or a directory entry, where the platform allows) to disk."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():
            return  # directories cannot be opened on some platforms
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def save(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to netCDF atomically: to a temporary file beside ``path``, then rename.

    A crash mid-write never leaves a truncated file at ``path``.
    """
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"ds: expected an xarray.Dataset, got {type(ds).__name__}")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a file path, got {type(path).__name__} {path!r}")
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return Path(path)


#: First bytes of the netCDF formats: netCDF-4 (HDF5) and classic / 64-bit offset / CDF-5.
_MAGIC = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")
_EXPECTED = "expected a netCDF file written by cpsych.save"


def load(path: str | os.PathLike) -> xr.Dataset:
    """Read a results file written by :func:`save` fully into memory (the file is closed).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        One line naming the file when it is a directory, empty, not netCDF (a text file, an
        image) or truncated/damaged.
    """
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path: expected a file path, got {type(path).__name__} {path!r}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file; {_EXPECTED}")
    if p.is_dir():
        raise ValueError(f"{p}: is a directory; {_EXPECTED}")
    with p.open("rb") as fh:
        head = fh.read(8)
    if not head:
        raise ValueError(f"{p}: the file is empty; {_EXPECTED}")
    if not head.startswith(_MAGIC):
        raise ValueError(f"{p}: not a netCDF file (it starts with {head[:4]!r}); {_EXPECTED}")
    try:
        with xr.open_dataset(p, engine="netcdf4") as ds:
            return ds.load()
    except (OSError, ValueError, RuntimeError, KeyError, IndexError) as err:
        reason = " ".join(str(err).split())[:120]
        raise ValueError(f"{p}: cannot be read ({reason}); the file may be truncated or "
                         f"damaged; {_EXPECTED}") from None
