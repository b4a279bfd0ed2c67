"""Start-up cost: JAX's persistent compilation cache, quick compiles, stored programs, figures.

Most of a cold ``cpsych <command>`` is XLA compilation. Three remedies live here: the persistent
cache (fast second starts), :func:`jit_once` for programs a command runs only a few times
(fast first starts), and :func:`program`, which also keeps the traced program on disk. With the
persistent cache, compiled executables are written to disk and a later process with the same
program, shapes, JAX version and machine loads them instead of compiling; JAX still traces and
lowers the Python function to find its entry (about 1.3 s for a force-matching trial), which
:func:`program` skips by loading the program it exported (:mod:`jax.export`) the first time.
Figures then cost as much as the compiled computation (0.3-0.7 s a figure, mostly layout,
PDF font subsetting and PNG rasterising): a fourth helper, :func:`figure`, keeps the files it
rendered and copies them when the same figure is asked for again from the same data.

The ``cpsych`` command line (and ``python -m cpsych.experiments.<name>``) turns the cache on
by default, in a per-user directory:

* ``$CPSYCH_CACHE_DIR`` if set;
* else ``$XDG_CACHE_HOME/cpsych/jax`` (``~/.cache/cpsych/jax`` when ``XDG_CACHE_HOME`` is
  unset).

``CPSYCH_NO_CACHE=1`` or the command-line flag ``--no-cache`` turns it off. Importing
:mod:`cpsych` does not touch the cache: library users call :func:`enable` themselves.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path

import jax
import numpy as np

__all__ = ["default_dir", "enable", "disabled_by_env", "add_argument", "QUICK_COMPILE",
           "jit_once", "program", "digest", "figure"]

#: The directory :func:`enable` turned on in this process (``None``: the cache is off).
_enabled: Path | None = None

#: XLA options for programs run only a few times: LLVM's backend optimisation off. On the
#: force-matching batch (27 active-inference trials of 32 bins) this halves the compile time
#: (6.6 to 3.1 CPU-seconds) and doubles the run time (38 to 73 ms); results agree to 1e-14.
QUICK_COMPILE: dict[str, int] = {"xla_backend_optimization_level": 0}


def default_dir() -> Path:
    """The per-user cache directory (see the module docstring)."""
    if os.environ.get("CPSYCH_CACHE_DIR"):
        return Path(os.environ["CPSYCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "cpsych" / "jax"


def disabled_by_env() -> bool:
    """Whether ``CPSYCH_NO_CACHE`` asks for no cache (any value but ``""`` or ``"0"``)."""
    return os.environ.get("CPSYCH_NO_CACHE", "") not in ("", "0")


def enable(directory: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``directory`` (default :func:`default_dir`).

    Returns the directory, or ``None`` when it cannot be created or written (the cache is then
    left off: a cache is an optimisation, never a reason to fail).
    """
    path = Path(directory) if directory is not None else default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return None
    global _enabled
    _enabled = path
    jax.config.update("jax_compilation_cache_dir", str(path))
    # cache every executable: the CLI's many small ones add up to most of a cold start
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def add_argument(parser) -> None:
    """Add the ``--no-cache`` flag to a command's ``argparse`` parser."""
    parser.add_argument("--no-cache", action="store_true",
                        help="do not use JAX's persistent compilation cache (also: "
                             "CPSYCH_NO_CACHE=1; directory: CPSYCH_CACHE_DIR or "
                             "$XDG_CACHE_HOME/cpsych/jax)")


def jit_once(fun, **jit_kwargs):
    """``jax.jit(fun)`` compiled with :data:`QUICK_COMPILE`: for a program that a command runs
    a handful of times, where compiling costs more than running (a one-shot experiment).
    Sweeps, fits and benchmarks, which run a program thousands of times, use ``jax.jit``."""
    return jax.jit(fun, compiler_options=QUICK_COMPILE, **jit_kwargs)


@functools.cache
def source_fingerprint() -> str:
    """SHA-256 of the installed cpsych sources and package data (every file of ``cpsych``,
    ``cpsych.models`` and ``cpsych.experiments`` but compiled bytecode): a stored program or
    figure is used only by the code and data that made it."""
    import cpsych

    roots = {Path(cpsych.__file__).parent}
    for sub in ("models", "experiments"):
        try:
            mod = __import__(f"cpsych.{sub}", fromlist=["_"])
            roots.update(Path(p) for p in mod.__path__)
        except ImportError:  # pragma: no cover - a partial install
            pass
    h = hashlib.sha256()
    for root in sorted(roots):
        for f in sorted(root.rglob("*")):
            if not f.is_file() or "__pycache__" in f.parts or f.suffix in (".pyc", ".pyo"):
                continue
            data = f.read_bytes()
            h.update(f"{f.relative_to(root)}:{len(data)}:".encode())
            h.update(data)
    return h.hexdigest()


