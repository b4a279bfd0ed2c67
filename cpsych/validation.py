"""Argument checking for the public API and the command line, before any tracing.

Every checker raises a one-line ``TypeError`` (wrong kind of value) or ``ValueError`` (right
kind, wrong size, range or shape) that names the argument, shows the value and says what
would be accepted. Checkers leave JAX tracers alone where the argument may legitimately be
traced (precisions, smoothness, data inside ``jit``/``vmap``): only concrete values can be
checked, and a traced value was checked when it was concrete, or is the caller's
responsibility.

:func:`check_indexing` probes a user's ``f``/``g`` for indices past the end of a vector.
JAX clamps an out-of-range gather or dynamic slice (``x[5]`` on a 2-vector reads ``x[1]``)
and drops an out-of-range scatter, silently; the probe traces the function to a jaxpr,
propagates every integer value known at trace time (literal indices, index arithmetic on
them) and compares each ``gather``, ``dynamic_slice``, ``dynamic_update_slice`` and
``scatter`` index with the static size of the indexed axis.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "fmt",
    "is_traced",
    "check_type",
    "check_callable",
    "check_int",
    "check_scalar",
    "check_bool",
    "check_choice",
    "check_array",
    "check_tree_finite",
    "check_time",
    "check_fields",
    "check_grid_args",
    "check_sweep_args",
    "as_key",
    "check_output_dir",
    "check_indexing",
    "index_problems",
    "USER_ERRORS",
    "is_url",
    "run_command",
]


# ----------------------------------------------------------------------------- helpers
def fmt(value: Any, limit: int = 60) -> str:
    """Short ``repr`` of a value for an error message (arrays by shape when large)."""
    if isinstance(value, jax.core.Tracer):
        return f"a traced array of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray | jax.Array) and np.size(value) > 6:
        return f"an array of shape {tuple(np.shape(value))}"
    text = repr(value) if not isinstance(value, np.ndarray | jax.Array) \
        else np.array2string(np.asarray(value), separator=", ")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def is_traced(value: Any) -> bool:
    """Whether any leaf of ``value`` is a JAX tracer (inside ``jit``/``vmap``/``grad``)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(value))


def _fix(fix: str | None) -> str:
    return f"; {fix}" if fix else ""


def check_type(value: Any, name: str, types: type | tuple[type, ...], what: str,
               fix: str | None = None) -> Any:
    """``TypeError`` unless ``isinstance(value, types)``; ``what`` describes the expectation."""
    if not isinstance(value, types):
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__} "
                        f"{fmt(value)}{_fix(fix)}")
    return value


