"""Precision sweeps of a paradigm over a grid of log-precisions (resumable, multi-device).

Evaluates a paradigm's behavioural read-outs at every point of a grid of named parameters,
in vmapped chunks sharded over all JAX devices, writing each finished chunk to OUT/chunks/
(re-running the same command resumes where it stopped) and merging them into OUT/sweep.nc.

Paradigms and their parameters (unswept parameters take the --preset's values):

  force-matching  h (sensory attenuation), sensory (sensory log-precision), state (state
                  log-precision), prior (prior log-precision on v_self), ext (prior
                  log-precision on v_ext), action (action log-precision), kappa (action rate).
                  Read-outs per target force (0.5, 1, 1.5, 2 N): self_generated, perceived,
                  matched, overcompensation; and illusion (mean overcompensation, N).
  pursuit         proprio, retina, state1, cause2, state2, prior (log-precisions of SPEC 5.5).
                  Read-outs: gain_visible, gain_occluded, lag_ms, rms_error_deg,
                  peak_eye_velocity (catch-up saccade, deg/s).

Example: cpsych sweep force-matching --grid sensory=-2:10:33 --grid prior=0:12:33 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Paradigm", "PARADIGMS", "paradigm", "parse_grid_args", "run_sweep",
           "add_arguments", "run"]


@dataclass(frozen=True)
class Paradigm:
    """A sweepable paradigm.

    Attributes
    ----------
    name : command-line name.
    params : parameter name -> long name (all log-precisions unless said otherwise).
    presets : preset name -> values of every parameter.
    readouts : read-out name -> ``{"dims": ..., "attrs": ...}`` (see :func:`cpsych.sweep.sweep`).
    coords : coordinates of the read-outs' own dimensions.
    build : ``build(fixed: dict, options: dict) -> fn(params, key) -> dict`` (pure JAX).
    """

    name: str
    params: dict[str, str]
    presets: dict[str, dict[str, float]]
    readouts: dict[str, dict[str, Any]]
    coords: dict[str, Any]
    build: Callable[[dict[str, float], dict[str, Any]], Callable]


# ----------------------------------------------------------------------------- force matching
FM_FIELDS = {"h": "h", "sensory": "log_pi_y", "state": "log_pi_x", "prior": "log_pi_self",
             "ext": "log_pi_ext", "action": "log_pi_action", "kappa": "kappa_a"}


def _fm_paradigm() -> Paradigm:
    from cpsych.models import force_matching as fm

    presets = {name: {k: float(getattr(p, f)) for k, f in FM_FIELDS.items()}
               for name, p in fm.PRESETS.items()}
    targets = np.asarray(fm.TARGETS, float)

    def build(fixed: dict[str, float], options: dict[str, Any]):
        def fn(p: dict[str, jax.Array], key: jax.Array | None) -> dict[str, jax.Array]:
            vals = {f: p.get(k, fixed[k]) for k, f in FM_FIELDS.items()}
            params = fm.Params(**{f: jnp.asarray(v, float) for f, v in vals.items()})

            def one(target):
                out = fm.simulate_trial(params, target, None, key)
                xp = out.x_process[:, 0]
                t = jnp.argmax(xp)
                perceived = fm.percept(out, t, "self")
                matched = fm.matched_force(params, perceived, xp)
                return xp[t], perceived, matched

            true, perceived, matched = jax.vmap(one)(jnp.asarray(targets))
            over = true - matched
            return {"self_generated": true, "perceived": perceived, "matched": matched,
                    "overcompensation": over, "illusion": jnp.mean(over)}

        return fn

    N = "N"
    per_target = ("target",)
    return Paradigm(
        name="force-matching",
        params={"h": "sensory attenuation h (log-precision units)",
                "sensory": "sensory log-precision log_pi_y", "state": "state log-precision",
                "prior": "prior log-precision on v_self", "ext": "prior log-precision on v_ext",
                "action": "action log-precision", "kappa": "action rate kappa_a"},
        presets=presets,
        readouts={
            "illusion": {"attrs": {"units": N, "long_name":
                                   "force-matching illusion: mean overcompensation "
                                   "(self-generated minus matched force) over targets"}},
            "overcompensation": {"dims": per_target, "attrs": {
                "units": N, "long_name": "self-generated minus matched force"}},
            "self_generated": {"dims": per_target, "attrs": {
                "units": N, "long_name": "true peak self-generated force"}},
            "perceived": {"dims": per_target, "attrs": {
                "units": N, "long_name": "perceived self-generated force"}},
            "matched": {"dims": per_target, "attrs": {
                "units": N, "long_name": "external force perceived as equal"}},
        },
        coords={"target": targets},
        build=build,
    )


# ----------------------------------------------------------------------------- pursuit
PU_FIELDS = ("proprio", "retina", "state1", "cause2", "state2", "prior")


def _pursuit_paradigm() -> Paradigm:
    from cpsych.models import pursuit as pu

    presets = {name: {k: float(v) for k, v in zip(PU_FIELDS, p.as_array(), strict=True)}
               for name, p in pu.PRESETS.items()}

    def build(fixed: dict[str, float], options: dict[str, Any]):
        name = options.get("scenario", "occlusion")
        sc = pu.scenario(name)
        T = sc.cause.size
        templates = pu.prepare(T)
        cause = jnp.asarray(sc.cause)
        score_from = pu.REVERSAL if name == "reversal" else None
        prior_fixed = sc.prior_log_pi

        def fn(p: dict[str, jax.Array], key: jax.Array | None) -> dict[str, jax.Array]:
            vals = [p.get(k, fixed[k]) for k in PU_FIELDS]
            if prior_fixed is not None and "prior" not in p:
                vals[5] = prior_fixed
            lp = jnp.stack([jnp.asarray(v, float) for v in vals])
            tr = pu.simulate_traces(lp, cause, sc.occluder, sc.prior_mean, templates, key,
                                    noise=key is not None)
            ro = pu.readouts(tr, score_from=score_from)
            if sc.occluder == 0:
                ro.pop("gain_occluded")
            return ro

        return fn

    ro = {
        "gain_visible": {"attrs": {"units": "1", "long_name": "pursuit gain, target visible"}},
        "gain_occluded": {"attrs": {"units": "1", "long_name":
                                    "pursuit gain, target occluded (occlusion scenario)"}},
        "lag_ms": {"attrs": {"units": "ms", "long_name": "pursuit lag"}},
        "rms_error_deg": {"attrs": {"units": "deg", "long_name": "RMS eye-target error"}},
        "peak_eye_velocity": {"attrs": {"units": "deg/s", "long_name":
                                        "catch-up saccade: peak eye velocity after the "
                                        "target reappears"}},
    }
    return Paradigm(
        name="pursuit",
        params={"proprio": "proprioceptive log-precision", "retina": "retinal (level-1 "
                "sensory) log-precision", "state1": "level-1 state log-precision",
                "cause2": "level-2 cause log-precision", "state2": "level-2 (oscillator) "
                "state log-precision", "prior": "prior log-precision on the frequency"},
        presets=presets, readouts=ro, coords={}, build=build,
    )


_FACTORIES: dict[str, Callable[[], Paradigm]] = {
    "force-matching": _fm_paradigm,
    "pursuit": _pursuit_paradigm,
}
PARADIGMS = tuple(_FACTORIES)
_BUILT: dict[tuple, Callable] = {}


def paradigm(name: str) -> Paradigm:
    """The sweepable paradigm ``name`` (one of :data:`PARADIGMS`)."""
    if name not in _FACTORIES:
        raise ValueError(f"paradigm: unknown paradigm '{name}'; choose from "
                         f"{', '.join(PARADIGMS)}")
    return _FACTORIES[name]()


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
    if preset not in par.presets:
        raise ValueError(f"preset: unknown preset '{preset}'; choose from "
                         f"{', '.join(par.presets)}")
    base = dict(par.presets[preset])
    for k, v in (fixed or {}).items():
        if k not in par.params:
            raise ValueError(f"--set: unknown parameter '{k}'; choose from "
                             f"{', '.join(par.params)}")
        if not np.isfinite(v):
            raise ValueError(f"--set: parameter '{k}' must be finite")
        base[k] = float(v)
    g = make_grid(grid, seeds=seeds, allowed=tuple(par.params))
    if not g.axes:
        raise ValueError("--grid: give at least one parameter to sweep")
    options = dict(options or {})
    ro = dict(par.readouts)
    if name == "pursuit" and options.get("scenario", "occlusion") != "occlusion":
        ro.pop("gain_occluded")
    if readouts:
        bad = [r for r in readouts if r not in ro]
        if bad:
            raise ValueError(f"--readouts: unknown read-out '{bad[0]}'; choose from "
                             f"{', '.join(ro)}")
        ro = {k: ro[k] for k in readouts}
    fixed_desc = {k: v for k, v in base.items() if k not in g.axes}
    description = json.dumps({"paradigm": name, "fixed": fixed_desc, "options": options},
                             sort_keys=True)
    attrs = {"paradigm": name, "preset": preset, "fixed_parameters": json.dumps(fixed_desc),
             "options": json.dumps(options, sort_keys=True)}
    ck = (name, tuple(sorted(base.items())), json.dumps(options, sort_keys=True))
    if ck not in _BUILT:  # the same simulation object, so its compilation is reused
        _BUILT[ck] = par.build(base, options)
    fn = _BUILT[ck]
    coords = {k: v for k, v in par.coords.items()
              if any(k in m.get("dims", ()) for m in ro.values())}
    return sweep(fn, g, ro, description=description, attrs=attrs, coords=coords, **kwargs)


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("paradigm", choices=PARADIGMS,
                        help="the paradigm to sweep")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=VALUES",
                        help="a swept parameter and its values: start:stop:num (num evenly "
                             "spaced values, stop included) or a comma list; repeat for more "
                             "dimensions (required)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="store directory: per-chunk results in DIR/chunks, the merged "
                             "result in DIR/sweep.nc; re-running resumes")
    parser.add_argument("--preset", default="control",
                        help="preset giving the values of unswept parameters (force-matching: "
                             "control, schizophrenia, delusion, autism; pursuit: control, "
                             "schizophrenia, autism; default control)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="fix an unswept parameter to VALUE (overrides the preset)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N",
                        help="repeat every point over N random seeds with process noise "
                             "(adds a 'seed' dimension; default: one noiseless run)")
    parser.add_argument("--key", type=int, default=0, help="base random seed (default 0)")
    parser.add_argument("--readouts", default=None, metavar="A,B",
                        help="comma list of read-outs to keep (default: all)")
    parser.add_argument("--scenario", default="occlusion",
                        choices=("occlusion", "reversal", "frequency"),
                        help="pursuit scenario (default occlusion; ignored for force-matching)")
    parser.add_argument("--chunk-size", type=int, default=None, metavar="N",
                        help="grid points per vmapped, sharded call (default: sized to "
                             "--memory-budget; a resumed sweep keeps its stored size)")
    parser.add_argument("--memory-budget", type=float, default=2.0, metavar="GB",
                        help="memory per chunk used to size chunks (default 2 GB)")
    parser.add_argument("--host-index", type=int, default=0, metavar="I",
                        help="this host's index, 0..K-1, when K hosts fill one store "
                             "(default 0)")
    parser.add_argument("--host-count", type=int, default=1, metavar="K",
                        help="number of hosts or processes sharing the store; host I computes "
                             "chunks I, I+K, ... (default 1)")
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
    return out


def run(args: argparse.Namespace) -> int:
    par = paradigm(args.paradigm)
    if not args.grid:
        raise ValueError("--grid: give at least one NAME=VALUES to sweep")
    grid = parse_grid_args(args.grid, tuple(par.params))
    if args.host_count < 1 or not 0 <= args.host_index < args.host_count:
        raise ValueError(f"--host-index: expected 0 <= I < --host-count={args.host_count}, "
                         f"got {args.host_index}")
    if args.chunk_size is not None and args.chunk_size < 1:
        raise ValueError(f"--chunk-size: expected a positive integer, got {args.chunk_size}")
    if args.memory_budget <= 0:
        raise ValueError("--memory-budget: expected a positive number of GB")
    readouts = [r.strip() for r in args.readouts.split(",")] if args.readouts else None
    options = {"scenario": args.scenario} if args.paradigm == "pursuit" else {}
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
            print(f"cpsych sweep: wrote {args.out / 'sweep.nc'}; "
                  f"{int(ds['diverged'].sum())} diverged point(s)", file=sys.stderr)
    return 0