def program(fun, name: str, **jit_kwargs):
    """``jax.jit(fun, **jit_kwargs)`` whose traced program is also kept on disk.

    While the persistent cache is on (:func:`enable`), the first call for a given structure,
    shapes and dtypes of the arguments exports the traced program (:func:`jax.export.export`)
    to ``<cache>/programs/``; a later process loads it and calls it without tracing, and its
    compiled executable then comes from the compilation cache. The program's file name
    fingerprints ``name``, the cpsych sources (:func:`source_fingerprint`), the JAX version,
    the backend, the x64 flag, the compiler options and the arguments, so a changed program
    is traced again. With the cache off this is plain ``jax.jit``.

    ``fun`` must be a pure function of its (array) arguments and of module-level code: what
    it closes over is baked into the stored program. A file that cannot be read back is
    replaced; writing is best effort (a cache never makes a run fail). The files are read with
    :mod:`pickle` (the output's tree structure), so ``programs/`` is created private to the
    user (mode 0700), like the rest of a per-user cache.
    """
    jitted = jax.jit(fun, **jit_kwargs)
    loaded: dict[str, tuple] = {}

    def flat(tree, *leaves):
        out = fun(*jax.tree.unflatten(tree, leaves))
        out_leaves, out_tree = jax.tree.flatten(out)
        flat.out_tree = out_tree
        return out_leaves

    @functools.wraps(fun)
    def call(*args):
        if _enabled is None:
            return jitted(*args)
        leaves, tree = jax.tree.flatten(args)
        leaves = [x if isinstance(x, jax.Array) else np.asarray(x) for x in leaves]
        key = hashlib.sha256(repr((
            name, source_fingerprint(), jax.__version__, jax.default_backend(),
            bool(jax.config.jax_enable_x64), sorted(jit_kwargs.get("compiler_options", {})
                                                   .items()), str(tree),
            [(x.shape, np.dtype(x.dtype).str) for x in leaves])).encode()).hexdigest()[:32]
        if key not in loaded:
            loaded[key] = _load_or_export(flat, tree, leaves, name, key, jit_kwargs)
        if loaded[key] is None:  # not exportable: plain jit
            return jitted(*args)
        compiled, out_tree = loaded[key]
        return jax.tree.unflatten(out_tree, compiled(*leaves))

    return call


def _load_or_export(flat, tree, leaves, name, key, jit_kwargs):
    """The stored program for ``key`` (exported and stored first if missing or unreadable),
    or ``None`` when the function cannot be exported (the caller then uses ``jax.jit``)."""
    from jax import export

    from .results import atomic_path

    path = _enabled / "programs" / f"{name}-{key}.jaxexport"
    try:
        with open(path, "rb") as fh:
            blob, out_tree = pickle.load(fh)
        exported = export.deserialize(bytearray(blob))
    except Exception:  # noqa: BLE001 - missing, damaged or foreign: trace it again
        try:
            exported = export.export(jax.jit(functools.partial(flat, tree)))(*leaves)
        except Exception:  # noqa: BLE001 - e.g. a primitive export does not support
            return None
        out_tree = flat.out_tree
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                pickle.dump((bytes(exported.serialize()), out_tree), fh)
        except (OSError, ImportError, ValueError, TypeError, pickle.PicklingError):
            pass
    return jax.jit(exported.call, **jit_kwargs), out_tree


