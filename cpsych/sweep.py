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
The grid is cut into rectangular *chunks* (:func:`chunk_shape`): the trailing dimensions
whole, one dimension split, the leading ones one value at a time, with as many points as fit
in ``chunk_size``. Each chunk is one ``jax.jit(jax.vmap(...))`` call (padded to a common
batch size by repeating its last point, so every chunk shares one compilation) and, in a
store, one zarr chunk of every variable. Each chunk is split over all available JAX devices
with :mod:`jax.sharding` (a 1-D mesh, batch axis sharded; the vmapped simulation is
embarrassingly parallel, so XLA inserts no collective operations). Several CPU devices can be
simulated with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``. When ``chunk_size`` is
not given it is sized to a memory budget from XLA's own memory analysis of the compiled
simulation.

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
With ``store=DIR`` (a directory or any fsspec URL) the sweep is a zarr (v3) group, laid out
as the result dataset: one array per read-out and ``diverged``, dimensioned and labelled like
the result, chunked as the sweep is (one zarr chunk per sweep chunk), NaN (``False`` for
``diverged``) where no chunk is written yet, with consolidated metadata in ``DIR/zarr.json``.
``xarray.open_zarr(DIR)`` reads a running or finished sweep in place. The subgroup
``_cpsych`` holds the *manifest*: the sweep's fingerprint (grid, read-outs and their layout,
chunk shape, seed, and a caller-supplied description of the simulation); a store holding
another sweep is refused. Every file is written atomically (to a temporary name, then
renamed): chunk data first, then a small per-chunk *commit record*
``_cpsych/done/cNNNNNN.json`` holding the sha256 of each stored chunk file. A chunk counts as
done only when its record exists and its files match their checksums, so a process killed at
any point leaves chunks that are complete or recomputed, and hosts never share a file to
update. Re-running the same sweep skips every done chunk and recomputes (with a warning) any
damaged one. ``host_index=i, host_count=k`` computes chunks ``i, i+k, ...`` (default:
:func:`host_from_env`: SLURM job arrays, ``jax.distributed``); whichever host finds the store
complete assembles the result and writes ``DIR/sweep.nc`` (a self-contained netCDF copy;
assembly is deterministic, so two hosts doing it at once write identical files).

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
import tempfile
import uuid
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
from .validation import check_grid_args, check_sweep_args

__all__ = ["Grid", "parse_values", "make_grid", "sweep", "chunk_shape", "chunk_plan",
           "host_from_env", "STORE_VERSION"]

#: Version of the store layout (2: zarr group with per-chunk commit records; 1 was .npz files).
STORE_VERSION = 2
RESULT_NAME = "sweep.nc"
META = "_cpsych"  # zarr subgroup holding the manifest; commit records under META/done/
ROOT_META = "zarr.json"
DIVERGED_NAME = "simulation diverged (non-finite or out-of-range read-outs, set to NaN)"

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
    check_grid_args(axes, seeds, allowed)
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