def check_callable(value: Any, name: str, signature: str = "", optional: bool = False) -> Any:
    """``TypeError`` unless ``value`` is callable (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not callable(value):
        sig = f" {signature}" if signature else ""
        raise TypeError(f"{name}: expected a function{sig}, got {type(value).__name__} "
                        f"{fmt(value)}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int | None = None, fix: str | None = None) -> int:
    """A Python or NumPy integer within ``[minimum, maximum]`` (``bool`` is not an integer)."""
    if not _is_int(value):
        rng = f" >= {minimum}" if minimum is not None else ""
        raise TypeError(f"{name}: expected an integer{rng}, got {type(value).__name__} "
                        f"{fmt(value)}{_fix(fix)}")
    value = int(value)
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        if maximum is None:
            want = f">= {minimum}"
        elif minimum is None:
            want = f"<= {maximum}"
        else:
            want = f"in {minimum}..{maximum}"
        raise ValueError(f"{name}: expected an integer {want}, got {value}{_fix(fix)}")
    return value


def _range_text(minimum, maximum, strict_min, strict_max) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if strict_min else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"{'<' if strict_max else '<='} {maximum:g}")
    return " and ".join(parts)


def check_scalar(value: Any, name: str, *, minimum: float | None = None,
                 maximum: float | None = None, strict_min: bool = False,
                 strict_max: bool = False, finite: bool = True, fix: str | None = None) -> Any:
    """A real number (Python, NumPy or 0-d array), finite and within range.

    A tracer passes unchecked (and is returned as is); a concrete value is returned as
    ``float``.
    """
    if isinstance(value, jax.core.Tracer):
        if value.ndim != 0:
            raise ValueError(f"{name}: expected a scalar, got {fmt(value)}{_fix(fix)}")
        return value
    if isinstance(value, bool | np.bool_) or not (
            isinstance(value, numbers.Real)
            or (isinstance(value, np.ndarray | jax.Array) and np.ndim(value) == 0
                and np.issubdtype(np.asarray(value).dtype, np.number)
                and not np.iscomplexobj(value))):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"{fmt(value)}{_fix(fix)}")
    x = float(value)
    if finite and not math.isfinite(x):
        raise ValueError(f"{name}: expected a finite number, got {x}{_fix(fix)}")
    if math.isnan(x):
        raise ValueError(f"{name}: expected a number, got nan{_fix(fix)}")
    low = minimum is not None and (x <= minimum if strict_min else x < minimum)
    high = maximum is not None and (x >= maximum if strict_max else x > maximum)
    if low or high:
        raise ValueError(f"{name}: expected a number "
                         f"{_range_text(minimum, maximum, strict_min, strict_max)}, "
                         f"got {x:g}{_fix(fix)}")
    return x


def check_bool(value: Any, name: str) -> bool:
    """``True``/``False`` (NumPy booleans too); not ``0``/``1`` or strings."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name}: expected True or False, got {type(value).__name__} "
                        f"{fmt(value)}")
    return bool(value)


def check_choice(value: Any, name: str, choices: Sequence[Any]) -> Any:
    """One of ``choices``."""
    if not isinstance(value, str | int | float | type(None)) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(repr(c) for c in choices)}, "
                         f"got {fmt(value)}")
    return value


def check_array(value: Any, name: str, *, ndim: int | Sequence[int] | None = None,
                shape: tuple[int | None, ...] | None = None, finite: bool = True,
                nonnegative: bool = False, fix: str | None = None) -> Any:
    """A numeric array of the given rank/shape (``None`` in ``shape``: any size).

    Returns a float ``numpy`` array; a tracer is returned as is after the shape check.
    ``TypeError`` for non-numeric input (strings, objects, ``None``), ``ValueError`` for the
    wrong shape, non-finite or negative entries (naming the first bad index).
    """
    if isinstance(value, jax.core.Tracer):
        arr = value
    else:
        if value is None or isinstance(value, str | bytes | Mapping):
            raise TypeError(f"{name}: expected an array of numbers, got "
                            f"{type(value).__name__} {fmt(value)}{_fix(fix)}")
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an array of numbers, got {type(value).__name__} "
                            f"{fmt(value)}{_fix(fix)}") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} array, got shape "
                             f"{tuple(arr.shape)}{_fix(fix)}")
    if shape is not None:
        ok = arr.ndim == len(shape) and all(s is None or s == a
                                            for s, a in zip(shape, arr.shape, strict=True))
        if not ok:
            want = "(" + ", ".join("any" if s is None else str(s) for s in shape) \
                + ("," if len(shape) == 1 else "") + ")"
            raise ValueError(f"{name}: expected shape {want}, got {tuple(arr.shape)}"
                             f"{_fix(fix)}")
    if isinstance(arr, jax.core.Tracer):
        return arr
    if finite and not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        where = f" at index {bad}" if bad else ""
        raise ValueError(f"{name}: values must be finite, got {arr[bad] if bad else arr}"
                         f"{where}{_fix(fix)}")
    if nonnegative and np.any(arr < 0):
        bad = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name}: values must be >= 0, got {arr[bad]:g} at index {bad}"
                         f"{_fix(fix)}")
    return arr


