"""Bad input is rejected before anything is traced or compiled, with one clear line.

Every case asserts the error type, that the message is one line and names the offending
argument (the regex), and, for the command line, exit status 2 with no traceback. The
command line runs in-process (``cpsych.cli.main`` / ``module_main``) except for a few
subprocess cases that check the real entry points and their speed.

The case tables (``API_CASES``, ``CLI_CASES``) are plain data so that the same cases can be
replayed against other versions of the package (see the issue-11 report).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import cpsych
from cpsych import HDM, Level, Process
from cpsych.models import convolution

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_CSV = ROOT / "experiments" / "data" / "force_matching_example.csv"


# ----------------------------------------------------------------------------- fixtures
def _y(T: int = 10) -> np.ndarray:
    t = np.arange(1, T + 1)
    return np.vstack([np.sin(0.5 * t), t**2 / 10])


def _lvl(**kw) -> Level:
    base = dict(g=lambda x, v, th: x[:1] * 2.0, f=lambda x, v, th: -x + v[0], n_x=2, n_v=1)
    base.update(kw)
    return Level(**base)


def _hdm(level: Level | None = None, *more: Level, **kw) -> HDM:
    return HDM(levels=(level or _lvl(),) + more, **kw)


def _agent() -> HDM:
    lv = Level(g=lambda x, v, th: x, f=lambda x, v, th: v - x, n_x=1, n_v=1)
    return HDM(levels=(lv,), n=3, d=2)


def _world(**kw) -> Process:
    base = dict(f=lambda x, v, a, th: a - x, g=lambda x, v, a, th: x, n_x=1, n_v=0, n_a=1)
    base.update(kw)
    return Process(**base)


def _simulate(**kw):
    args = dict(process=_world(), model=_agent(), causes=None, priors=np.zeros((1, 8)))
    args.update(kw)
    return cpsych.simulate(args.pop("process"), args.pop("model"), args.pop("causes"),
                           args.pop("priors"), **args)


def _conv():
    return convolution.model()


def _u(T: int = 8) -> np.ndarray:
    return np.zeros((1, T))


def _learn(**kw):
    def build(p):
        return convolution.model(log_pi_z=p["lz"])

    args = dict(build=build, y=np.zeros((4, 8)), params0={"lz": 4.0})
    args.update(kw)
    return cpsych.learn(args.pop("build"), args.pop("y"), args.pop("params0"), **args)


def _sweep(**kw):
    from cpsych.sweep import make_grid, sweep

    args = dict(fn=lambda p, key: {"r": p["a"] ** 2}, grid=make_grid({"a": [1.0, 2.0]}),
                readouts=["r"])
    args.update(kw)
    return sweep(args.pop("fn"), args.pop("grid"), args.pop("readouts"), **args)


def _fit(**kw):
    from cpsych.models.force_matching_fit import fit_force_matching, load_force_matching

    args = dict(ds=load_force_matching(EXAMPLE_CSV))
    args.update(kw)
    return fit_force_matching(args.pop("ds"), **args)


def _files(tmp: Path) -> dict[str, Path]:
    """Files the load/CLI cases point at."""
    tmp.mkdir(parents=True, exist_ok=True)
    files = {"regular": tmp / "regular_file", "text": tmp / "notes.txt",
             "png": tmp / "image.png", "empty": tmp / "empty.nc", "trunc": tmp / "trunc.nc",
             "empty_csv": tmp / "empty.csv", "missing": tmp / "missing.nc",
             "missing_csv": tmp / "missing.csv", "dir": tmp / "a_directory"}
    files["regular"].write_text("I am a file, not a directory\n")
    files["text"].write_text("participant,group\nthis is not netCDF\n")
    files["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    files["empty"].write_bytes(b"")
    files["empty_csv"].write_bytes(b"")
    files["dir"].mkdir(exist_ok=True)
    good = tmp / "good.nc"
    cpsych.save(xr.Dataset({"a": ("t", np.arange(500.0))}), good)
    data = good.read_bytes()
    files["trunc"].write_bytes(data[: len(data) // 2])
    return files


# ----------------------------------------------------------------------------- API cases
@dataclass(frozen=True)
class Case:
    id: str
    call: Callable[[dict[str, Path]], Any]
    error: type[BaseException]
    names: str  # regex the message must match (names the argument)


API_CASES: list[Case] = [
    # --- generalised coordinates
    Case("embed-t-before-series", lambda f: cpsych.embed(_y(), 3, -1.0), ValueError, r"^t: "),
    Case("embed-t-after-series", lambda f: cpsych.embed(_y(), 3, 10), ValueError, r"^t: .*0\.\.9"),
    Case("embed-t-nan", lambda f: cpsych.embed(_y(), 3, np.nan), ValueError, r"^t: "),
    Case("embed-dt-zero", lambda f: cpsych.embed(_y(), 3, 4, dt=0.0), ValueError, r"^dt: "),
    Case("embed-dt-negative", lambda f: cpsych.embed(_y(), 3, 4, dt=-1.0), ValueError, r"^dt: "),
    Case("embed-n-zero", lambda f: cpsych.embed(_y(), 0, 4), ValueError, r"^n: "),
    Case("embed-n-float", lambda f: cpsych.embed(_y(), 2.5, 4), TypeError, r"^n: "),
    Case("embed-y-1d", lambda f: cpsych.embed(np.arange(10.0), 3, 4), ValueError, r"^y: "),
    Case("embed-y-strings", lambda f: cpsych.embed([["a", "b"]], 3, 0), TypeError, r"^y: "),
    Case("embed-delays-shape", lambda f: cpsych.embed(_y(), 3, 4, delays=[0, 1, 2]),
         ValueError, r"^delays: "),
    Case("embed_series-dt-zero", lambda f: cpsych.embed_series(_y(), 3, 0.0), ValueError,
         r"^dt: "),
    Case("temporal_precision-s-negative", lambda f: cpsych.temporal_precision(3, -1.0),
         ValueError, r"^s: "),
    Case("temporal_precision-s-nan", lambda f: cpsych.temporal_precision(3, np.nan),
         ValueError, r"^s: "),
    Case("temporal_precision-n-zero", lambda f: cpsych.temporal_precision(0, 1.0), ValueError,
         r"^n: "),
    Case("temporal_precision-n-string", lambda f: cpsych.temporal_precision("3", 1.0),
         TypeError, r"^n: "),
    Case("temporal_covariance-s-inf", lambda f: cpsych.temporal_covariance(3, np.inf),
         ValueError, r"^s: "),
    Case("smooth_noise-key-string", lambda f: cpsych.smooth_noise("seed", (2, 8), 1.0),
         TypeError, r"^key: "),
    Case("smooth_noise-shape-1d", lambda f: cpsych.smooth_noise(jax.random.key(0), (8,), 1.0),
         ValueError, r"^shape"),
    Case("smooth_noise-shape-no-bins", lambda f: cpsych.smooth_noise(jax.random.key(0), (2, 0),
                                                                       1.0),
         ValueError, r"^shape\[1\]"),
    Case("smooth_noise-s-negative", lambda f: cpsych.smooth_noise(jax.random.key(0), (2, 8),
                                                                    -1.0),
         ValueError, r"^s: "),
    Case("smooth_noise-s-nan", lambda f: cpsych.smooth_noise(jax.random.key(0), (2, 8), np.nan),
         ValueError, r"^s: "),
    Case("smooth_noise-log_precision-shape",
         lambda f: cpsych.smooth_noise(jax.random.key(0), (2, 8), 1.0, [1.0, 2.0, 3.0]),
         ValueError, r"^log_precision: "),
    Case("smooth_noise-log_precision-inf",
         lambda f: cpsych.smooth_noise(jax.random.key(0), (2, 8), 1.0, np.inf),
         ValueError, r"^log_precision: "),
    Case("derivative_operator-n-zero", lambda f: cpsych.derivative_operator(0, 2), ValueError,
         r"^n: "),
    # --- model specification
    Case("Level-n_x-float", lambda f: Level(g=lambda x, v, th: x, n_x=2.5), TypeError, r"n_x"),
    Case("Level-n_v-negative", lambda f: Level(g=lambda x, v, th: x, n_v=-1), ValueError, r"n_v"),
    Case("Level-g-not-callable", lambda f: Level(g="x", n_x=1), TypeError, r"'g'"),
    Case("Level-f-not-callable", lambda f: Level(g=lambda x, v, th: x, f=3.0, n_x=1),
         TypeError, r"'f'"),
    Case("Level-x_names-string", lambda f: Level(g=lambda x, v, th: x, f=lambda x, v, th: x,
                                                 n_x=2, x_names="ab"),
         TypeError, r"x_names"),
    Case("Level-log_pi_z-strings", lambda f: _hdm(_lvl(log_pi_z=["high"])).validate(),
         TypeError, r"log_pi_z"),
    Case("HDM-n-float", lambda f: _hdm(n=2.5).validate(), TypeError, r"'n'"),
    Case("HDM-dt-zero", lambda f: _hdm(dt=0.0).validate(), ValueError, r"'dt'"),
    Case("HDM-dt-string", lambda f: _hdm(dt="1").validate(), TypeError, r"'dt'"),
    Case("HDM-levels-not-levels", lambda f: HDM(levels=("x",)).validate(), TypeError,
         r"levels"),
    Case("HDM-s-string", lambda f: _hdm(s="smooth").validate(), TypeError, r"'s'"),
    Case("g-indexes-past-x", lambda f: _hdm(_lvl(g=lambda x, v, th: jnp.stack([x[0], x[2]])))
         .validate(), ValueError, r"level 1: field 'g' .*position 2 of x \(length 2\)"),
    Case("f-indexes-past-v", lambda f: _hdm(_lvl(f=lambda x, v, th: -x + v[1])).validate(),
         ValueError, r"level 1: field 'f' .*position 1 of v \(length 1\)"),
    Case("f-scatters-past-x", lambda f: _hdm(_lvl(f=lambda x, v, th: (-x).at[3].set(v[0])))
         .validate(), ValueError, r"level 1: field 'f' .*position 3 of x"),
    Case("g-array-index-past-x", lambda f: _hdm(_lvl(
        g=lambda x, v, th: x[jnp.array([0, 1, 4])])).validate(),
        ValueError, r"level 1: field 'g' .*position 4"),
    Case("level2-g-indexes-past-v", lambda f: _hdm(
        _lvl(), Level(g=lambda x, v, th: jnp.atleast_1d(v[3]), n_v=2)).validate(),
        ValueError, r"level 2: field 'g' .*position 3 of v"),
    Case("log_pi_z_fn-indexes-past-x", lambda f: _hdm(_lvl(
        log_pi_z_fn=lambda x, v, th: jnp.atleast_1d(x[5]))).validate(),
        ValueError, r"level 1: field 'log_pi_z_fn'"),
    Case("process-g-indexes-past-a", lambda f: _world(g=lambda x, v, a, th: x + a[1]).validate(),
         ValueError, r"process: field 'g' .*position 1 of a"),
    Case("Process-n_x-float", lambda f: _world(n_x=1.5), TypeError, r"n_x"),
    # --- generate
    Case("generate-model-not-HDM", lambda f: cpsych.generate(_lvl(), _u()), TypeError,
         r"^model: "),
    Case("generate-causes-nan", lambda f: cpsych.generate(_conv(), np.full((1, 8), np.nan)),
         ValueError, r"^causes: "),
    Case("generate-causes-3d", lambda f: cpsych.generate(_conv(), np.zeros((1, 8, 2))),
         ValueError, r"^causes: "),
    Case("generate-causes-no-bins", lambda f: cpsych.generate(_conv(), np.zeros((1, 0))),
         ValueError, r"^causes: "),
    Case("generate-key-string", lambda f: cpsych.generate(_conv(), _u(), "seed"), TypeError,
         r"^key: "),
    Case("generate-key-float", lambda f: cpsych.generate(_conv(), _u(), 2.5), TypeError,
         r"^key: "),
    Case("generate-key-negative", lambda f: cpsych.generate(_conv(), _u(), -1), ValueError,
         r"^key: "),
    Case("generate-on_divergence", lambda f: cpsych.generate(_conv(), _u(),
                                                             on_divergence="ignore"),
         ValueError, r"^on_divergence: "),
    Case("generate-z-shape", lambda f: cpsych.generate(_conv(), _u(), z=np.zeros((4, 8))),
         ValueError, r"^z: "),
    Case("generate-w-nan", lambda f: cpsych.generate(_conv(), _u(), w=np.full((2, 8), np.nan)),
         ValueError, r"^w: "),
    Case("generate-time-length", lambda f: cpsych.generate(_conv(), _u(), time=np.arange(5)),
         ValueError, r"^time: "),
    # --- invert
    Case("invert-model-none", lambda f: cpsych.invert(None, np.zeros((4, 8))), TypeError,
         r"^model: "),
    Case("invert-y-strings", lambda f: cpsych.invert(_conv(), [["a"] * 8] * 4), TypeError,
         r"^y: "),
    Case("invert-y-3d", lambda f: cpsych.invert(_conv(), np.zeros((4, 8, 1))), ValueError,
         r"^y: "),
    Case("invert-eta-nan", lambda f: cpsych.invert(_conv(), np.zeros((4, 8)),
                                                   eta=np.full((1, 8), np.nan)),
         ValueError, r"^eta: "),
    Case("invert-eta-shape", lambda f: cpsych.invert(_conv(), np.zeros((4, 8)),
                                                     eta=np.zeros(3)),
         ValueError, r"^eta: "),
    Case("invert-on_divergence", lambda f: cpsych.invert(_conv(), np.zeros((4, 8)),
                                                         on_divergence="warn"),
         ValueError, r"^on_divergence: "),
    Case("invert-time-length", lambda f: cpsych.invert(_conv(), np.zeros((4, 8)),
                                                       time=np.arange(3)),
         ValueError, r"^time: "),
    # --- simulate (active inference)
    Case("simulate-kappa_a-negative", lambda f: _simulate(kappa_a=-1.0), ValueError,
         r"^kappa_a: "),
    Case("simulate-kappa_a-nan", lambda f: _simulate(kappa_a=np.nan), ValueError,
         r"^kappa_a: "),
    Case("simulate-log_pi_a-inf", lambda f: _simulate(log_pi_a=np.inf), ValueError,
         r"^log_pi_a: "),
    Case("simulate-log_pi_a-string", lambda f: _simulate(log_pi_a="high"), TypeError,
         r"^log_pi_a: "),
    Case("simulate-key-string", lambda f: _simulate(key="seed"), TypeError, r"^key: "),
    Case("simulate-noise-string", lambda f: _simulate(noise="yes"), TypeError, r"^noise: "),
    Case("simulate-process-not-Process", lambda f: _simulate(process=_agent()), TypeError,
         r"^process: "),
    Case("simulate-priors-nan", lambda f: _simulate(priors=np.full((1, 8), np.nan)),
         ValueError, r"priors"),
    Case("simulate-action_mask-negative", lambda f: _simulate(action_mask=[-1.0]), ValueError,
         r"^action_mask: "),
    Case("simulate-causes-shape", lambda f: _simulate(causes=np.zeros((2, 8))), ValueError,
         r"^causes: "),
    # --- learn
    Case("learn-build-not-callable", lambda f: _learn(build=_conv()), TypeError, r"^build: "),
    Case("learn-build-returns-level", lambda f: _learn(build=lambda p: _lvl()), TypeError,
         r"^build: "),
    Case("learn-params0-nan", lambda f: _learn(params0={"lz": np.nan}), ValueError,
         r"^params0\['lz'\]: "),
    Case("learn-prior_var-zero", lambda f: _learn(prior_var=0.0), ValueError, r"^prior_var: "),
    Case("learn-prior_mean-structure", lambda f: _learn(prior_mean={"other": 1.0}), ValueError,
         r"^prior_mean: "),
    Case("learn-max_iter-zero", lambda f: _learn(max_iter=0), ValueError, r"^max_iter: "),
    Case("learn-tol-negative", lambda f: _learn(tol=-1.0), ValueError, r"^tol: "),
    Case("learn-eta-shape", lambda f: _learn(eta=np.zeros((1, 3))), ValueError, r"^eta: "),
    # --- save / load
    Case("load-missing", lambda f: cpsych.load(f["missing"]), FileNotFoundError,
         r"missing\.nc.*netCDF file written by cpsych\.save"),
    Case("load-empty", lambda f: cpsych.load(f["empty"]), ValueError,
         r"empty\.nc.*empty.*netCDF file written by cpsych\.save"),
    Case("load-text", lambda f: cpsych.load(f["text"]), ValueError,
         r"notes\.txt.*not a netCDF.*cpsych\.save"),
    Case("load-png", lambda f: cpsych.load(f["png"]), ValueError,
         r"image\.png.*not a netCDF.*cpsych\.save"),
    Case("load-truncated", lambda f: cpsych.load(f["trunc"]), ValueError,
         r"trunc\.nc.*truncated.*cpsych\.save"),
    Case("load-directory", lambda f: cpsych.load(f["dir"]), ValueError,
         r"a_directory.*directory.*cpsych\.save"),
    Case("save-not-dataset", lambda f: cpsych.save({"a": 1}, f["dir"] / "x.nc"), TypeError,
         r"^ds: "),
    # --- sweeps
    Case("make_grid-axes-list", lambda f: cpsych.sweep.make_grid([1.0, 2.0]), TypeError,
         r"^axes: "),
    Case("make_grid-seeds-string", lambda f: cpsych.sweep.make_grid({"a": [1.0]}, seeds="two"),
         TypeError, r"^seeds: "),
    Case("make_grid-values-nan", lambda f: cpsych.sweep.make_grid({"a": [1.0, np.nan]}),
         ValueError, r"^grid 'a'"),
    Case("sweep-fn-not-callable", lambda f: _sweep(fn="simulate"), TypeError, r"^fn: "),
    Case("sweep-chunk_size-zero", lambda f: _sweep(chunk_size=0), ValueError,
         r"^chunk_size: "),
    Case("sweep-memory_budget-negative", lambda f: _sweep(memory_budget=-1.0), ValueError,
         r"^memory_budget: "),
    Case("sweep-max_abs-nan", lambda f: _sweep(max_abs=np.nan), ValueError, r"^max_abs: "),
    Case("sweep-key-string", lambda f: _sweep(key="a"), TypeError, r"^key: "),
    # --- fits
    Case("fit-ds-path", lambda f: _fit(ds=str(EXAMPLE_CSV)), TypeError, r"^ds: "),
    Case("fit-chains-zero", lambda f: _fit(chains=0), ValueError, r"^chains: "),
    Case("fit-draws-float", lambda f: _fit(draws=10.5), TypeError, r"^draws: "),
    Case("fit-seed-negative", lambda f: _fit(seed=-1), ValueError, r"^seed: "),
    Case("read_table-png", lambda f: __import__("cpsych.fit.data", fromlist=["x"])
         .read_table(f["png"]), ValueError, r"image\.png.*not a text CSV"),
]


# ----------------------------------------------------------------------------- CLI cases
@dataclass(frozen=True)
class CliCase:
    id: str
    argv: tuple[str, ...]  # "{regular}" etc. are replaced by the files of _files
    names: str
    module: str | None = None  # run through this study's module_main instead of cpsych


SWEEP = ("sweep", "force-matching", "--out", "{tmp}/sweep")
FIT = ("fit", str(EXAMPLE_CSV), "--out", "{tmp}/fit")
CLI_CASES: list[CliCase] = [
    CliCase("force-matching-out-under-file", ("force-matching", "--out", "{regular}/sub"),
            r"--out: .*regular_file.* is a file"),
    CliCase("convolution-out-under-file", ("convolution", "--out", "{regular}/sub"), r"--out"),
    CliCase("posner-out-is-file", ("posner", "--out", "{regular}"), r"--out"),
    CliCase("pursuit-out-under-file", ("pursuit", "--out", "{regular}/a/b"), r"--out"),
    CliCase("phase-diagrams-out-under-file", ("phase-diagrams", "--out", "{regular}/x"),
            r"--out"),
    CliCase("sweep-out-under-file", ("sweep", "force-matching", "--grid", "h=1,2", "--out",
                                     "{regular}/s"), r"--out"),
    CliCase("fit-out-under-file", ("fit", str(EXAMPLE_CSV), "--out", "{regular}/f"), r"--out"),
    CliCase("mmn-out-under-file", ("mmn", "--out", "{regular}/m"), r"--out"),
    CliCase("mmn-repetitions-1", ("mmn", "--out", "{tmp}/m", "--repetitions", "1"),
            r"--repetitions"),
    CliCase("posner-threshold-above-1", ("posner", "--out", "{tmp}/p", "--threshold", "2"),
            r"threshold"),
    CliCase("posner-threshold-nan", ("posner", "--out", "{tmp}/p", "--threshold", "nan"),
            r"threshold"),
    CliCase("posner-attention-gain-inf", ("posner", "--out", "{tmp}/p", "--attention-gain",
                                          "inf"), r"--attention-gain"),
    CliCase("posner-threshold-not-a-number", ("posner", "--out", "{tmp}/p", "--threshold",
                                              "abc"), r"--threshold"),
    CliCase("sweep-grid-reversed", SWEEP + ("--grid", "h=1:0:3"), r"grid 'h'"),
    CliCase("sweep-grid-unknown", SWEEP + ("--grid", "nosuch=1,2"), r"--grid.*nosuch"),
    CliCase("sweep-grid-no-values", SWEEP + ("--grid", "h"), r"--grid"),
    CliCase("sweep-grid-missing", SWEEP, r"--grid"),
    CliCase("sweep-grid-not-numbers", ("sweep", "pursuit", "--out", "{tmp}/sp", "--grid",
                                       "retina=a,b"), r"grid 'retina'"),
    CliCase("sweep-chunk-size-zero", SWEEP + ("--grid", "h=1,2", "--chunk-size", "0"),
            r"--chunk-size"),
    CliCase("sweep-seeds-zero", SWEEP + ("--grid", "h=1,2", "--seeds", "0"), r"seeds"),
    CliCase("sweep-memory-budget-negative", SWEEP + ("--grid", "h=1,2", "--memory-budget",
                                                     "-1"), r"--memory-budget"),
    CliCase("sweep-set-nan", SWEEP + ("--grid", "h=1,2", "--set", "prior=nan"), r"--set"),
    CliCase("sweep-set-not-a-number", SWEEP + ("--grid", "h=1,2", "--set", "prior=abc"),
            r"--set"),
    CliCase("sweep-host-index", SWEEP + ("--grid", "h=1,2", "--host-index", "2",
                                         "--host-count", "2"), r"--host-index"),
    CliCase("sweep-preset-unknown", SWEEP + ("--grid", "h=1,2", "--preset", "nosuch"),
            r"preset"),
    CliCase("sweep-readouts-unknown", SWEEP + ("--grid", "h=1,2", "--readouts", "nosuch"),
            r"--readouts"),
    CliCase("sweep-key-negative", SWEEP + ("--grid", "h=1,2", "--key", "-1"), r"key"),
    CliCase("phase-diagrams-size-1", ("phase-diagrams", "--out", "{tmp}/pd", "--size", "1"),
            r"--size"),
    CliCase("fit-csv-missing", ("fit", "{missing_csv}", "--out", "{tmp}/fit"),
            r"missing\.csv"),
    CliCase("fit-csv-foreign-text", ("fit", "{text}", "--out", "{tmp}/fit"),
            r"notes\.txt.*column"),
    CliCase("fit-csv-png", ("fit", "{png}", "--out", "{tmp}/fit"), r"image\.png"),
    CliCase("fit-csv-empty", ("fit", "{empty_csv}", "--out", "{tmp}/fit"),
            r"empty\.csv.*empty"),
    CliCase("fit-chains-1", FIT + ("--chains", "1"), r"--chains"),
    CliCase("fit-draws-0", FIT + ("--draws", "0"), r"--draws"),
    CliCase("fit-seed-negative", FIT + ("--seed", "-1"), r"--seed"),
    CliCase("unknown-command", ("nosuch",), r"nosuch"),
    CliCase("recovery-participants-1", ("--out", "{tmp}/rec", "--participants", "1"),
            r"--participants", module="cpsych.experiments.recovery"),
    CliCase("recovery-noise-nan", ("--out", "{tmp}/rec", "--noise", "nan"), r"--noise",
            module="cpsych.experiments.recovery"),
    CliCase("recovery-free-typo", ("--out", "{tmp}/rec", "--free", "hh"), r"--free",
            module="cpsych.experiments.recovery"),
    CliCase("fit-free-typo", FIT + ("--free", "h,priorr"), r"--free"),
    CliCase("compare-one-fit", ("compare", "{tmp}/fit", "--out", "{tmp}/cmp"), r"FIT_DIR"),
    CliCase("fit_pursuit-steps-0", ("--out", "{tmp}/fp", "--steps", "0"), r"--steps",
            module="cpsych.experiments.fit_pursuit"),
    CliCase("fit_pursuit-out-under-file", ("--out", "{regular}/fp"), r"--out",
            module="cpsych.experiments.fit_pursuit"),
    CliCase("fit_pursuit-starts-0", ("--out", "{tmp}/fp", "--starts", "0"), r"--starts",
            module="cpsych.experiments.fit_pursuit"),
    CliCase("fit_pursuit-data-foreign-text", ("--out", "{tmp}/fp", "--data", "{text}"),
            r"notes\.txt.*column", module="cpsych.experiments.fit_pursuit"),
    CliCase("fit_pursuit-free-typo", ("--out", "{tmp}/fp", "--free", "retina,retna"),
            r"--free: 'retna' is not a parameter", module="cpsych.experiments.fit_pursuit"),
    CliCase("fit_pursuit-effect-not-free", ("--out", "{tmp}/fp", "--free", "retina",
                                            "--condition-effect", "k_h"),
            r"--condition-effect: expected all, none or names among --free",
            module="cpsych.experiments.fit_pursuit"),
    CliCase("fit_pursuit-draws-1", ("--out", "{tmp}/fp", "--draws", "1"), r"--draws",
            module="cpsych.experiments.fit_pursuit"),
    CliCase("posner-module-threshold", ("--out", "{tmp}/p", "--threshold", "-1"), r"threshold",
            module="cpsych.experiments.posner"),
]


def expand(argv: tuple[str, ...], files: dict[str, Path], tmp: Path) -> list[str]:
    subs = {"tmp": str(tmp), **{k: str(v) for k, v in files.items()}}
    return [a.format(**subs) for a in argv]


def run_cli(case: CliCase, files: dict[str, Path], tmp: Path) -> int:
    """Run a CLI case in-process; argparse's own errors exit through ``SystemExit``."""
    import importlib

    argv = expand(case.argv, files, tmp)
    try:
        if case.module:
            return importlib.import_module(case.module).main(argv)
        from cpsych.cli import main

        return main(argv)
    except SystemExit as exc:
        return exc.code


