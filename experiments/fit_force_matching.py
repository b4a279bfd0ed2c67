"""Fit force-matching data: per-participant attenuation with group and condition effects.

Reads a tidy CSV (columns participant, group, condition, target, matched; forces in N; one row
per trial), fits the hierarchical model of cpsych.models.force_matching_fit (attenuation h per
participant, group means and differences, condition effects, Gaussian matching noise) with an
optax MAP estimate followed by NUTS, and writes <out>/posterior.nc (groups posterior, sample_stats,
posterior_predictive, observed_data, summary; readable with arviz.from_netcdf or
cpsych.fit.load_fit) and the figures <out>/traces, <out>/densities and <out>/predictive
(PDF and PNG). The agent's matched force for each attenuation comes from the force-matching
simulator (models/force_matching.py) run on a grid and interpolated (cpsych.fit.emulator).

Example data: experiments/data/force_matching_example.csv (20 synthetic participants, known
attenuations in force_matching_example_truth.csv; see docs/fitting.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from cpsych.experiments import module_main

__all__ = ["add_arguments", "run", "main", "plot_traces", "plot_densities", "plot_predictive",
           "make_example"]

DEFAULT_OUT = "results/fit"
EXAMPLE = Path(__file__).parent / "data" / "force_matching_example.csv"
TRUTH = Path(__file__).parent / "data" / "force_matching_example_truth.csv"
SCALARS = ("mu_h", "sigma_h", "sigma_obs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("csv", nargs="?", default=str(EXAMPLE),
                        help="force-matching CSV (default: the shipped synthetic example)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up draws per chain")
    parser.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--reference-group", default=None,
                        help="group the differences are taken against (default: first label)")
    parser.add_argument("--reference-condition", default=None,
                        help="reference condition (default: first label)")
    parser.add_argument("--quick-grid", action="store_true",
                        help="coarser simulator grid (h 0..10 by 0.5; for tests and a first "
                             "look)")
    parser.add_argument("--no-figures", action="store_true", help="write the posterior only")


def _emulator(quick: bool):
    from cpsych.models.force_matching_fit import default_emulator

    if quick:
        return default_emulator(0.0, 10.0, 0.5, 3.5, 0.25)
    return default_emulator()


def _check_args(args) -> None:
    for name in ("chains", "warmup", "draws"):
        v = getattr(args, name)
        if v < (2 if name == "chains" else 10):
            raise ValueError(f"--{name}: too small ({v}); use at least "
                             f"{2 if name == 'chains' else 10}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")


def run(args: argparse.Namespace) -> int:
    from cpsych.models.force_matching_fit import (
        fit_force_matching,
        force_data,
        load_force_matching,
    )
    from cpsych.plotting import save_figure

    _check_args(args)
    ds = load_force_matching(args.csv)  # errors name file, line and column
    data = force_data(ds, args.reference_group, args.reference_condition)
    out = Path(args.out)
    t0 = time.perf_counter()
    emu, grid = _emulator(args.quick_grid)
    t_emu = time.perf_counter() - t0
    fit = fit_force_matching(data, emu, chains=args.chains, warmup=args.warmup,
                             draws=args.draws, seed=args.seed)
    fit.posterior.attrs["source"] = str(args.csv)
    fit.posterior.attrs["emulator_seconds"] = t_emu
    path = fit.save(out / "posterior.nc")
    figs = []
    if not args.no_figures:
        figs.append(save_figure(plot_traces(fit), out / "traces"))
        figs.append(save_figure(plot_densities(fit), out / "densities"))
        figs.append(save_figure(plot_predictive(fit, emu), out / "predictive"))
    s = fit.summary
    print(f"cpsych fit: {ds.sizes['trial']} trials, {len(data.participants)} participants, "
          f"groups {list(data.groups)}, conditions {list(data.conditions)}")
    print(f"  simulator grid {t_emu:.1f} s; NUTS {args.chains} x {args.draws} draws "
          f"{fit.sample_stats.attrs['sampling_time_s']:.1f} s; max R-hat {fit.max_r_hat:.3f}, "
          f"min ESS {fit.min_ess:.0f}, divergences {fit.divergences}")

    def line(name, da):
        q = da.sel(stat=["mean", "q05", "q95"]).values
        return f"  {name:28s} {q[0]:+.2f}  [{q[1]:+.2f}, {q[2]:+.2f}]"

    print("  posterior mean [90 % interval] (log-precision; sigma_obs in N)")
    for g in data.groups:
        print(line(f"group mean h, {g}", s["group_mean_h"].sel(group=g)))
    for c in data.group_contrasts:
        print(line(f"delta h, {c}", s["delta_h"].sel(group_contrast=c)))
    for c in data.condition_contrasts:
        print(line(f"beta h, {c}", s["beta_h"].sel(condition_contrast=c)))
    for v in ("sigma_h", "sigma_obs"):
        print(line(v, s[v]))
    print(f"  posterior: {path}")
    for _pdf, png in figs:
        print(f"  figure:    {png}")
    return 0


# ----------------------------------------------------------------------------- figures
def _fig(w, h, nrows=1, ncols=1, **kw):
    from matplotlib.figure import Figure

    from cpsych.plotting import style

    with style():
        fig = Figure(figsize=(w, h), layout="constrained")
        axs = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axs


def _series(fit):
    """(label, DataArray over chain, draw) for the group-level parameters."""
    post = fit.posterior
    out = [("mu_h (reference-group mean h)", post["mu_h"])]
    for c in post.coords.get("group_contrast", []).values:
        out.append((f"delta_h ({c})", post["delta_h"].sel(group_contrast=c)))
    for c in post.coords.get("condition_contrast", []).values:
        out.append((f"beta_h ({c})", post["beta_h"].sel(condition_contrast=c)))
    out += [("sigma_h (between participants)", post["sigma_h"]),
            ("sigma_obs (N)", post["sigma_obs"])]
    return out


def plot_traces(fit):
    """Trace plots (draws by chain) and the rank-free overlap of chains, per parameter."""
    from cpsych.plotting import PALETTE

    series = _series(fit)
    fig, axs = _fig(9.0, 1.6 * len(series), len(series), 2,
                    gridspec_kw={"width_ratios": [3, 1]})
    for k, (label, da) in enumerate(series):
        for c in range(da.sizes["chain"]):
            x = da.isel(chain=c).values
            axs[k, 0].plot(x, lw=0.5, color=PALETTE[c % len(PALETTE)], alpha=0.8,
                           label=f"chain {c + 1}")
            axs[k, 1].hist(x, bins=40, histtype="step", density=True,
                           color=PALETTE[c % len(PALETTE)])
        name = label.split(" ")[0]
        sel = fit.summary[name]
        if "group_contrast" in sel.dims or "condition_contrast" in sel.dims:
            key = label[label.index("(") + 1:-1]
            dim = "group_contrast" if "group_contrast" in sel.dims else "condition_contrast"
            sel = sel.sel({dim: key})
        axs[k, 0].set_ylabel(label.replace(" (", "\n("), fontsize=8)
        axs[k, 0].set_title(f"R-hat {float(sel.sel(stat='r_hat')):.3f}, ESS "
                            f"{float(sel.sel(stat='ess')):.0f}", fontsize=8, loc="right")
        axs[k, 1].set_yticks([])
    axs[-1, 0].set_xlabel("draw (after warm-up)")
    axs[-1, 1].set_xlabel("value")
    axs[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    fig.suptitle(f"NUTS traces ({fit.posterior.sizes['chain']} chains; "
                 f"{fit.divergences} divergences)")
    return fig


def plot_densities(fit):
    """Posterior densities of the group means, contrasts, and participants' attenuations."""
    from cpsych.plotting import PALETTE

    post = fit.posterior
    groups = list(post["group"].values)
    fig, axs = _fig(11.0, 3.6, 1, 3, gridspec_kw={"width_ratios": [1, 1, 1.4]})
    ax = axs[0, 0]
    for i, g in enumerate(groups):
        x = post["group_mean_h"].sel(group=g).values.ravel()
        ax.hist(x, bins=60, density=True, histtype="stepfilled", alpha=0.45,
                color=PALETTE[i], label=g)
    ax.set_xlabel("group mean attenuation h (log-precision)")
    ax.set_ylabel("posterior density")
    ax.legend(frameon=False)
    ax.set_title("group means")
    ax = axs[0, 1]
    k = 0
    for dim, var in (("group_contrast", "delta_h"), ("condition_contrast", "beta_h")):
        if dim not in post.dims:
            continue
        for c in post[dim].values:
            x = post[var].sel({dim: c}).values.ravel()
            ax.hist(x, bins=60, density=True, histtype="stepfilled", alpha=0.45,
                    color=PALETTE[2 + k], label=f"{var}: {c}")
            k += 1
    ax.axvline(0.0, color="k", lw=0.8)
    ax.set_xlabel("effect on h (log-precision)")
    ax.set_ylabel("posterior density")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("group and condition effects")
    ax = axs[0, 2]
    h = post["h"]
    q = h.quantile([0.05, 0.5, 0.95], ("chain", "draw")).values
    gof = list(post["group_of_participant"].values) if "group_of_participant" in post.coords \
        else [groups[0]] * h.sizes["participant"]
    order = np.lexsort((q[1], [groups.index(g) for g in gof]))
    for rank, j in enumerate(order):
        col = PALETTE[groups.index(gof[j])]
        ax.plot([q[0, j], q[2, j]], [rank, rank], color=col, lw=1.5)
        ax.plot(q[1, j], rank, "o", color=col, ms=3.5)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(np.asarray(post["participant"].values)[order], fontsize=6)
    ax.set_xlabel("attenuation h (median, 90 % interval)")
    ax.set_title("participants")
    fig.suptitle("Posterior densities")
    return fig


