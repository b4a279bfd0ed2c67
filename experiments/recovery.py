"""Parameter recovery for the force-matching fit (synthetic participants with known precisions).

Synthetic controls (attenuation h ~ N(6, 0.5)) and patients (h ~ N(6 - D, 0.5), D = 2 log units
by default, the schizophrenia preset's change of h) each match four target forces (0.5-2 N) in
two conditions (finger; slider, h - 1), with Gaussian matching noise (SD 0.1 N). Their matched
forces come from the force-matching simulator itself (models/force_matching.py, a grid of
intended forces simulated per participant and inverted), not from the emulator the fit uses, so
the recovery includes the emulator's interpolation error. The hierarchical model is fitted by
MAP (optax) and NUTS; the script reports, per parameter, the correlation of true and estimated
values, the bias and the 90 % interval coverage, and the recovered group difference. Writes
<out>/recovery.nc and <out>/recovery.{pdf,png} (recovery scatter plots).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import module_main

__all__ = ["simulate_participants", "recover", "plot_recovery", "add_arguments", "run", "main"]

DEFAULT_OUT = "results/recovery"


def simulate_participants(n_per_group: int = 10, D: float = 2.0, sd: float = 0.5,
                          noise_sd: float = 0.1, slider: float = -1.0, seed: int = 0,
                          direct: bool = True) -> tuple[np.ndarray, list[str], xr.Dataset]:
    """True attenuations, group labels and the synthetic data set."""
    from cpsych.models.force_matching_fit import synthetic_force_data

    rng = np.random.default_rng(seed)
    h = np.r_[rng.normal(6.0, sd, n_per_group), rng.normal(6.0 - D, sd, n_per_group)]
    groups = ["control"] * n_per_group + ["patient"] * n_per_group
    ds = synthetic_force_data(h, groups, conditions=("finger", "slider"),
                              condition_effects=(0.0, slider), noise_sd=noise_sd,
                              emulator=False if direct else None, seed=seed + 1)
    return h, groups, ds


def recover(n_per_group: int = 10, D: float = 2.0, noise_sd: float = 0.1, seed: int = 0,
            chains: int = 4, warmup: int = 500, draws: int = 1000) -> xr.Dataset:
    """Simulate, fit (MAP and NUTS) and compare with the truth."""
    from cpsych.models.force_matching_fit import (
        default_emulator,
        fit_force_matching,
        map_force_matching,
    )

    t0 = time.perf_counter()
    h, groups, ds = simulate_participants(n_per_group, D, noise_sd=noise_sd, seed=seed)
    t_sim = time.perf_counter() - t0
    emu, _ = default_emulator()
    m = map_force_matching(ds, emu, seed=seed)
    fit = fit_force_matching(ds, emu, chains=chains, warmup=warmup, draws=draws, seed=seed)
    post = fit.posterior
    q = post["h"].quantile([0.05, 0.5, 0.95], ("chain", "draw")).values
    est = post["h"].mean(("chain", "draw")).values
    d = post["delta_h"].sel(group_contrast="patient - control").values.ravel()
    b = post["beta_h"].values.ravel()
    out = xr.Dataset(
        {"h_true": ("participant", h, {"units": "log-precision"}),
         "h_mean": ("participant", est, {"units": "log-precision", "long_name": "posterior mean"}),
         "h_q05": ("participant", q[0]), "h_q95": ("participant", q[2]),
         "h_map": ("participant", m.values["h"], {"long_name": "MAP (optax)"}),
         "delta_draws": ("sample", d, {"units": "log-precision"}),
         "beta_draws": ("sample", b, {"units": "log-precision"})},
        coords={"participant": list(post["participant"].values),
                "group": ("participant", groups)},
        attrs={"D_true": D, "slider_true": -1.0, "noise_sd_true": noise_sd,
               "corr_h": float(np.corrcoef(est, h)[0, 1]),
               "corr_h_map": float(np.corrcoef(m.values["h"], h)[0, 1]),
               "bias_h": float(np.mean(est - h)),
               "coverage_h90": float(np.mean((h >= q[0]) & (h <= q[2]))),
               "delta_mean": float(d.mean()), "delta_q025": float(np.quantile(d, 0.025)),
               "delta_q975": float(np.quantile(d, 0.975)),
               "delta_true_sample": float(h[n_per_group:].mean() - h[:n_per_group].mean()),
               "beta_mean": float(b.mean()), "sigma_obs_mean": float(post["sigma_obs"].mean()),
               "max_r_hat": fit.max_r_hat, "min_ess": fit.min_ess,
               "divergences": fit.divergences, "simulate_seconds": t_sim,
               "map_seconds": m.seconds,
               "nuts_seconds": float(fit.sample_stats.attrs["sampling_time_s"])})
    return out


def plot_recovery(rec: xr.Dataset):
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 3.6), layout="constrained")
        axs = fig.subplots(1, 3)
    ax = axs[0]
    lo = float(min(rec["h_true"].min(), rec["h_q05"].min())) - 0.3
    hi = float(max(rec["h_true"].max(), rec["h_q95"].max())) + 0.3
    ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=0.8)
    for i, g in enumerate(("control", "patient")):
        sel = rec["group"].values == g
        ax.errorbar(rec["h_true"].values[sel], rec["h_mean"].values[sel],
                    yerr=[rec["h_mean"].values[sel] - rec["h_q05"].values[sel],
                          rec["h_q95"].values[sel] - rec["h_mean"].values[sel]],
                    fmt="o", ms=4, color=PALETTE[i], lw=1, label=g)
    ax.set_xlabel("true attenuation h")
    ax.set_ylabel("posterior mean (90 % interval)")
    ax.set_title(f"NUTS: r = {rec.attrs['corr_h']:.3f}, bias {rec.attrs['bias_h']:+.2f}",
                 fontsize=9)
    ax.legend(frameon=False)
    ax = axs[1]
    ax.plot([lo, hi], [lo, hi], color="0.5", ls="--", lw=0.8)
    for i, g in enumerate(("control", "patient")):
        sel = rec["group"].values == g
        ax.plot(rec["h_true"].values[sel], rec["h_map"].values[sel], "s", ms=4,
                color=PALETTE[i], label=g)
    ax.set_xlabel("true attenuation h")
    ax.set_ylabel("MAP estimate (optax)")
    ax.set_title(f"MAP: r = {rec.attrs['corr_h_map']:.3f} "
                 f"({rec.attrs['map_seconds']:.1f} s)", fontsize=9)
    ax = axs[2]
    ax.hist(rec["delta_draws"].values, bins=60, density=True, color=PALETTE[2], alpha=0.6,
            label="patient - control")
    ax.hist(rec["beta_draws"].values, bins=60, density=True, color=PALETTE[3], alpha=0.6,
            label="slider - finger")
    ax.axvline(-rec.attrs["D_true"], color=PALETTE[2], ls="--", lw=1.2, label="true D")
    ax.axvline(rec.attrs["delta_true_sample"], color=PALETTE[2], ls=":", lw=1.2,
               label="sample difference")
    ax.axvline(rec.attrs["slider_true"], color=PALETTE[3], ls="--", lw=1.2)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("effect on h (log-precision)")
    ax.set_ylabel("posterior density")
    ax.set_title("group difference and condition effect", fontsize=9)
    ax.legend(frameon=False, fontsize=7)
    fig.suptitle("Parameter recovery: force matching, 20 synthetic participants")
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"output directory (default: {DEFAULT_OUT})")
    parser.add_argument("--n", type=int, default=10, help="participants per group (default 10)")
    parser.add_argument("--D", type=float, default=2.0,
                        help="true patient-control difference in attenuation (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-figures", action="store_true")


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych.plotting import save_figure

    if args.n < 2:
        raise ValueError(f"--n: need at least 2 participants per group, got {args.n}")
    if not np.isfinite(args.D):
        raise ValueError(f"--D: expected a finite difference in attenuation, got {args.D}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    rec = recover(args.n, args.D, seed=args.seed)
    out = Path(args.out)
    nc = cpsych.save(rec, out / "recovery.nc")
    a = rec.attrs
    print(f"recovery: {2 * args.n} participants, true D = {args.D}")
    print(f"  h: r(true, posterior mean) = {a['corr_h']:.3f}, r(true, MAP) = "
          f"{a['corr_h_map']:.3f}, bias {a['bias_h']:+.3f}, 90 % coverage "
          f"{a['coverage_h90']:.2f}")
    print(f"  group difference: {a['delta_mean']:+.2f} [{a['delta_q025']:+.2f}, "
          f"{a['delta_q975']:+.2f}] (true {-args.D:+.2f}; sample {a['delta_true_sample']:+.2f})")
    print(f"  condition effect: {a['beta_mean']:+.2f} (true {a['slider_true']:+.2f}); "
          f"sigma_obs {a['sigma_obs_mean']:.3f} N (true {a['noise_sd_true']})")
    print(f"  NUTS: max R-hat {a['max_r_hat']:.4f}, min ESS {a['min_ess']:.0f}, divergences "
          f"{a['divergences']}; {a['nuts_seconds']:.1f} s; MAP {a['map_seconds']:.1f} s; "
          f"simulating the participants {a['simulate_seconds']:.1f} s")
    print(f"  results: {nc}")
    if not args.no_figures:
        _, png = save_figure(plot_recovery(rec), out / "recovery")
        print(f"  figure:  {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