def check_tree_finite(tree: Any, name: str) -> None:
    """Every leaf of a pytree is a finite number (concrete leaves only)."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not leaves:
        raise ValueError(f"{name}: expected a pytree of numbers, got no leaves in {fmt(tree)}")
    for path, leaf in leaves:
        where = f"{name}{jax.tree_util.keystr(path)}"
        check_array(leaf, where)


def check_time(time: Any, T: int, name: str = "time") -> None:
    """``time`` (the coordinate values of the results) is ``None`` or ``T`` finite numbers."""
    if time is None:
        return
    check_array(time, name, shape=(T,),
                fix=f"pass one value per time bin ({T}) or leave time=None")


def check_fields(obj: Any, where: str, *, sizes: Mapping[str, int] = {},
                 functions: Mapping[str, tuple[str, bool]] = {},
                 names: Sequence[str] = ()) -> None:
    """Static fields of a model dataclass: sizes (integers >= minimum), functions
    (``name -> (signature, optional)``) and name tuples (sequences of strings)."""
    for field, minimum in sizes.items():
        check_int(getattr(obj, field), f"{where}: field '{field}'", minimum=minimum)
    for field, (signature, optional) in functions.items():
        check_callable(getattr(obj, field), f"{where}: field '{field}'", signature, optional)
    for field in names:
        value = getattr(obj, field)
        if value is None:
            continue
        if isinstance(value, str) or not isinstance(value, Sequence) \
                or not all(isinstance(n, str) for n in value):
            raise TypeError(f"{where}: field '{field}' must be a tuple of strings (one name per "
                            f"entry), got {fmt(value)}")


def check_grid_args(axes: Any, seeds: Any, allowed: Any) -> None:
    """Arguments of :func:`cpsych.sweep.make_grid`: a mapping, an integer seed count."""
    if not isinstance(axes, Mapping):
        raise TypeError(f"axes: expected a mapping of parameter name -> values, got "
                        f"{type(axes).__name__} {fmt(axes)}; e.g. {{'h': '0:8:9'}}")
    if seeds is not None:
        check_int(seeds, "seeds", minimum=1, fix="the number of random seeds per point")
    if allowed is not None and (isinstance(allowed, str) or not isinstance(allowed, Sequence)):
        raise TypeError(f"allowed: expected a sequence of parameter names, got {fmt(allowed)}")


def check_sweep_args(fn: Any, chunk_size: Any, memory_budget: Any, key: Any, max_abs: Any,
                     host_index: Any, host_count: Any) -> None:
    """Scalar arguments of :func:`cpsych.sweep.sweep`, before anything is traced."""
    check_callable(fn, "fn", "fn(params, key) -> dict of read-outs")
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", minimum=1)
    check_scalar(memory_budget, "memory_budget", minimum=0.0, strict_min=True,
                 fix="bytes per chunk, e.g. 2e9")
    check_int(key, "key", minimum=0, fix="the base random seed")
    check_scalar(max_abs, "max_abs", minimum=0.0, strict_min=True)
    if host_count is not None:
        check_int(host_count, "host_count", minimum=1)
    if host_index is not None:
        check_int(host_index, "host_index", minimum=0)


# ----------------------------------------------------------------------------- keys
def as_key(key: Any, name: str = "key", default: int | None = 0) -> Any:
    """A PRNG key from a key or an integer seed (``key=3`` is ``jax.random.key(3)``).

    Accepts typed keys (``jax.random.key``), raw ``uint32`` keys (``jax.random.PRNGKey``),
    traced keys, and non-negative integers; ``None`` gives ``jax.random.key(default)``.
    """
    if key is None and default is not None:
        return jax.random.key(default)
    if _is_int(key):
        if key < 0:
            raise ValueError(f"{name}: an integer seed must be >= 0, got {key}; pass e.g. "
                             f"{name}=0 or {name}=jax.random.key(0)")
        return jax.random.key(int(key))
    if isinstance(key, jax.Array | np.ndarray):
        dtype = key.dtype
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            return key
        if dtype == np.uint32 and key.ndim >= 1 and key.shape[-1] == 2:
            return key
    raise TypeError(f"{name}: expected a PRNG key (jax.random.key(seed)) or an integer seed, "
                    f"got {type(key).__name__} {fmt(key)}")


# ----------------------------------------------------------------------------- output
def check_output_dir(path: Any, name: str = "--out") -> Path:
    """Create ``path`` if needed and prove it writable (write and remove a probe file).

    Raises ``ValueError`` when the path (or a parent) is not a directory and
    ``PermissionError`` when it cannot be written, one line each, naming ``name``.
    """
    if not isinstance(path, str | os.PathLike) or str(path) == "":
        raise TypeError(f"{name}: expected a directory path, got {fmt(path)}")
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".cpsych-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        with probe.open("wb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except (FileExistsError, NotADirectoryError):
        blocker = next((q for q in [p, *p.parents] if q.exists() and not q.is_dir()), p)
        raise ValueError(f"{name}: '{p}' cannot be a directory: '{blocker}' is a file; choose "
                         "another output directory") from None
    except PermissionError as err:
        raise PermissionError(f"{name}: cannot write to '{p}' ({err.strerror}); choose a "
                              "writable output directory") from None
    except OSError as err:
        raise PermissionError(f"{name}: cannot write to '{p}' ({err.strerror or err}); "
                              "choose a writable output directory") from None
    return p


# ----------------------------------------------------------------------------- indexing
try:
    from jax.extend.core import Literal as _LITERAL
except ImportError:  # older JAX
    from jax.core import Literal as _LITERAL  # type: ignore[no-redef]

_CALL_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")
_SCATTERS = ("scatter", "scatter-add", "scatter_add", "scatter-mul", "scatter_mul",
             "scatter-min", "scatter_min", "scatter-max", "scatter_max", "scatter_sub",
             "scatter-sub")


def _jaxpr_parts(obj):
    """``(jaxpr, consts)`` of a ClosedJaxpr or an open Jaxpr (duck-typed across versions)."""
    if hasattr(obj, "jaxpr") and hasattr(obj, "consts"):
        return obj.jaxpr, list(obj.consts)
    if hasattr(obj, "eqns") and hasattr(obj, "invars"):
        return obj, [None] * len(obj.constvars)
    return None, None


def _describe(origin: frozenset[str], size: int) -> str:
    named = sorted(origin)
    if len(named) == 1:
        return f"{named[0]} (length {size})"
    if named:
        return f"an array of length {size} built from {', '.join(named)}"
    return f"an array of length {size}"


class _Walker:
    """Constant propagation of integer values through a jaxpr, checking index bounds."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def _bad(self, idx: int, size: int, window: int, origin: frozenset[str]) -> None:
        what = _describe(origin, size)
        if window > 1:
            msg = f"reads {window} entries from index {idx} of {what}"
        else:
            msg = f"indexes position {idx} of {what}"
        if msg not in self.problems:
            self.problems.append(msg)

    def _check_start(self, start, size: int, window: int, origin) -> None:
        if start is None:
            return
        for s in np.ravel(np.asarray(start)):
            s = int(s)
            if s < 0 or s + window > size:
                self._bad(s, size, window, origin)
                return

    def _gather(self, eqn, vals, origins) -> None:
        operand, indices = eqn.invars[0], vals[1]
        if indices is None:
            return
        dn = eqn.params["dimension_numbers"]
        sizes = eqn.params["slice_sizes"]
        shape = operand.aval.shape
        idx = np.asarray(indices).reshape(-1, len(dn.start_index_map)) \
            if len(dn.start_index_map) else np.zeros((0, 0))
        for k, d in enumerate(dn.start_index_map):
            self._check_start(idx[:, k], shape[d], sizes[d], origins[0])

    def _scatter(self, eqn, vals, origins) -> None:
        operand, indices, updates = eqn.invars[0], vals[1], eqn.invars[2]
        if indices is None:
            return
        dn = eqn.params["dimension_numbers"]
        shape = operand.aval.shape
        batching = tuple(getattr(dn, "operand_batching_dims", ()))
        window_dims = [d for d in range(len(shape))
                       if d not in dn.inserted_window_dims and d not in batching]
        idx = np.asarray(indices).reshape(-1, len(dn.scatter_dims_to_operand_dims)) \
            if len(dn.scatter_dims_to_operand_dims) else np.zeros((0, 0))
        for k, d in enumerate(dn.scatter_dims_to_operand_dims):
            if d in window_dims:
                window = updates.aval.shape[dn.update_window_dims[window_dims.index(d)]]
            else:
                window = 1
            self._check_start(idx[:, k], shape[d], window, origins[0])

    def walk(self, jaxpr, consts, in_vals, in_origins):
        env: dict[Any, Any] = {}
        org: dict[Any, frozenset[str]] = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = None if c is None else np.asarray(c) if not is_traced(c) else None
            org[v] = frozenset()
        for v, val, o in zip(jaxpr.invars, in_vals, in_origins, strict=True):
            env[v], org[v] = val, o

        def read(a):
            if isinstance(a, _LITERAL):
                return np.asarray(a.val), frozenset()
            return env.get(a), org.get(a, frozenset())

        for eqn in jaxpr.eqns:
            got = [read(a) for a in eqn.invars]
            vals = [g[0] for g in got]
            origins = [g[1] for g in got]
            union = frozenset().union(*origins) if origins else frozenset()
            name = eqn.primitive.name
            outs: list[Any] = [None] * len(eqn.outvars)
            try:
                if name == "dynamic_slice":
                    shape = eqn.invars[0].aval.shape
                    for d, (start, size) in enumerate(zip(vals[1:1 + len(shape)],
                                                          eqn.params["slice_sizes"],
                                                          strict=True)):
                        self._check_start(start, shape[d], size, origins[0])
                elif name == "dynamic_update_slice":
                    shape = eqn.invars[0].aval.shape
                    upd = eqn.invars[1].aval.shape
                    for d, start in enumerate(vals[2:2 + len(shape)]):
                        self._check_start(start, shape[d], upd[d], origins[0])
                elif name == "gather":
                    self._gather(eqn, vals, origins)
                elif name in _SCATTERS:
                    self._scatter(eqn, vals, origins)
            except Exception:  # noqa: BLE001 - an unusual layout: no verdict, no error
                pass
            subs = [(k, eqn.params[k]) for k in _CALL_PARAMS if k in eqn.params]
            others = [p for k, p in eqn.params.items() if k not in _CALL_PARAMS]
            if subs:
                sub, sub_consts = _jaxpr_parts(subs[0][1])
                if sub is not None and len(sub.invars) == len(eqn.invars):
                    outs, sub_orgs = self.walk(sub, sub_consts, vals, origins)
                    for v, o in zip(eqn.outvars, sub_orgs, strict=True):
                        org[v] = o
                    for v, val in zip(eqn.outvars, outs, strict=True):
                        env[v] = val
                    continue
            if name == "cond":  # branches take the operands after the predicate
                for br in eqn.params.get("branches", ()):
                    sub, sub_consts = _jaxpr_parts(br)
                    if sub is not None and len(sub.invars) == len(eqn.invars) - 1:
                        self.walk(sub, sub_consts, vals[1:], origins[1:])
                for v in eqn.outvars:
                    env[v], org[v] = None, union
                continue
            # loops: walk the bodies with unknown values
            for p in [s for _, s in subs] + others:
                for item in (p if isinstance(p, list | tuple) else (p,)):
                    sub, sub_consts = _jaxpr_parts(item)
                    if sub is not None:
                        self.walk(sub, sub_consts, [None] * len(sub.invars),
                                  [union] * len(sub.invars))
            if all(v is not None for v in vals) and not subs and all(
                    np.issubdtype(np.dtype(o.aval.dtype), np.integer)
                    or np.dtype(o.aval.dtype) == np.bool_ for o in eqn.outvars
                    if hasattr(o.aval, "dtype")):
                try:
                    with jax.ensure_compile_time_eval():
                        res = eqn.primitive.bind(*[jnp.asarray(v) for v in vals],
                                                 **eqn.params)
                    res = res if eqn.primitive.multiple_results else [res]
                    outs = [np.asarray(r) for r in res]
                except Exception:  # noqa: BLE001 - leave unknown
                    outs = [None] * len(eqn.outvars)
            for v, val in zip(eqn.outvars, outs, strict=True):
                env[v] = val
                org[v] = union
        return [read(a)[0] for a in jaxpr.outvars], [read(a)[1] for a in jaxpr.outvars]