def plot_predictive(fit, emulator):
    """Matched vs target force per group and condition: data, posterior predictive bands."""
    from cpsych.plotting import PALETTE

    obs = fit.observed_data
    pp = fit.posterior_predictive["matched"]
    groups = list(fit.posterior["group"].values)
    conds = sorted(set(obs["condition_of_trial"].values.tolist()))
    ref = fit.posterior.attrs.get("reference_condition", conds[0])
    conds = [ref] + [c for c in conds if c != ref]
    fig, axs = _fig(4.0 * len(conds), 3.8, 1, len(conds), sharey=True)
    lo_hi = pp.quantile([0.05, 0.95], ("chain", "draw"))
    mean = pp.mean(("chain", "draw"))
    tmax = float(obs["target"].max())
    rng = np.random.default_rng(0)
    for j, c in enumerate(conds):
        ax = axs[0, j]
        ax.plot([0, tmax * 1.1], [0, tmax * 1.1], color="0.5", lw=0.8, ls="--",
                label="identity (no illusion)")
        for i, g in enumerate(groups):
            sel = (obs["condition_of_trial"].values == c) & (obs["group_of_trial"].values == g)
            if not sel.any():
                continue
            t = obs["target"].values[sel]
            jit = t + rng.uniform(-0.04, 0.04, t.size) + (i - 0.5) * 0.1
            ax.plot(jit, obs["matched"].values[sel], "o", ms=3, color=PALETTE[i], alpha=0.6,
                    label=f"{g}: data")
            levels = np.unique(t)
            m = np.array([mean.values[sel][t == v].mean() for v in levels])
            lo = np.array([lo_hi.values[0][sel][t == v].mean() for v in levels])
            hi = np.array([lo_hi.values[1][sel][t == v].mean() for v in levels])
            ax.fill_between(levels, lo, hi, color=PALETTE[i], alpha=0.2,
                            label=f"{g}: predictive 90 %")
            ax.plot(levels, m, color=PALETTE[i], lw=1.5)
        ax.set_title(f"condition: {c}")
        ax.set_xlabel("target (external) force (N)")
    axs[0, 0].set_ylabel("matched (self-generated) force (N)")
    axs[0, -1].legend(frameon=False, fontsize=7, loc="upper left")
    fig.suptitle("Posterior predictive check (mean, 90 % band averaged over participants)")
    return fig


