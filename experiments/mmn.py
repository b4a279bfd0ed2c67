"""Mismatch negativity in a roving oddball: predictive coding with learning (SPM12
DEM_demo_MMN; Garrido et al. 2009), in control and schizophrenia.

Two presentations of stimulus A are followed by a train of stimulus B (default 7). Each
presentation is perceived by generalised filtering and learned from by one E- and M-step, the
posterior of one presentation being the prior of the next (cpsych.models.mmn). The "ERP" is
the precision-weighted prediction error: it shrinks as B is repeated (repetition suppression),
and the first B (the deviant) minus the last B (the standard) is the mismatch response. The
schizophrenia preset learns more slowly (impaired plasticity), which flattens repetition
suppression and reduces the MMN. Results go to <out>/mmn.nc (ERPs, peak amplitudes, MMN per
number of repetitions and the learned coupling and sensory log-precision, per group), the
figure to <out>/mmn.png and .pdf.
"""

from __future__ import annotations

import os

# Single-threaded OpenBLAS (SPEC 8), for ``python -m cpsych.experiments.mmn``; the ``cpsych``
# command line sets the same before NumPy or JAX load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import add_out_argument, module_main  # noqa: E402

__all__ = ["add_arguments", "run", "main", "mmn_results", "plot_mmn"]

DEFAULT_OUT = "results/mmn"
GROUPS = ("control", "schizophrenia")


def mmn_results(n_b: int = 7, groups: tuple[str, ...] = GROUPS) -> xr.Dataset:
    """Simulate the roving-oddball train for each group (a preset of the paradigm).

    Returns
    -------
    xarray.Dataset
        Dimensions ``group``, ``presentation`` (1-based position in the train), ``stimulus``
        of each presentation, ``channel``, ``time`` (ms) and ``repetition`` (1-based
        presentation of B).
    """
    import cpsych
    from cpsych.models import mmn

    par = cpsych.paradigm.get("mmn")
    design = {"n_b": n_b}
    n_a = int(par.full_design(design)["n_a"])
    runs = [par.run(g, design=design) for g in groups]

    def stack(name):
        return np.stack([r[name] for r in runs])

    erp1, erp2 = stack("erp1"), stack("erp2")
    dev, std = n_a, n_a + n_b - 1  # 0-based: the first and the last presentation of B
    units = "1 (error standard deviations)"
    params = {g: par.params(g) for g in groups}
    ds = xr.Dataset(
        {
            "erp1": (("group", "presentation", "channel", "time"), erp1,
                     {"long_name": "level-1 ERP: precision-weighted sensory prediction error",
                      "units": units}),
            "erp2": (("group", "presentation", "time"), erp2,
                     {"long_name": "level-2 ERP: precision-weighted prediction error on the "
                                   "cause", "units": units}),
            "difference1": (("group", "channel", "time"), erp1[:, dev] - erp1[:, std],
                            {"long_name": "level-1 difference wave: deviant minus last "
                                          "standard", "units": units}),
            "difference2": (("group", "time"), erp2[:, dev] - erp2[:, std],
                            {"long_name": "level-2 difference wave (mismatch negativity): "
                                          "deviant minus last standard", "units": units}),
            "erp1_peak": (("group", "presentation"), stack("erp1_peak"),
                          {"long_name": "peak |level-1 ERP|", "units": units}),
            "erp2_peak": (("group", "presentation"), stack("erp2_peak"),
                          {"long_name": "peak |level-2 ERP|", "units": units}),
            "mmn": (("group",), stack("mmn"),
                    {"long_name": "mismatch response: peak level-1 ERP, deviant minus last "
                                  "standard", "units": units}),
            "mmn_level2": (("group",), stack("mmn_level2"),
                           {"long_name": "peak level-2 ERP, deviant minus last standard",
                            "units": units}),
            "mmn_by_repetition": (("group", "repetition"), stack("mmn_by_repetition"),
                                  {"long_name": "peak level-1 ERP, deviant minus the k-th "
                                                "presentation of B", "units": units}),
            "g21": (("group", "presentation"), stack("g21"),
                    {"long_name": "learned coupling g21 (posterior expectation after the "
                                  "presentation)", "units": "1"}),
            "h": (("group", "presentation"), stack("h"),
                  {"long_name": "learned sensory log-precision (posterior expectation after "
                                "the presentation)", "units": "log-precision"}),
        },
        coords={
            "group": list(groups),
            "presentation": np.arange(1, n_a + n_b + 1),
            "stimulus": ("presentation", ["A"] * n_a + ["B"] * n_b),
            "channel": ["amplitude", "frequency"],
            "time": ("time", mmn.time_ms(), {"units": "ms", "long_name": "peristimulus time"}),
            "repetition": np.arange(1, n_b + 1),
        },
        attrs={
            "experiment": "mmn",
            "paradigm": par.title,
            "n_a": n_a, "n_b": int(n_b),
            "deviant_presentation": dev + 1, "standard_presentation": std + 1,
            "bin_ms": mmn.BIN_MS,
            "coupling_a": mmn.COUPLING_A, "coupling_b": mmn.COUPLING_B,
            **{f"{g}_{k}": v for g in groups for k, v in params[g].items()},
            "cpsych_version": cpsych.__version__,
        },
    )
    return ds