def _abstract(tree: Any) -> Any:
    """Replace traced leaves by ``ShapeDtypeStruct`` (concrete leaves stay constants)."""
    return jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(jnp.shape(leaf), jnp.result_type(leaf))
        if isinstance(leaf, jax.core.Tracer) else leaf, tree)


def index_problems(fn: Callable, sizes: Mapping[str, int], theta: Any = None) -> list[str]:
    """Out-of-range static indices in ``fn(*vectors, theta)``.

    ``sizes`` maps the names of ``fn``'s vector arguments, in order, to their lengths.
    Returns one description per problem (empty when none is found, or when ``fn`` cannot be
    traced: the shape checks report that).
    """
    names = list(sizes)
    avals = [jax.ShapeDtypeStruct((n,), jnp.float64) for n in sizes.values()]
    th = _abstract(theta)
    th_leaves, th_def = jax.tree_util.tree_flatten(th)
    abstract = [isinstance(leaf, jax.ShapeDtypeStruct) for leaf in th_leaves]

    def wrapped(*args):
        vecs, traced = args[:len(names)], iter(args[len(names):])
        leaves = [next(traced) if a else leaf for leaf, a in zip(th_leaves, abstract,
                                                                   strict=True)]
        return jnp.asarray(fn(*vecs, jax.tree_util.tree_unflatten(th_def, leaves)))

    extra = [leaf for leaf, a in zip(th_leaves, abstract, strict=True) if a]
    try:
        closed = jax.make_jaxpr(wrapped)(*avals, *extra)
    except Exception:  # noqa: BLE001 - the shape checks report untraceable functions
        return []
    jaxpr, consts = _jaxpr_parts(closed)
    walker = _Walker()
    origins = [frozenset({n}) for n in names] + [frozenset({"theta"})] * len(extra)
    walker.walk(jaxpr, consts, [None] * len(jaxpr.invars), origins)
    return walker.problems


