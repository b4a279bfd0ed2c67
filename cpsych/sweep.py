"""Parameter sweeps at scale: a simulation evaluated over a grid of named parameters.

A *simulation* is a pure-JAX function ``fn(params, key) -> dict`` taking a dict of named
scalar parameters (traced under ``jax.vmap``) and a PRNG key (``None`` unless the grid is
repeated over seeds), and returning a dict of scalar or small-array read-outs. A *grid*
(:class:`Grid`) names the swept parameters and their values (any number of dimensions),
optionally repeated over random seeds. :func:`sweep` evaluates the simulation at every grid
point and returns an :class:`xarray.Dataset` whose dimensions are the swept parameters (plus
``seed``, plus any dimensions of array read-outs) with the parameter values as coordinates.

Evaluation
----------
Grid points are evaluated in chunks of ``chunk_size`` points, one ``jax.jit(jax.vmap(...))``
call per chunk (the last chunk is padded by repeating its last point, so every chunk shares
one compilation). Each chunk is split over all available JAX devices with
:mod:`jax.sharding` (a 1-D mesh, batch axis sharded; the vmapped simulation is embarrassingly
parallel, so XLA inserts no collective operations). Several CPU devices can be simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``. When ``chunk_size`` is not given it
is sized to a memory budget from XLA's own memory analysis of the compiled simulation.

Several CPU devices and OpenBLAS
--------------------------------
Each forced CPU device runs its shard in its own thread, and JAX's CPU LAPACK kernels (matrix
exponentials, solves: the bulk of an active-inference step) call OpenBLAS. With OpenBLAS's
own thread pool enabled, concurrent LAPACK calls from several device threads oversubscribe
the cores and serialise on OpenBLAS's internal lock (and the small-matrix calls already cost a
flat ~16 ms each with more than one OpenBLAS thread, SPEC 8), which is what made a sharded
prototype appear to hang. :func:`sweep` warns when ``OPENBLAS_NUM_THREADS`` is not ``1`` with
more than one CPU device; the command line sets it before NumPy and JAX load. See
``docs/sweeps.md`` for measurements.

Storage, resumption and several hosts
-------------------------------------
With ``store=DIR`` every finished chunk is written to ``DIR/chunks/cNNNNNN.npz`` (to a
temporary file, then renamed: a killed process never leaves a partial chunk), beside a
``manifest.json`` that fingerprints the sweep (grid, read-outs, chunk size, seed, and a
caller-supplied description of the simulation). Re-running the same sweep skips every stored
chunk; when all chunks are present they are merged into one netCDF file
(``DIR/sweep.nc``, written atomically by :func:`cpsych.save`). A directory of per-chunk
files (rather than appending to one netCDF/HDF5 file) is what makes this robust: an HDF5
file being written when the process is killed may be corrupt as a whole, HDF5 does not allow
several writers, and per-chunk files let several hosts or processes fill one shared
directory without locking: ``host_index=i, host_count=k`` computes chunks ``i, i+k, ...``;
whichever host finds the store complete writes the merged file (the merge is deterministic,
so two hosts merging at once write identical files).

Divergence
----------
A point *diverged* if any read-out is non-finite or exceeds ``max_abs`` in magnitude, or if
the simulation returns a truthy ``"diverged"`` entry. Diverged points are flagged in the
boolean variable ``diverged`` and *all* their read-outs are set to NaN: values of a blown-up
integration are meaningless, and NaN never passes for a number in a plot or a mean, while
the flag says why it is missing (no NaN without a flag, no flag without NaN).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .results import atomic_path

__all__ = ["Grid", "parse_values", "make_grid", "sweep", "chunk_plan", "STORE_VERSION"]

STORE_VERSION = 1
RESULT_NAME = "sweep.nc"

SimFn = Callable[[dict[str, jax.Array], jax.Array | None], Mapping[str, jax.Array]]


# ----------------------------------------------------------------------------- grids
def parse_values(text: str, name: str = "grid") -> np.ndarray:
    """Parse ``"start:stop:num"`` (inclusive, ``num`` evenly spaced) or ``"a,b,c"`` values.

    Raises ``ValueError`` (one line, naming ``name``) for non-numeric, empty or reversed
    ranges.
    """
    text = text.strip()
    if not text:
        raise ValueError(f"{name}: no values given")
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise ValueError(f"{name}: range '{text}' must be start:stop:num")
        try:
            start, stop = float(parts[0]), float(parts[1])
        except ValueError:
            raise ValueError(f"{name}: range '{text}' has a non-numeric start or stop") from None
        try:
            num = int(parts[2])
        except ValueError:
            raise ValueError(f"{name}: range '{text}': num '{parts[2]}' is not an integer") \
                from None
        if num < 1:
            raise ValueError(f"{name}: range '{text}' is empty (num = {num})")
        if not (np.isfinite(start) and np.isfinite(stop)):
            raise ValueError(f"{name}: range '{text}' must have finite ends")
        if stop < start or (stop == start and num > 1):
            raise ValueError(f"{name}: range '{text}' is reversed or degenerate "
                             f"(stop {stop:g} must exceed start {start:g})")
        return np.linspace(start, stop, num)
    vals = []
    for item in text.split(","):
        try:
            vals.append(float(item))
        except ValueError:
            raise ValueError(f"{name}: value '{item.strip()}' is not a number") from None
    return np.asarray(vals, float)


@dataclass(frozen=True)
class Grid:
    """A grid of named parameters, optionally repeated over ``seeds`` random seeds.

    Attributes
    ----------
    axes : ordered mapping parameter name -> 1-D array of values (the grid's dimensions, in
        order; the last varies fastest).
    seeds : number of random seeds per point (``None``: no seed dimension, the simulation
        receives ``key=None``).
    """

    axes: dict[str, np.ndarray] = field(default_factory=dict)
    seeds: int | None = None

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self.axes) + (("seed",) if self.seeds else ())

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(v.size for v in self.axes.values()) + ((self.seeds,) if self.seeds else ())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def coords(self) -> dict[str, np.ndarray]:
        c = dict(self.axes)
        if self.seeds:
            c["seed"] = np.arange(self.seeds)
        return c

    def points(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Parameter values ``(len(flat), n_axes)`` and seed indices of flat indices."""
        idx = np.unravel_index(np.asarray(flat, np.int64), self.shape)
        axes = list(self.axes.values())
        vals = np.stack([v[idx[j]] for j, v in enumerate(axes)], axis=-1) \
            if axes else np.zeros((len(flat), 0))
        seed = idx[-1] if self.seeds else np.zeros(len(flat), np.int64)
        return vals.astype(float), np.asarray(seed, np.int64)

    def describe(self) -> dict[str, Any]:
        return {"axes": {k: [float(x) for x in v] for k, v in self.axes.items()},
                "seeds": self.seeds}