# ----------------------------------------------------------------------------- chunks, hosts
def chunk_shape(shape: Sequence[int], chunk_size: int) -> tuple[int, ...]:
    """The rectangular chunk of a grid of ``shape`` holding at most ``chunk_size`` points.

    Trailing dimensions are kept whole, one dimension is split and the leading ones are taken
    one value at a time: chunks are contiguous runs of the flattened (C-order) grid, so every
    chunk is also one zarr chunk of the stored arrays. The chunk holds more than
    ``chunk_size / 2`` points unless the whole grid is smaller.
    """
    shape = tuple(int(s) for s in shape)
    for k in range(len(shape)):
        trail = int(np.prod(shape[k + 1:], dtype=np.int64))
        if trail <= chunk_size:
            return (1,) * k + (min(shape[k], chunk_size // trail),) + shape[k + 1:]
    return ()


@dataclass(frozen=True)
class _Chunks:
    """Chunk ``i`` of a grid of ``shape`` cut into blocks of ``block`` (C order of chunks)."""

    shape: tuple[int, ...]
    block: tuple[int, ...]

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block, strict=True))

    @property
    def n_chunks(self) -> int:
        return int(np.prod(self.counts, dtype=np.int64))

    @property
    def points(self) -> int:
        return int(np.prod(self.block, dtype=np.int64))

    def index(self, i: int) -> tuple[int, ...]:
        return tuple(int(c) for c in np.unravel_index(i, self.counts)) if self.shape else ()

    def slices(self, i: int) -> tuple[slice, ...]:
        return tuple(slice(c * b, min((c + 1) * b, s))
                     for c, b, s in zip(self.index(i), self.block, self.shape, strict=True))

    def extent(self, i: int) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.slices(i))

    def flat(self, i: int) -> np.ndarray:
        """Flat (C-order) grid indices of chunk ``i``, in the chunk's own C order."""
        if not self.shape:
            return np.zeros(1, np.int64)
        idx = np.meshgrid(*[np.arange(s.start, s.stop) for s in self.slices(i)], indexing="ij")
        return np.ravel_multi_index(idx, self.shape).ravel().astype(np.int64)


def chunk_plan(n_chunks: int, host_index: int = 0, host_count: int = 1) -> list[int]:
    """Indices of the chunks host ``host_index`` of ``host_count`` computes (round robin)."""
    return list(range(host_index, n_chunks, host_count))


def _env_int(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"host_from_env: {name}={text!r} is not an integer; unset it or pass "
                         "host_index/host_count explicitly") from None