# ----------------------------------------------------------------------------- tests
@pytest.fixture(autouse=True)
def _no_compilation_cache(monkeypatch):
    """The commands turn JAX's persistent cache on; not for the rest of this test session."""
    monkeypatch.setenv("CPSYCH_NO_CACHE", "1")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return _files(tmp_path_factory.mktemp("bad_input"))


def _check_message(msg: str, names: str) -> None:
    assert msg.strip(), "empty message"
    assert "\n" not in msg.strip(), f"message is not one line: {msg!r}"
    assert re.search(names, msg), f"message does not name the argument ({names}): {msg!r}"


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_rejects_bad_input(case, files):
    with pytest.raises(case.error) as info:
        case.call(files)
    assert type(info.value) is case.error or issubclass(type(info.value), case.error)
    _check_message(str(info.value), case.names)


@contextlib.contextmanager
def compilations():
    """Collect the names of JAX's compilation events (tracing, lowering, XLA) in the block."""
    import jax.monitoring
    from jax._src import monitoring

    events: list[str] = []

    def listen(name, *args, **kwargs):
        if "compil" in name or "trac" in name:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        yield events
    finally:
        monitoring.unregister_event_duration_listener(listen)


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_rejects_bad_input(case, files, tmp_path, capsys):
    with compilations() as events:
        rc = run_cli(case, files, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, "nothing printed"
    # argparse prints its usage line before the error line; ours print the error alone
    assert len(lines) == 1 or lines[0].startswith("usage:"), err
    assert re.search(case.names, lines[-1]), (case.names, err)
    assert events == [], f"{case.id}: traced or compiled before the check: {events[:3]}"


def test_cli_checks_out_before_computing(files, tmp_path, capsys):
    from cpsych.cache import jit_once
    from cpsych.cli import main

    main(["posner", "--out", str(tmp_path / "warm")] + ["--threshold", "5"])  # imports
    capsys.readouterr()
    with compilations() as events:
        assert main(["force-matching", "--out", f"{files['regular']}/sub"]) == 2
    assert events == [], events  # refused before anything was traced or compiled
    assert "--out" in capsys.readouterr().err
    with compilations() as events:
        jit_once(lambda x: x * 3.0)(1.0)
    assert events  # the listener does see a compilation


def _subprocess(cmd: list[str], **env: str) -> tuple[int, str]:
    """Exit status and stderr of the command."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **env}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stderr


def test_console_script_out_under_a_file(files):
    exe = Path(sys.executable).with_name("cpsych")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cpsych.cli"]
    # JAX_LOG_COMPILES=1 logs every compilation to stderr: the one line of stderr proves
    # that the bad --out was refused before anything was compiled
    rc, err = _subprocess(cmd + ["force-matching", "--out", f"{files['regular']}/sub"],
                          JAX_LOG_COMPILES="1")
    assert rc == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and "--out" in err, err


@pytest.mark.parametrize("module, argv, names", [
    ("cpsych.experiments.posner", ["--threshold", "2"], "threshold"),
    ("cpsych.experiments.fit_pursuit", ["--steps", "0"], "--steps"),
])
def test_module_entry_points(module, argv, names, tmp_path):
    rc, err = _subprocess([sys.executable, "-m", module, "--out", str(tmp_path)] + argv)
    assert rc == 2 and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 and names in err


# ----------------------------------------------------------------------------- accepted input
def test_integer_seed_is_a_key():
    m = convolution.model()
    a = cpsych.generate(m, _u(16), 3)
    b = cpsych.generate(m, _u(16), jax.random.key(3))
    c = cpsych.generate(m, _u(16), jax.random.PRNGKey(3))
    np.testing.assert_array_equal(a["y"].values, b["y"].values)
    np.testing.assert_array_equal(a["y"].values, c["y"].values)
    assert not np.array_equal(a["y"].values, cpsych.generate(m, _u(16), 4)["y"].values)
    np.testing.assert_array_equal(cpsych.smooth_noise(7, (2, 9), 1.0),
                                  cpsych.smooth_noise(jax.random.key(7), (2, 9), 1.0))


def test_integer_seed_in_simulate():
    world = _world(log_pi_z=4.0, log_pi_w=4.0)
    a = _simulate(process=world, key=5, priors=np.ones((1, 8)))
    b = _simulate(process=world, key=jax.random.key(5), priors=np.ones((1, 8)))
    np.testing.assert_array_equal(a["y"].values, b["y"].values)
    assert np.std(a["y"].values) > 0  # noise was drawn


def test_valid_indexing_passes_the_probe():
    """Negative, array and dynamic indices inside the vectors are not flagged."""
    lv = Level(g=lambda x, v, th: jnp.stack([x[-1], x[jnp.array([0, 1])].sum(),
                                             x[jnp.argmax(x)], v[0]]),
               f=lambda x, v, th: jax.lax.dynamic_slice(x, (0,), (2,)) * v[-1], n_x=2, n_v=1)
    HDM(levels=(lv,)).validate()


def test_url_out_is_not_made_a_local_directory(tmp_path, monkeypatch):
    from cpsych.validation import run_command

    monkeypatch.chdir(tmp_path)
    args = type("Args", (), {"out": "memory://cpsych-test/store"})()
    assert run_command(lambda a: 0, args, "test") == 0
    assert list(tmp_path.iterdir()) == []


def test_output_dir_probe_leaves_nothing(tmp_path):
    from cpsych.validation import check_output_dir

    out = check_output_dir(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root ignores directory permissions")
def test_unwritable_out_is_a_permission_error(tmp_path, capsys):
    from cpsych.cli import main

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert main(["convolution", "--out", str(ro / "sub")]) == 2
    finally:
        ro.chmod(0o700)
    err = capsys.readouterr().err
    assert "--out" in err and "writable" in err and "Traceback" not in err


def test_write_force_matching_is_atomic(tmp_path, monkeypatch):
    import cpsych.results
    from cpsych.fit import data as D
    from cpsych.models import force_matching_fit as F

    used = []
    real = cpsych.results.atomic_path

    def spy(path, *a, **k):
        used.append(Path(path).name)
        return real(path, *a, **k)

    monkeypatch.setattr(cpsych.results, "atomic_path", spy)
    ds = F.load_force_matching(EXAMPLE_CSV)
    path = tmp_path / "fm.csv"
    F.write_force_matching(ds, path)
    assert used == ["fm.csv"]
    before = path.read_bytes()
    assert F.load_force_matching(path).sizes["trial"] == ds.sizes["trial"]

    class Boom:
        def __str__(self):
            raise RuntimeError("disk full")

    # a failure mid-write leaves the old file whole and no temporary file behind
    with pytest.raises(RuntimeError, match="disk full"):
        D.write_csv(path, ["a"], [["1"]] * 100 + [[Boom()]])
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fm.csv"]