def make_grid(axes: Mapping[str, Any], seeds: int | None = None,
              allowed: Sequence[str] | None = None) -> Grid:
    """Validate and build a :class:`Grid`.

    ``axes`` maps parameter names to values: a sequence of numbers, a scalar, or a string
    accepted by :func:`parse_values`. ``allowed`` lists the parameter names the simulation
    knows; others raise ``ValueError`` naming the parameter.
    """
    out: dict[str, np.ndarray] = {}
    for name, values in axes.items():
        if not isinstance(name, str) or not name.isidentifier() or name == "seed":
            raise ValueError(f"grid: '{name}' is not a valid parameter name")
        if allowed is not None and name not in allowed:
            raise ValueError(f"grid: unknown parameter '{name}'; choose from "
                             f"{', '.join(allowed)}")
        if isinstance(values, str):
            arr = parse_values(values, f"grid '{name}'")
        else:
            try:
                arr = np.atleast_1d(np.asarray(values, dtype=float))
            except (TypeError, ValueError):
                raise ValueError(f"grid '{name}': values must be numbers") from None
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"grid '{name}': expected a non-empty 1-D list of values")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"grid '{name}': values must be finite")
        if np.unique(arr).size != arr.size:
            raise ValueError(f"grid '{name}': values repeat")
        out[name] = arr
    if seeds is not None and (int(seeds) != seeds or seeds < 1):
        raise ValueError(f"seeds: expected a positive integer, got {seeds}")
    return Grid(out, int(seeds) if seeds else None)


