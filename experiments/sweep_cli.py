"""Precision sweeps of a registered paradigm over a grid of its parameters (resumable,
multi-device).

Evaluates a paradigm's behavioural read-outs at every point of a grid of named parameters,
in vmapped chunks sharded over all JAX devices, writing each finished chunk to the zarr store
OUT (a directory or an fsspec URL; re-running the same command resumes where it stopped, and
``xarray.open_zarr(OUT)`` reads it in place). Unswept parameters take the
--preset's values. Paradigms are discovered through the registry (``cpsych.paradigm``):
those shipped with cpsych and any a package registers under the ``cpsych.paradigms`` entry
point; ``cpsych sweep --help`` lists them with their parameters.

Example: cpsych sweep force-matching --grid sensory=-2:10:33 --grid prior=0:12:33 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from cpsych import paradigm as registry
from cpsych.paradigm import Paradigm

__all__ = ["paradigm", "parse_grid_args", "run_sweep", "add_arguments", "run"]

_BUILT: dict[tuple, Callable] = {}


def paradigm(name: str) -> Paradigm:
    """The registered paradigm ``name`` (one-line ``ValueError`` listing the choices)."""
    return registry.get(name)


def _describe_paradigms() -> str:
    lines = ["registered paradigms (parameters; read-outs):"]
    for name, par in registry.registry().items():
        lines.append(f"  {name}: {', '.join(par.parameter_names)}; "
                     f"{', '.join(par.readout_names)}")
    return "\n".join(lines)


def parse_grid_args(items: list[str], allowed) -> dict[str, str]:
    """``["name=values", ...]`` -> ``{name: values}`` (one-line ``ValueError`` on bad items)."""
    out: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--grid: '{item}' must be NAME=VALUES (e.g. prior=0:12:33)")
        name, values = (s.strip() for s in item.split("=", 1))
        if name not in allowed:
            raise ValueError(f"--grid: unknown parameter '{name}'; choose from "
                             f"{', '.join(allowed)}")
        if name in out:
            raise ValueError(f"--grid: parameter '{name}' given twice")
        out[name] = values
    return out


def run_sweep(name: str, grid: Mapping[str, Any], *, preset: str = "control",
              fixed: Mapping[str, float] | None = None, seeds: int | None = None,
              readouts: list[str] | None = None, options: Mapping[str, Any] | None = None,
              **kwargs):
    """Sweep paradigm ``name`` over ``grid`` (Python entry point of the command)."""
    from cpsych.sweep import make_grid, sweep

    par = paradigm(name)
    for k in fixed or {}:
        if k not in par.parameter_names:
            raise ValueError(f"--set: unknown parameter '{k}'; choose from "
                             f"{', '.join(par.parameter_names)}")
    base = par.params(preset, **{k: float(v) for k, v in (fixed or {}).items()})
    g = make_grid(grid, seeds=seeds, allowed=par.parameter_names)
    if not g.axes:
        raise ValueError("--grid: give at least one parameter to sweep")
    options = dict(options or {})
    design = par.full_design(options)
    unknown = [r for r in readouts or () if r not in par.readout_names]
    if unknown:  # before tracing anything
        raise ValueError(f"--readouts: unknown read-out '{unknown[0]}'; choose from "
                         f"{', '.join(par.readout_names)}")
    ck = (name, tuple(sorted(base.items())), json.dumps(options, sort_keys=True))
    if ck not in _BUILT:  # the same simulation object, so its compilation is reused
        simulate = par.compiled(design)

        def fn(p, key, _base=base, _simulate=simulate):
            return _simulate({**_base, **p}, key)

        _BUILT[ck] = fn
    fn = _BUILT[ck]
    # the read-outs this design returns (e.g. no occluded gain without an occluder)
    shapes = jax.eval_shape(fn, {k: np.float64(0) for k in g.axes if k != "seed"},
                            jax.random.key(0) if seeds else None)
    ro = {r.name: r.spec() for r in par.readouts if r.name in shapes}
    if readouts:
        bad = [r for r in readouts if r not in ro]
        if bad:
            raise ValueError(f"--readouts: read-out '{bad[0]}' is not produced by this design "
                             f"of {name}; choose from {', '.join(ro)}")
        ro = {k: ro[k] for k in readouts}
    fixed_desc = {k: v for k, v in base.items() if k not in g.axes}
    description = json.dumps({"paradigm": name, "fixed": fixed_desc, "options": options},
                             sort_keys=True)
    attrs = {"paradigm": name, "preset": preset, "fixed_parameters": json.dumps(fixed_desc),
             "options": json.dumps(options, sort_keys=True)}
    coords = {k: v for k, v in par.coords.items()
              if any(k in m.get("dims", ()) for m in ro.values())}
    return sweep(fn, g, ro, description=description, attrs=attrs, coords=coords, **kwargs)


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _describe_paradigms()
    parser.add_argument("paradigm", choices=registry.names(),
                        help="the paradigm to sweep (registered paradigms are listed below)")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                        help="a swept parameter and its values: start:stop:num (num evenly "
                             "spaced values, stop included) or a comma list; repeat for more "
                             "dimensions (required)")
    parser.add_argument("--out", required=True, metavar="DIR_OR_URL",
                        help="the sweep's zarr store: a directory or an fsspec URL (several "
                             "hosts may share it; xarray.open_zarr reads it in place while it "
                             "fills); the finished result is also written to DIR/sweep.nc; "
                             "re-running resumes")
    parser.add_argument("--preset", default="control",
                        help="preset giving the values of unswept parameters (default control)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="fix an unswept parameter to VALUE (overrides the preset)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="repeat every point over N random seeds with process noise "
                             "(adds a 'seed' dimension; default: one noiseless run)")
    parser.add_argument("--key", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--readouts", default=None, metavar="A,B",
                        help="comma list of read-outs to keep (default: all)")
    parser.add_argument("--design", action="append", default=[], metavar="NAME=VALUE",
                        help="a design option of the paradigm (e.g. scenario=reversal for "
                             "pursuit)")
    parser.add_argument("--scenario", default=None,
                        help="shorthand for --design scenario=NAME")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="N",
                        help="grid points per vmapped, sharded call (default: sized to "
                             "--memory-budget; a resumed sweep keeps its stored size)")
    parser.add_argument("--memory-budget", type=float, default=2.0, metavar="GB",
                        help="memory per chunk used to size chunks (default 2 GB)")
    parser.add_argument("--host-index", type=int, default=None, metavar="I",
                        help="this host's index, 0..K-1, when K hosts fill one store "
                             "(default: from SLURM/jax.distributed, else 0)")
    parser.add_argument("--host-count", type=int, default=None, metavar="K",
                        help="number of hosts or processes sharing the store; host I computes "
                             "chunks I, I+K, ... (default: SLURM/jax.distributed, else 1)")
    parser.add_argument("--merge-only", action="store_true",
                        help="compute nothing; merge a complete store into DIR/sweep.nc")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def _parse_set(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set: '{item}' must be NAME=VALUE")
        k, v = (s.strip() for s in item.split("=", 1))
        try:
            out[k] = float(v)
        except ValueError:
            raise ValueError(f"--set: value '{v}' of '{k}' is not a number") from None
        if not np.isfinite(out[k]):
            raise ValueError(f"--set: value of '{k}' must be finite, got {v}")
    return out


def _parse_design(items: list[str], par: Paradigm) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--design: '{item}' must be NAME=VALUE")
        k, v = (s.strip() for s in item.split("=", 1))
        if k not in par.design:
            raise ValueError(f"--design: '{k}' is not a design option of {par.name}; choose "
                             f"from {', '.join(par.design) or '(none)'}")
        default = par.design[k]
        if isinstance(default, str):
            out[k] = v
        else:
            try:
                out[k] = type(default)(float(x) for x in v.split(",")) \
                    if isinstance(default, tuple) else float(v)
            except ValueError:
                raise ValueError(f"--design: value '{v}' of '{k}' is not numeric") from None
    return out


def run(args: argparse.Namespace) -> int:
    par = paradigm(args.paradigm)
    if not args.grid:
        raise ValueError("--grid: give at least one NAME=VALUES to sweep")
    grid = parse_grid_args(args.grid, par.parameter_names)
    if args.host_count is not None and not 0 <= (args.host_index or 0) < args.host_count:
        raise ValueError(f"--host-index: expected 0 <= I < --host-count={args.host_count}, "
                         f"got {args.host_index}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size: expected a positive integer, got {args.chunk_size}")
    if args.key < 0:
        raise ValueError(f"--key: expected a non-negative integer seed, got {args.key}")
    if args.memory_budget <= 0:
        raise ValueError("--memory-budget: expected a positive number of GB")
    readouts = [r.strip() for r in args.readouts.split(",")] if args.readouts else None
    options = _parse_design(args.design + ([f"scenario={args.scenario}"]
                                           if args.scenario else []), par)
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    ds = run_sweep(args.paradigm, grid, preset=args.preset, fixed=_parse_set(args.set),
                   seeds=args.seeds, readouts=readouts, options=options, store=args.out,
                   chunk_size=args.chunk_size, memory_budget=args.memory_budget * 1e9,
                   host_index=args.host_index, host_count=args.host_count,
                   compute=not args.merge_only, progress=not args.quiet, key=args.key,
                   stats=stats)
    wall = time.perf_counter() - t0
    if not args.quiet:
        print(f"cpsych sweep: {len(stats['computed'])} chunk(s) computed, "
              f"{len(stats['skipped'])} already stored, of {stats['n_chunks']} "
              f"({stats['chunk_size']} points each, {stats['devices']} device(s)) "
              f"in {wall:.1f} s", file=sys.stderr)
        if ds is None:
            print(f"cpsych sweep: store incomplete ({len(stats.get('missing', []))} chunk(s) "
                  "left to other hosts); rerun with --merge-only once they finish",
                  file=sys.stderr)
        else:
            print(f"cpsych sweep: wrote {str(args.out).rstrip('/')}/sweep.nc; "
                  f"{int(ds['diverged'].sum())} diverged point(s)", file=sys.stderr)
    return 0