# ----------------------------------------------------------------------------- example data
def make_example(path: Path = EXAMPLE, truth: Path = TRUTH, seed: int = 2024) -> None:
    """Write the shipped synthetic example (direct simulation, no emulator).

    20 participants: 10 controls with attenuation ``h ~ N(6, 0.5)``, 10 patients
    (``schizophrenia``) with ``h ~ N(4, 0.5)`` (the ``D = 2`` change of ``h``); conditions
    ``finger`` (pressing directly) and ``slider`` (through a slider, ``h - 1``); targets
    0.5, 1, 1.5, 2 N; matching noise SD 0.1 N. True values go to ``truth``.
    """
    from cpsych.fit.data import write_csv
    from cpsych.models.force_matching_fit import synthetic_force_data, write_force_matching

    rng = np.random.default_rng(seed)
    h = np.r_[rng.normal(6.0, 0.5, 10), rng.normal(4.0, 0.5, 10)]
    groups = ["control"] * 10 + ["schizophrenia"] * 10
    ds = synthetic_force_data(h, groups, conditions=("finger", "slider"),
                              condition_effects=(0.0, -1.0), noise_sd=0.1, emulator=False,
                              seed=seed)
    write_force_matching(ds, path)
    write_csv(truth, ["participant", "group", "h_finger", "h_slider"],
              [[f"p{i + 1:02d}", groups[i], f"{h[i]:.4f}", f"{h[i] - 1.0:.4f}"]
               for i in range(h.size)])


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