# ----------------------------------------------------------------------------- figures
def digest(*inputs) -> str:
    """SHA-256 of ``inputs``: datasets and data arrays (every variable's name, role
    (coordinate or data), dimensions, dtype, values and attributes; the attributes and a data
    array's name), arrays, mappings, sequences and scalars.

    Every item is framed by its type and length, so different data never share their bytes
    (``digest(1, 23) != digest(12, 3)``). Equal data give equal digests whatever the order of
    a dataset's variables or a mapping's keys; anything else enters by its ``repr``, which must
    then describe it fully (no memory addresses, no unordered sets).
    """
    import xarray as xr

    h = hashlib.sha256()

    def atom(tag: str, payload: bytes) -> None:
        h.update(f"{tag}:{len(payload)}:".encode())
        h.update(payload)

    def feed(obj) -> None:
        if isinstance(obj, xr.DataArray):
            atom("dataarray", repr(obj.name).encode())
            feed(obj.variable)
            feed({str(k): v.variable for k, v in obj.coords.items()})
        elif isinstance(obj, xr.Dataset):
            atom("dataset", str(len(obj.variables)).encode())
            for name in sorted(obj.variables, key=str):
                atom("coord" if name in obj.coords else "data", str(name).encode())
                feed(obj.variables[name])
            feed(dict(obj.attrs))
        elif isinstance(obj, xr.Variable):
            atom("variable", repr(obj.dims).encode())
            feed(dict(obj.attrs))
            feed(obj.values)
        elif isinstance(obj, np.ndarray | jax.Array | np.generic):
            arr = np.asarray(obj)
            atom("array", repr((arr.shape, arr.dtype.str)).encode())
            if arr.dtype.hasobject:
                for v in arr.ravel():
                    feed(v)
            else:
                atom("bytes", np.ascontiguousarray(arr).tobytes())
        elif isinstance(obj, dict):
            atom("dict", str(len(obj)).encode())
            for k in sorted(obj, key=repr):
                feed(k)
                feed(obj[k])
        elif isinstance(obj, list | tuple):
            atom(type(obj).__name__, str(len(obj)).encode())
            for v in obj:
                feed(v)
        else:
            atom(type(obj).__name__, repr(obj).encode())

    for obj in inputs:
        feed(obj)
    return h.hexdigest()


def _figure_key(name: str, inputs: tuple) -> str:
    """The key of a figure: its name and inputs, the sources and data files, matplotlib's
    version and settings (``rcParams``; a user's ``matplotlibrc`` changes figures)."""
    import matplotlib

    settings = {k: v for k, v in dict.items(matplotlib.rcParams) if k != "backend"}
    return hashlib.sha256(repr((name, source_fingerprint(), matplotlib.__version__,
                                digest(settings), digest(*inputs))).encode()).hexdigest()[:32]


def figure(build, stem: str | os.PathLike, *inputs, name: str, save=None) -> tuple[Path, Path]:
    """Render ``build()`` to ``<stem>.pdf`` and ``<stem>.png``, or copy the files rendered
    before for the same figure.

    ``build`` must be a function of ``inputs`` alone (and of the cpsych sources and data
    files): the files are kept in ``<cache>/figures/`` under a key that fingerprints ``name``,
    ``inputs`` (:func:`digest`), the sources and package data (:func:`source_fingerprint`),
    matplotlib's version and its ``rcParams``; a later call with the same key copies them
    instead of building and rendering (the files are deterministic: the PDF carries no
    creation date). Installed fonts are not in the key. A kept file that is not a whole PDF
    or PNG (signature and end marker) is rendered again and replaced. With the cache off
    this is ``save(build(), stem)``. ``save(fig, stem) -> (pdf, png)`` writes and releases
    the figure (default :func:`cpsych.plotting.save_figure`). Copies are atomic; keying and
    storing are best effort (a cache never makes a run fail). The directory is never pruned:
    delete it to reclaim the space.
    """
    from .plotting import save_figure

    save = save_figure if save is None else save
    stem = Path(stem)
    if stem.suffix.lower() in (".pdf", ".png"):
        stem = stem.with_suffix("")
    if _enabled is None:
        return save(build(), stem)
    try:
        key = _figure_key(name, inputs)
    except Exception:  # noqa: BLE001 - an input the digest cannot read: no caching
        return save(build(), stem)
    store = _enabled / "figures"
    kept = [store / f"{name}-{key}.{ext}" for ext in ("pdf", "png")]
    wanted = [Path(f"{stem}.{ext}") for ext in ("pdf", "png")]
    if all(_whole(k) for k in kept):
        try:
            _copy(kept, wanted)
            return wanted[0], wanted[1]
        except OSError:  # unreadable copy: render it again
            pass
    pdf, png = save(build(), stem)
    try:
        store.mkdir(mode=0o700, parents=True, exist_ok=True)
        _copy((pdf, png), kept)
    except OSError:
        pass
    return pdf, png


def _copy(sources, destinations) -> None:
    """Copy each file atomically (:func:`cpsych.results.atomic_path`: no partial file, no
    temporary file left behind)."""
    import shutil

    from .results import atomic_path

    for src, dst in zip(sources, destinations, strict=True):
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def _whole(path: Path) -> bool:
    """Whether ``path`` is a PDF or PNG file with its signature and its end marker."""
    head, tail = {".pdf": (b"%PDF-", b"%%EOF"),
                  ".png": (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82")}[path.suffix]
    try:
        with open(path, "rb") as fh:
            start = fh.read(len(head))
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - 64, 0))
            end = fh.read()
    except OSError:
        return False
    return start == head and tail in end