def plot_mmn(ds: xr.Dataset):
    """ERPs over repetitions (per group), difference waves, MMN vs repetitions, learning."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    groups = [str(g) for g in ds["group"].values]
    colours = {g: PALETTE[i] for i, g in enumerate(groups)}
    t = ds["time"].values
    n_a = int(ds.attrs["n_a"])
    b = ds["presentation"].values[n_a:]
    with style():
        fig = Figure(figsize=(9.6, 5.8), layout="constrained")
        axes = fig.subplots(2, 3)
        top = float(np.abs(ds["erp1"].sel(channel="amplitude")).max())
        # (a, b) level-1 ERP to each presentation of B, deviant dark to last standard light
        for ax, g in zip(axes[0, :2], groups[:2], strict=False):
            cmap = colormaps["Blues" if g == groups[0] else "Oranges"]
            for k, p in enumerate(b):
                shade = 0.95 - 0.65 * k / max(len(b) - 1, 1)
                label = ("deviant (1st B)" if k == 0 else
                         f"standard ({k + 1}th B)" if k == len(b) - 1 else None)
                ax.plot(t, ds["erp1"].sel(group=g, presentation=p, channel="amplitude"),
                        color=cmap(shade), linewidth=1.6 if k in (0, len(b) - 1) else 0.9,
                        label=label)
            ax.axhline(0, color="0.6", linewidth=0.5)
            ax.set_ylim(-1.08 * top, 1.08 * top)
            ax.set_xlabel("peristimulus time (ms)")
            ax.set_ylabel("precision-weighted error (sd)")
            ax.set_title(f"{g}: level-1 ERP to B", loc="left")
            ax.legend(loc="upper right")
        # (c) level-1 difference waves
        ax = axes[0, 2]
        for g in groups:
            for ch, ls in (("amplitude", "-"), ("frequency", ":")):
                ax.plot(t, ds["difference1"].sel(group=g, channel=ch), color=colours[g],
                        linestyle=ls, label=f"{g}, {ch}")
        ax.axhline(0, color="0.6", linewidth=0.5)
        ax.set_xlabel("peristimulus time (ms)")
        ax.set_ylabel("deviant - standard (sd)")
        ax.set_title("level-1 difference waves", loc="left")
        ax.legend(loc="upper right", fontsize=6.5)
        # (d) level-2 difference wave: the MMN panel of DEM_demo_MMN
        ax = axes[1, 0]
        for g in groups:
            ax.plot(t, ds["difference2"].sel(group=g), color=colours[g], label=g)
        ax.axhline(0, color="0.6", linewidth=0.5)
        ax.set_xlabel("peristimulus time (ms)")
        ax.set_ylabel("deviant - standard (sd)")
        ax.set_title("level-2 difference wave (MMN)", loc="left")
        ax.legend(loc="lower right")
        # (e) MMN vs number of repetitions of B
        ax = axes[1, 1]
        reps = ds["repetition"].values
        for g in groups:
            ax.plot(reps[1:], ds["mmn_by_repetition"].sel(group=g).values[1:], "o-",
                    color=colours[g], markersize=4, label=g)
        ax.set_xticks(reps[1:])
        ax.set_xlabel("presentations of B (the standard)")
        ax.set_ylabel("deviant - standard peak (sd)")
        ax.set_title("MMN vs repetitions", loc="left")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right")
        # (f) learning: coupling and sensory log-precision over the train
        ax = axes[1, 2]
        p = ds["presentation"].values
        for g in groups:
            ax.plot(p, ds["g21"].sel(group=g), "o-", color=colours[g], markersize=4,
                    label=f"{g} g21")
            ax.plot(p, ds["h"].sel(group=g), "s--", color=colours[g], markersize=3,
                    linewidth=0.9, label=f"{g} h")
        truth = np.where(ds["stimulus"].values == "A", ds.attrs["coupling_a"],
                         ds.attrs["coupling_b"])
        ax.step(p, truth, where="mid", color="0.3", linewidth=0.8, label="true g21")
        ax.axvline(n_a + 0.5, color="0.7", linewidth=0.8)
        stim = [str(s) for s in ds["stimulus"].values]
        ax.set_xticks(p, [f"{s}{stim[:i + 1].count(s)}" for i, s in enumerate(stim)])
        ax.set_xlabel("presentation")
        ax.set_ylabel("posterior expectation")
        ax.set_ylim(0.5, 1.45 * max(float(ds["g21"].max()), float(ds["h"].max())))
        ax.set_title("learning across presentations", loc="left")
        ax.legend(loc="upper right", ncol=2, fontsize=6.5)
        for ax, letter in zip(axes.ravel(), "abcdef", strict=True):
            ax.text(-0.16, 1.04, letter, transform=ax.transAxes, fontsize=11,
                    fontweight="bold", va="bottom")
        fig.suptitle("Roving-oddball mismatch negativity: prediction errors with learning",
                     fontsize=11)
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--repetitions", type=int, default=7, metavar="N",
                        help="presentations of stimulus B, the first being the deviant "
                             "(default 7, as in SPM; at least 2)")


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych import cache

    if args.repetitions < 2:
        raise ValueError(f"--repetitions: need at least 2 presentations of B (a deviant and a "
                         f"standard), got {args.repetitions}")
    out = Path(args.out)
    ds = mmn_results(args.repetitions)
    nc = cpsych.save(ds, out / "mmn.nc")
    # rendered once per result: a rerun copies the files (cpsych.cache.figure)
    pdf, png = cache.figure(functools.partial(plot_mmn, ds), out / "mmn", ds, name="mmn")
    print(f"Roving oddball: {ds.attrs['n_a']} x A then {ds.attrs['n_b']} x B, "
          f"{ds.sizes['time']} bins of {ds.attrs['bin_ms']:g} ms")
    for g in ds["group"].values:
        peaks = ds["erp1_peak"].sel(group=g).values[ds.attrs["n_a"]:]
        print(f"  {g}: MMN {float(ds['mmn'].sel(group=g)):.2f} sd (level 2: "
              f"{float(ds['mmn_level2'].sel(group=g)):.3f}); ERP peak over B "
              + " ".join(f"{v:.2f}" for v in peaks)
              + f"; learned g21 {float(ds['g21'].sel(group=g)[-1]):.2f}")
    print(f"  results: {nc}")
    print(f"  figure:  {png}")
    print(f"           {pdf}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