def check_indexing(fn: Callable | None, where: str, field: str, sizes: Mapping[str, int],
                   theta: Any = None) -> None:
    """``ValueError`` naming ``where``/``field`` when ``fn`` indexes past a vector's end."""
    if fn is None:
        return
    problems = index_problems(fn, sizes, theta)
    if problems:
        dims = ", ".join(f"n_{k} = {n}" for k, n in sizes.items())
        raise ValueError(
            f"{where}: field '{field}' {problems[0]}; JAX would silently clamp it to another "
            f"entry (or drop a write): fix the index, or the sizes ({dims})")


# ----------------------------------------------------------------------------- commands
#: Bad input: printed on one line without a traceback, exit status 2.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, PermissionError, NotADirectoryError,
               IsADirectoryError, FileExistsError)


def is_url(path: Any) -> bool:
    """Whether ``path`` is an fsspec URL (``s3://...``, ``memory://...``, chained ``::``)."""
    return isinstance(path, str) and ("://" in path or "::" in path)


def run_command(run: Callable[[Any], int | None], args: Any, prog: str) -> int:
    """Check ``args.out`` is a writable directory, then ``run(args)``; bad input -> exit 2.

    A local output directory is created and proved writable (a probe file is written and
    removed) before anything is computed or compiled; an fsspec URL is left to its store.
    JAX's persistent compilation cache is turned on (:mod:`cpsych.cache`) unless
    ``args.no_cache`` or ``CPSYCH_NO_CACHE=1``. ``ValueError``, ``TypeError``, the file errors
    and :class:`cpsych.fit.data.DataError` (a ``ValueError``) print one line,
    ``<prog>: error: <message>``, with no traceback.
    """
    from cpsych import cache

    try:
        out = getattr(args, "out", None)
        if out is not None and not is_url(out):  # URLs (fsspec stores) are checked on use
            check_output_dir(out, "--out")
        if not getattr(args, "no_cache", False) and not cache.disabled_by_env():
            cache.enable()
        return int(run(args) or 0)
    except USER_ERRORS as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
