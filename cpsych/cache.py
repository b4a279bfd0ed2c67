"""Compilation cost: JAX's persistent compilation cache, and quick compiles for one-shot runs.

Most of a cold ``cpsych <command>`` is XLA compilation. Three remedies live here: the persistent
cache (fast second starts), :func:`jit_once` for programs a command runs only a few times
(fast first starts), and :func:`program`, which also keeps the traced program on disk. With the
persistent cache, compiled executables are written to disk and a later process with the same
program, shapes, JAX version and machine loads them instead of compiling; JAX still traces and
lowers the Python function to find its entry (about 1.3 s for a force-matching trial), which
:func:`program` skips by loading the program it exported (:mod:`jax.export`) the first time.

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
           "jit_once", "program"]

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
    """SHA-256 of the installed cpsych sources (``cpsych``, ``cpsych.models``,
    ``cpsych.experiments``): a stored program is used only by the code that traced it."""
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
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
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
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump((bytes(exported.serialize()), out_tree), fh)
            os.replace(tmp, path)
        except (OSError, ImportError, ValueError, TypeError, pickle.PicklingError):
            pass
    return jax.jit(exported.call, **jit_kwargs), out_tree