def host_from_env(environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(host_index, host_count)`` of this process, from how it was launched.

    - A SLURM job array (``sbatch --array=A-B[:S]``): task ``(SLURM_ARRAY_TASK_ID -
      SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP`` of ``SLURM_ARRAY_TASK_COUNT``.
    - Several processes of one job: ``jax.process_index()`` of ``jax.process_count()`` once
      ``jax.distributed.initialize()`` has run (under SLURM these are ``SLURM_PROCID`` and
      ``SLURM_NTASKS``); without ``jax.distributed``, ``SLURM_PROCID`` of
      ``SLURM_STEP_NUM_TASKS`` in tasks started by ``srun`` (not the batch script itself,
      whose ``SLURM_NTASKS`` counts tasks it has not started).
    - Both (an array of multi-process jobs): array task ``a`` of ``A``, process ``p`` of
      ``P`` is host ``a * P + p`` of ``A * P``.
    - Otherwise ``(0, 1)``.

    Raises ``ValueError`` (one line) for non-integer variables or a job array that is not an
    evenly spaced range (``--array=1,3,7``), whose task ids give no host index.
    """
    env = os.environ if environ is None else environ
    a_idx, a_cnt = 0, 1
    task = _env_int(env, "SLURM_ARRAY_TASK_ID")
    if task is not None:
        lo = _env_int(env, "SLURM_ARRAY_TASK_MIN", 0)
        step = max(_env_int(env, "SLURM_ARRAY_TASK_STEP", 1), 1)
        hi = _env_int(env, "SLURM_ARRAY_TASK_MAX")
        span = None if hi is None else (hi - lo) // step + 1
        a_cnt = _env_int(env, "SLURM_ARRAY_TASK_COUNT", span)
        if a_cnt is None:
            raise ValueError("host_from_env: SLURM_ARRAY_TASK_ID is set but neither "
                             "SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MAX; pass "
                             "host_index/host_count explicitly")
        a_idx, rem = divmod(task - lo, step)
        if rem or not 0 <= a_idx < a_cnt or (span is not None and span != a_cnt):
            raise ValueError(
                f"host_from_env: SLURM_ARRAY_TASK_ID={task} is not task 0..{a_cnt - 1} of an "
                f"evenly spaced array (min {lo}, max {hi}, step {step}, count {a_cnt}); use "
                "--array=0-N or pass host_index/host_count explicitly")
    if jax.process_count() > 1:
        p_idx, p_cnt = jax.process_index(), jax.process_count()
    elif _env_int(env, "SLURM_STEP_NUM_TASKS", 1) > 1 and "SLURM_PROCID" in env:
        p_idx, p_cnt = _env_int(env, "SLURM_PROCID"), _env_int(env, "SLURM_STEP_NUM_TASKS")
    else:
        p_idx, p_cnt = 0, 1
    return a_idx * p_cnt + p_idx, a_cnt * p_cnt


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


# ----------------------------------------------------------------------------- store
class _Store:
    """Bytes under ``/``-separated keys of a directory or an fsspec URL.

    Every write is atomic: to a temporary name beside the key, then renamed, so a reader or a
    killed writer never sees a partial file. ``durable`` local files are also flushed to disk
    (``fsync``) before the rename; chunk files need not be, since their checksums catch what a
    power cut may lose.
    """

    def __init__(self, store: str | os.PathLike, storage_options: Mapping | None = None):
        if isinstance(store, os.PathLike):
            store = os.fspath(store)
            scheme = store.split(":/", 1)[0] if ":/" in store else ""
            if len(scheme) > 1 and scheme.isalnum():  # pathlib turned "s3://b/k" into "s3:/b/k"
                raise ValueError(f"store: {store!r} looks like a URL mangled by pathlib; pass "
                                 "the URL as a string")
        if not isinstance(store, str) or not store:
            raise ValueError(f"store: expected a directory or an fsspec URL, got {store!r}")
        self.url = store
        self.local: Path | None = None
        if "://" in store or "::" in store:
            import fsspec

            self.fs, root = fsspec.core.url_to_fs(store, **dict(storage_options or {}))
            self.root = root.rstrip("/")
        else:
            self.local = Path(store)

    def where(self, key: str) -> str:
        """The file's name, for messages."""
        return str(self.local / key) if self.local is not None else \
            f"{self.url.rstrip('/')}/{key}"

    def read(self, key: str) -> bytes | None:
        """The file's bytes, ``None`` if it does not exist (``OSError`` if unreadable)."""
        try:
            if self.local is not None:
                return (self.local / key).read_bytes()
            return self.fs.cat_file(f"{self.root}/{key}")
        except FileNotFoundError:
            return None

    def write(self, key: str, data: bytes, durable: bool = True) -> None:
        if self.local is not None:
            with atomic_path(self.local / key, ".tmp") as tmp, open(tmp, "wb") as fh:
                fh.write(data)
                if durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            return
        path = f"{self.root}/{key}"
        parent, name = path.rsplit("/", 1)
        tmp = f"{parent}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"
        self.fs.makedirs(parent, exist_ok=True)
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise


def _jsonable(value: Any) -> Any:
    """``value`` as JSON (numpy scalars and arrays as numbers and lists; others as text)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _fingerprint(manifest: Mapping[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "fingerprint"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _record_key(i: int) -> str:
    return f"{META}/done/c{i:06d}.json"


class _Layout:
    """The zarr arrays of a sweep store, built in memory.

    ``skeleton`` is every file of a new store (metadata, coordinates; no data chunks);
    :meth:`encode` turns one chunk's read-outs into the bytes of its zarr chunk files and
    :meth:`decode` reads whole arrays back from chunk files, both with zarr's own codecs.
    """

    def __init__(self, grid: Grid, chunks: _Chunks, keep: tuple[str, ...],
                 ro_shapes: dict[str, tuple[int, ...]], ro_dims: dict[str, tuple[str, ...]],
                 meta: Mapping[str, Mapping[str, Any]], coords: Mapping[str, np.ndarray],
                 attrs: Mapping[str, Any], manifest: Mapping[str, Any]):
        import zarr
        from zarr.codecs import ZstdCodec
        from zarr.storage import MemoryStore

        self.chunks = chunks
        self.mem: dict[str, Any] = {}
        store = MemoryStore(store_dict=self.mem)
        # zstd with its content checksum: a reader of a damaged chunk gets an error, not data
        kw = {"compressors": ZstdCodec(level=3, checksum=True),
              "config": {"write_empty_chunks": True}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr's notes on unspecified dtypes/consolidation
            root = zarr.create_group(store, zarr_format=3, attributes=_jsonable(attrs))
            for name, values in coords.items():
                arr = root.create_array(name, shape=values.shape, chunks=values.shape,
                                        dtype=values.dtype, dimension_names=(name,), **kw)
                arr[...] = values
            self.arrays = {}
            for k in keep:
                self.arrays[k] = root.create_array(
                    k, shape=grid.shape + ro_shapes[k], chunks=chunks.block + ro_shapes[k],
                    dtype="float64", fill_value=np.nan, dimension_names=grid.dims + ro_dims[k],
                    attributes=_jsonable(meta[k].get("attrs", {})), **kw)
            self.arrays["diverged"] = root.create_array(
                "diverged", shape=grid.shape, chunks=chunks.block, dtype="bool",
                fill_value=False, dimension_names=grid.dims,
                attributes={"long_name": DIVERGED_NAME}, **kw)
            root.create_group(META, attributes=_jsonable(manifest))
            zarr.consolidate_metadata(store)
        self.skeleton = {k: v.to_bytes() for k, v in self.mem.items()}

    def keys(self, i: int) -> list[str]:
        """The files of chunk ``i``, one per variable."""
        idx = self.chunks.index(i)
        return [f"{name}/" + arr.metadata.encode_chunk_key(idx + (0,) * (arr.ndim - len(idx)))
                for name, arr in self.arrays.items()]

    def encode(self, i: int, out: Mapping[str, np.ndarray]) -> dict[str, bytes]:
        sl, ext = self.chunks.slices(i), self.chunks.extent(i)
        for name, arr in self.arrays.items():
            arr[sl] = np.asarray(out[name]).reshape(ext + arr.shape[len(ext):])
        return {key: self.mem.pop(key).to_bytes() for key in self.keys(i)}

    def decode(self, files: Mapping[str, bytes]) -> dict[str, np.ndarray]:
        from zarr.core.buffer import default_buffer_prototype

        buf = default_buffer_prototype().buffer
        self.mem.update({k: buf.from_bytes(v) for k, v in files.items()})
        try:
            return {name: arr[...] for name, arr in self.arrays.items()}
        finally:
            for k in files:
                self.mem.pop(k, None)


def _read_manifest(st: _Store) -> dict[str, Any] | None:
    """The manifest of the sweep in ``st`` (``None``: no sweep there yet).

    Raises a one-line ``ValueError`` naming the file when the metadata is damaged or the
    directory holds something else.
    """
    raw = st.read(ROOT_META)
    if raw is None:
        if st.read("manifest.json") is not None:
            raise ValueError(f"store: {st.url} holds a sweep in the old layout (manifest.json "
                             "and chunks/*.npz, before zarr); its sweep.nc, if complete, still "
                             "loads with cpsych.load; use another directory or delete it")
        return None
    where = st.where(ROOT_META)
    try:
        root = json.loads(raw)
        manifest = root["consolidated_metadata"]["metadata"][META]["attributes"]
        fingerprint = manifest["fingerprint"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"store: {where} is damaged or not a cpsych sweep: expected zarr group "
                         f"metadata (JSON) with the sweep manifest in '{META}' and its "
                         "fingerprint; restore it or use another directory") from None
    if _fingerprint(manifest) != fingerprint:
        raise ValueError(f"store: {where} is damaged: its manifest does not match its "
                         f"fingerprint {str(fingerprint)[:12]}...; restore it or use another "
                         "directory")
    return manifest


def _check_chunk(st: _Store, layout: _Layout, i: int,
                 fingerprint: str) -> tuple[dict[str, bytes] | None, str]:
    """``(files, "")`` for a done chunk; ``(None, "")`` if not done; ``(None, why)`` if damaged."""
    rkey = _record_key(i)
    try:
        raw = st.read(rkey)
    except OSError as e:
        return None, f"its commit record {rkey} is unreadable ({e})"
    if raw is None:
        return None, ""
    try:
        rec = json.loads(raw)
        sums = dict(rec["sha256"])
        ok = rec["chunk"] == i and rec["fingerprint"] == fingerprint
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        return None, f"its commit record {rkey} is unreadable or belongs to another sweep"
    keys = layout.keys(i)
    if sorted(sums) != sorted(keys):
        return None, f"its commit record {rkey} lists {sorted(sums)}, expected {sorted(keys)}"
    files = {}
    for key in keys:
        try:
            data = st.read(key)
        except OSError as e:
            return None, f"{key} is unreadable ({e})"
        if data is None:
            return None, f"{key} is missing"
        if hashlib.sha256(data).hexdigest() != sums[key]:
            return None, f"{key} fails its sha256 checksum"
        files[key] = data
    return files, ""


def _commit_chunk(st: _Store, i: int, files: Mapping[str, bytes], fingerprint: str) -> None:
    """Write chunk ``i``'s files, then its commit record (the chunk counts as done after).

    Not flushed to disk one by one (``fsync`` would dominate the cost of small chunks, above
    all on network filesystems): a kill loses nothing the page cache holds, and after a power
    cut the checksums flag whatever was lost, which is then recomputed.
    """
    for key, data in files.items():
        st.write(key, data, durable=False)
    record = {"chunk": i, "fingerprint": fingerprint,
              "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
    st.write(_record_key(i), json.dumps(record, indent=1, sort_keys=True).encode(),
             durable=False)


def _write_result(st: _Store, ds: xr.Dataset) -> None:
    from .results import save

    if st.local is not None:
        save(ds, st.local / RESULT_NAME)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / RESULT_NAME
        save(ds, path)
        st.write(RESULT_NAME, path.read_bytes())


# ----------------------------------------------------------------------------- sweep
def sweep(fn: SimFn, grid: Grid, readouts: Sequence[str] | Mapping[str, Mapping[str, Any]],
          *, store: str | os.PathLike | None = None, chunk_size: int | None = None,
          memory_budget: float = 2e9, devices: Sequence[jax.Device] | None = None,
          host_index: int | None = None, host_count: int | None = None, merge: bool = True,
          compute: bool = True, progress: bool = False, key: int = 0, max_abs: float = 1e8,
          description: str = "", attrs: Mapping[str, Any] | None = None,
          coords: Mapping[str, Any] | None = None, stats: dict[str, Any] | None = None,
          storage_options: Mapping[str, Any] | None = None) -> xr.Dataset | None:
    """Evaluate ``fn`` at every point of ``grid``.

    Parameters
    ----------
    fn : ``fn(params: dict[str, scalar], key) -> dict`` of read-outs, pure JAX.
    grid : the parameters to sweep (:func:`make_grid`).
    readouts : names of the read-outs to keep, or a mapping name -> ``{"dims": (...),
        "attrs": {...}}`` naming the dimensions of array read-outs and their attributes
        (``units``, ``long_name``).
    store : directory or fsspec URL (``file://``, ``s3://``, ``memory://``, ...) of a zarr
        store holding the sweep as it runs (resumable, readable in place with
        ``xarray.open_zarr``), plus ``sweep.nc`` once complete; ``None`` keeps everything in
        memory.
    chunk_size : most grid points per chunk (one vmapped call, one zarr chunk; see
        :func:`chunk_shape`); default: sized to ``memory_budget`` bytes, or the stored
        sweep's chunks.
    devices : JAX devices to shard each chunk over (default: this process's local devices).
    host_index, host_count : compute only chunks ``host_index, host_index + host_count, ...``
        (several hosts or processes filling one store). Default (both ``None``) with a
        store: :func:`host_from_env` (SLURM job array task, ``jax.distributed`` process, else
        0 of 1); without a store: 0 of 1.
    merge : assemble the result (and write ``sweep.nc``) when every chunk is done.
    compute : ``False`` computes nothing (merge only).
    progress : show a tqdm progress bar (simulations per second, time remaining).
    key : base PRNG seed; point ``(..., seed=s)`` gets ``fold_in(PRNGKey(key), s)``.
    max_abs : read-outs larger than this in magnitude count as diverged.
    description : text identifying the simulation and its fixed parameters; part of the
        store's fingerprint (a store never mixes two different sweeps).
    attrs : global attributes of the result.
    coords : coordinates of the dimensions of array read-outs.
    stats : if given, filled with ``computed``, ``skipped`` and ``damaged`` chunk indices,
        ``n_chunks``, ``chunk_size`` (points per chunk), ``chunk_shape`` and ``devices``
        (and ``missing`` when the store is incomplete).
    storage_options : options of the fsspec filesystem of a URL ``store`` (credentials, ...).

    Returns
    -------
    xarray.Dataset (dims: the grid's, then ``seed``, then read-out dims) with a boolean
    ``diverged``; ``None`` when a store is incomplete (other hosts still working) or
    ``merge=False``.

    Warns (``RuntimeWarning``) naming every damaged chunk (checksum mismatch, missing or
    unreadable file), which is recomputed.
    """
    check_sweep_args(fn, chunk_size, memory_budget, key, max_abs, host_index, host_count)
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
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
    if host_index is None and host_count is None and store is not None:
        host_index, host_count = host_from_env()
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

    # shapes and dimensions of the read-outs (one abstract evaluation)
    shapes = jax.eval_shape(point, jax.ShapeDtypeStruct((len(names),), jnp.float64),
                            jax.ShapeDtypeStruct((), jnp.int64))
    ro_shapes = {k: tuple(shapes[k].shape) for k in keep}
    ro_dims = {}
    for k in keep:
        shp = ro_shapes[k]
        ro_dims[k] = tuple(meta[k].get("dims", tuple(f"{k}_dim{j}" for j in range(len(shp)))))
        if len(ro_dims[k]) != len(shp):
            raise ValueError(f"readouts['{k}']: dims {ro_dims[k]} do not match its shape {shp}")
    coord_arrays = {k: np.asarray(v) for k, v in (coords or {}).items()}
    all_attrs = {"description": description, "n_points": grid.size}
    all_attrs.update(attrs or {})

    st = _Store(store, storage_options) if store is not None else None
    old = _read_manifest(st) if st is not None else None
    if chunk_size is not None:
        block = chunk_shape(grid.shape, int(chunk_size))
    elif old is not None and len(old.get("chunk_shape", ())) == len(grid.shape):
        block = tuple(int(b) for b in old["chunk_shape"])
    else:
        block = chunk_shape(grid.shape, _auto_chunk(batched, n_dev, len(names),
                                                    int(memory_budget), shard))
    chunks = _Chunks(grid.shape, block)
    n_chunks = chunks.n_chunks
    batch = -(-chunks.points // n_dev) * n_dev  # every chunk padded to one compiled size

    manifest = {
        "version": STORE_VERSION, "description": description, "grid": grid.describe(),
        "readouts": {k: {"shape": list(ro_shapes[k]), "dims": list(ro_dims[k])}
                     for k in keep},
        "coords": _jsonable(coord_arrays), "key": _jsonable(key),
        "max_abs": float(max_abs), "chunk_shape": list(block), "n_points": grid.size,
        "n_chunks": n_chunks,
    }
    fingerprint = manifest["fingerprint"] = _fingerprint(manifest)
    layout = None
    if st is not None:
        if old is not None and old["fingerprint"] != fingerprint:
            diff = sorted(k for k in manifest if old.get(k) != manifest[k] and k != "fingerprint")
            raise ValueError(f"store: {st.url} holds a different sweep (differs in "
                             f"{', '.join(diff)}); use another directory or delete it")
        layout = _Layout(grid, chunks, keep, ro_shapes, ro_dims, meta,
                         {**grid.coords(), **coord_arrays}, all_attrs, manifest)
        if old is None:  # a new store: the root metadata last, so it exists only when whole
            for k in sorted(layout.skeleton):
                if k != ROOT_META:
                    st.write(k, layout.skeleton[k])
            st.write(ROOT_META, layout.skeleton[ROOT_META])

    mine = chunk_plan(n_chunks, host_index, host_count) if compute else []
    done: dict[int, dict[str, bytes]] = {}  # verified chunk files, for the merge
    damaged: list[int] = []

    def check(i: int) -> bool:
        files, why = _check_chunk(st, layout, i, fingerprint)
        if why:
            redo = "recomputing it" if compute else "rerun with compute=True (without " \
                "--merge-only) to redo it"
            warnings.warn(f"sweep: chunk {i} of {st.url} is damaged ({why}); {redo}",
                          RuntimeWarning, stacklevel=3)
            damaged.append(i)
        if files is not None:
            done[i] = files if merge else {}
        return files is not None

    todo = []
    for i in mine:
        if st is None or not check(i):
            todo.append(i)
    skipped = [i for i in mine if i not in todo]
    if stats is not None:
        stats.update(computed=list(todo), skipped=skipped, damaged=damaged, n_chunks=n_chunks,
                     chunk_size=chunks.points, chunk_shape=block, devices=n_dev)
    data = None
    if st is None:
        data = {k: np.full(grid.shape + ro_shapes[k], np.nan) for k in keep}
        data["diverged"] = np.zeros(grid.shape, bool)

    def run(i: int) -> None:
        flat = chunks.flat(i)
        n = flat.size
        flat = np.concatenate([flat, np.full(batch - n, flat[-1])])  # pad: repeat the last
        vals, seeds = grid.points(flat)
        out = batched(jax.device_put(vals, shard), jax.device_put(seeds, shard))
        out = {k: np.asarray(v)[:n] for k, v in out.items()}
        if st is None:
            for k, v in out.items():
                data[k][chunks.slices(i)] = v.reshape(chunks.extent(i) + v.shape[1:])
            return
        files = layout.encode(i, out)
        _commit_chunk(st, i, files, fingerprint)
        done[i] = files if merge else {}

    from tqdm.auto import tqdm

    def n_in(i):
        return int(np.prod(chunks.extent(i), dtype=np.int64))

    bar = tqdm(total=sum(n_in(i) for i in mine), initial=sum(n_in(i) for i in skipped),
               unit="sim", disable=not progress, smoothing=0.1, dynamic_ncols=True,
               desc=f"sweep ({n_dev} device{'s' if n_dev > 1 else ''})")
    try:
        for i in todo:
            run(i)
            bar.update(n_in(i))
    finally:
        bar.close()

    if not merge or (st is None and len(todo) < n_chunks):
        return None
    if st is not None:
        missing = []
        for i in range(n_chunks):
            if i in done or check(i):
                continue
            if compute and i in damaged:  # another host's chunk: redo it here
                run(i)
                if stats is not None:
                    stats["computed"].append(i)
            else:
                missing.append(i)
        if missing:
            if stats is not None:
                stats["missing"] = missing
            return None
        data = layout.decode({k: v for files in done.values() for k, v in files.items()})
    ds = _assemble(grid, data, keep, ro_dims, meta, coord_arrays, all_attrs)
    if st is not None:
        _write_result(st, ds)
    return ds


def _assemble(grid, data, keep, ro_dims, meta, coords, attrs) -> xr.Dataset:
    c = grid.coords()
    c.update(coords)
    variables = {k: (grid.dims + ro_dims[k], data[k], dict(meta[k].get("attrs", {})))
                 for k in keep}
    variables["diverged"] = (grid.dims, data["diverged"].astype(bool),
                             {"long_name": DIVERGED_NAME})
    return xr.Dataset(variables, coords=c, attrs=dict(attrs))