def chunk_plan(n_points: int, chunk_size: int, host_index: int = 0,
               host_count: int = 1) -> list[int]:
    """Indices of the chunks host ``host_index`` of ``host_count`` computes (round robin)."""
    n_chunks = -(-n_points // chunk_size)
    return list(range(host_index, n_chunks, host_count))


# ----------------------------------------------------------------------------- evaluation
_COMPILED: dict[tuple, tuple[Callable, Any]] = {}


def _point_fn(fn: SimFn, names: tuple[str, ...], keep: tuple[str, ...], seeded: bool,
              base_key: int, max_abs: float):
    def point(values, seed):
        params = {k: values[i] for i, k in enumerate(names)}
        key = jax.random.fold_in(jax.random.PRNGKey(base_key), seed) if seeded else None
        out = fn(params, key)
        missing = [k for k in keep if k not in out]
        if missing:
            raise ValueError(f"readouts: the simulation returns no {missing}; it returns "
                             f"{sorted(out)}")
        vals = {k: jnp.asarray(out[k], float) for k in keep}
        bad = jnp.asarray(out.get("diverged", False), bool).any()
        for v in vals.values():
            bad = bad | jnp.any(~jnp.isfinite(v) | (jnp.abs(v) > max_abs))
        res = {k: jnp.where(bad, jnp.nan, v) for k, v in vals.items()}
        res["diverged"] = bad
        return res

    return point


def _check_openblas(n_dev: int) -> None:
    if n_dev > 1 and jax.devices()[0].platform == "cpu" \
            and os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        warnings.warn("sweep: several CPU devices with a multi-threaded OpenBLAS oversubscribe "
                      "the cores and can stall for minutes; set OPENBLAS_NUM_THREADS=1 before "
                      "NumPy/JAX load (docs/sweeps.md)", RuntimeWarning, stacklevel=3)


def _auto_chunk(batched, n_dev: int, n_axes: int, budget: int, sharding) -> int:
    """Chunk size from XLA's memory analysis of a ``n_dev``-point compilation."""
    try:
        vals = jax.ShapeDtypeStruct((n_dev, n_axes), jnp.float64, sharding=sharding)
        seed = jax.ShapeDtypeStruct((n_dev,), jnp.int64, sharding=sharding)
        ma = batched.lower(vals, seed).compile().memory_analysis()
        per = (ma.temp_size_in_bytes + ma.output_size_in_bytes + ma.argument_size_in_bytes)
        per = max(per / n_dev, 1.0)
    except Exception:  # noqa: BLE001 - analysis unavailable on this backend
        per = 4e6
    # vmapped programs reuse buffers less than one point: keep a safety factor of 4
    return max(n_dev, int(budget / (4 * per)) // n_dev * n_dev)


def _atomic_write(path: Path, writer: Callable[[str], None], suffix: str) -> None:
    with atomic_path(path, suffix) as tmp:
        writer(str(tmp))


def _chunk_path(store: Path, i: int) -> Path:
    return store / "chunks" / f"c{i:06d}.npz"


def sweep(fn: SimFn, grid: Grid, readouts: Sequence[str] | Mapping[str, Mapping[str, Any]],
          *, store: str | os.PathLike | None = None, chunk_size: int | None = None,
          memory_budget: float = 2e9, devices: Sequence[jax.Device] | None = None,
          host_index: int | None = None, host_count: int | None = None, merge: bool = True,
          compute: bool = True, progress: bool = False, key: int = 0, max_abs: float = 1e8,
          description: str = "", attrs: Mapping[str, Any] | None = None,
          coords: Mapping[str, Any] | None = None,
          stats: dict[str, Any] | None = None) -> xr.Dataset | None:
    """Evaluate ``fn`` at every point of ``grid``.

    Parameters
    ----------
    fn : ``fn(params: dict[str, scalar], key) -> dict`` of read-outs, pure JAX.
    grid : the parameters to sweep (:func:`make_grid`).
    readouts : names of the read-outs to keep, or a mapping name -> ``{"dims": (...),
        "attrs": {...}}`` naming the dimensions of array read-outs and their attributes
        (``units``, ``long_name``).
    store : directory for per-chunk results and the merged ``sweep.nc`` (resumable);
        ``None`` keeps everything in memory.
    chunk_size : grid points per vmapped call (rounded up to a multiple of the number of
        devices); default: sized to ``memory_budget`` bytes, or the stored sweep's size.
    devices : JAX devices to shard each chunk over (default: this process's local devices).
    host_index, host_count : compute only chunks ``host_index, host_index + host_count, ...``
        (several hosts or processes filling one store). Default: under ``jax.distributed``
        (after ``jax.distributed.initialize()``), this process's ``jax.process_index()`` of
        ``jax.process_count()``; otherwise 0 of 1.
    merge : merge the store into ``sweep.nc`` when every chunk is present.
    compute : ``False`` computes nothing (merge only).
    progress : show a tqdm progress bar (simulations per second, time remaining).
    key : base PRNG seed; point ``(..., seed=s)`` gets ``fold_in(PRNGKey(key), s)``.
    max_abs : read-outs larger than this in magnitude count as diverged.
    description : text identifying the simulation and its fixed parameters; part of the
        store's fingerprint (a store never mixes two different sweeps).
    attrs : global attributes of the result.
    coords : coordinates of the dimensions of array read-outs.
    stats : if given, filled with ``computed`` and ``skipped`` chunk indices, ``n_chunks``
        and ``chunk_size``.

    Returns
    -------
    xarray.Dataset (dims: the grid's, then ``seed``, then read-out dims) with a boolean
    ``diverged``; ``None`` when a store is incomplete (other hosts still working) or
    ``merge=False``.
    """
    if not isinstance(grid, Grid):
        raise ValueError(f"grid: expected a cpsych.sweep.Grid, got {type(grid).__name__}")
    if grid.size == 0:
        raise ValueError("grid: no points")
    if isinstance(readouts, Mapping):
        meta = {k: dict(v or {}) for k, v in readouts.items()}
    else:
        meta = {k: {} for k in readouts}
    if not meta:
        raise ValueError("readouts: name at least one read-out to keep")
    if "diverged" in meta:
        raise ValueError("readouts: 'diverged' is reserved for the divergence flag")
    if host_index is None and host_count is None:
        host_index, host_count = jax.process_index(), jax.process_count()
    host_index = 0 if host_index is None else host_index
    host_count = 1 if host_count is None else host_count
    if not (0 <= host_index < host_count):
        raise ValueError(f"host_index: expected 0 <= host_index < host_count={host_count}, "
                         f"got {host_index}")
    devices = list(jax.local_devices() if devices is None else devices)
    n_dev = len(devices)
    _check_openblas(n_dev)
    names = tuple(grid.axes)
    keep = tuple(meta)

    mesh = jax.sharding.Mesh(np.asarray(devices), ("batch",))
    shard = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    cache_key = (fn, names, keep, bool(grid.seeds), key, max_abs, tuple(devices))
    if cache_key not in _COMPILED:  # one jitted function per simulation and layout
        point = _point_fn(fn, names, keep, bool(grid.seeds), key, max_abs)
        _COMPILED[cache_key] = (point, jax.jit(jax.vmap(point), in_shardings=(shard, shard),
                                               out_shardings=shard))
    point, batched = _COMPILED[cache_key]

    # shapes of the read-outs (one abstract evaluation)
    shapes = jax.eval_shape(point, jax.ShapeDtypeStruct((len(names),), jnp.float64),
                            jax.ShapeDtypeStruct((), jnp.int64))
    ro_shapes = {k: tuple(shapes[k].shape) for k in keep}

    store_p = Path(store) if store is not None else None
    manifest_path = store_p / "manifest.json" if store_p else None
    old = None
    if manifest_path is not None and manifest_path.exists():
        old = json.loads(manifest_path.read_text())
    if chunk_size is None:
        chunk_size = old["chunk_size"] if old else _auto_chunk(
            batched, n_dev, len(names), int(memory_budget), shard)
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
    chunk_size = int(-(-int(chunk_size) // n_dev) * n_dev)
    chunk_size = min(chunk_size, -(-grid.size // n_dev) * n_dev)
    n_chunks = -(-grid.size // chunk_size)

    manifest = {
        "version": STORE_VERSION, "description": description, "grid": grid.describe(),
        "readouts": {k: list(ro_shapes[k]) for k in keep}, "key": key, "max_abs": max_abs,
        "chunk_size": chunk_size, "n_points": grid.size, "n_chunks": n_chunks,
    }
    fingerprint = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    manifest["fingerprint"] = fingerprint
    if store_p is not None:
        if old is not None and old.get("fingerprint") != fingerprint:
            diff = sorted(k for k in manifest if old.get(k) != manifest[k] and k != "fingerprint")
            raise ValueError(f"store: {store_p} holds a different sweep (differs in "
                             f"{', '.join(diff)}); use another directory or delete it")
        (store_p / "chunks").mkdir(parents=True, exist_ok=True)
        if old is None:
            _atomic_write(manifest_path, lambda p: Path(p).write_text(
                json.dumps(manifest, indent=1, sort_keys=True)), ".tmp")

    mine = chunk_plan(grid.size, chunk_size, host_index, host_count) if compute else []
    results: dict[int, dict[str, np.ndarray]] = {}
    todo = [i for i in mine if store_p is None or not _chunk_path(store_p, i).exists()]
    skipped = [i for i in mine if i not in todo]
    if stats is not None:
        stats.update(computed=list(todo), skipped=skipped, n_chunks=n_chunks,
                     chunk_size=chunk_size, devices=n_dev)

    from tqdm.auto import tqdm

    def n_in(i):
        return min(chunk_size, grid.size - i * chunk_size)

    bar = tqdm(total=sum(n_in(i) for i in mine), initial=sum(n_in(i) for i in skipped),
               unit="sim", disable=not progress, smoothing=0.1, dynamic_ncols=True,
               desc=f"sweep ({n_dev} device{'s' if n_dev > 1 else ''})")
    try:
        for i in todo:
            flat = np.arange(i * chunk_size, (i + 1) * chunk_size)
            n = n_in(i)
            flat = np.minimum(flat, grid.size - 1)  # pad by repeating the last point
            vals, seeds = grid.points(flat)
            out = batched(jax.device_put(vals, shard), jax.device_put(seeds, shard))
            out = {k: np.asarray(v)[:n] for k, v in out.items()}
            if store_p is not None:
                _atomic_write(_chunk_path(store_p, i), lambda p, o=out: _savez(p, o), ".npz")
            else:
                results[i] = out
            bar.update(n)
    finally:
        bar.close()

    if not merge:
        return None
    if store_p is not None:
        missing = [i for i in range(n_chunks) if not _chunk_path(store_p, i).exists()]
        if missing:
            if stats is not None:
                stats["missing"] = missing
            return None
        results = {i: _loadz(_chunk_path(store_p, i)) for i in range(n_chunks)}
    elif len(results) < n_chunks:
        return None
    ds = _assemble(grid, results, n_chunks, keep, ro_shapes, meta, coords, attrs,
                   description)
    if store_p is not None:
        from cpsych.results import save

        save(ds, store_p / RESULT_NAME)
    return ds


def _savez(path: str, out: Mapping[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **out)
        fh.flush()
        os.fsync(fh.fileno())


def _loadz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _assemble(grid, results, n_chunks, keep, ro_shapes, meta, coords, attrs, description):
    data = {k: np.concatenate([results[i][k] for i in range(n_chunks)])
            for k in keep + ("diverged",)}
    c = grid.coords()
    for k, v in (coords or {}).items():
        c[k] = np.asarray(v)
    variables = {}
    for k in keep:
        shp = ro_shapes[k]
        dims = tuple(meta[k].get("dims", tuple(f"{k}_dim{j}" for j in range(len(shp)))))
        if len(dims) != len(shp):
            raise ValueError(f"readouts['{k}']: dims {dims} do not match its shape {shp}")
        variables[k] = (grid.dims + dims, data[k].reshape(grid.shape + shp),
                        dict(meta[k].get("attrs", {})))
    variables["diverged"] = (grid.dims, data["diverged"].reshape(grid.shape).astype(bool), {
        "long_name": "simulation diverged (non-finite or out-of-range read-outs, set to NaN)"})
    a = {"description": description, "n_points": grid.size}
    a.update(attrs or {})
    return xr.Dataset(variables, coords=c, attrs=a)
