"""Precision phase diagrams of the force-matching illusion and of smooth pursuit.

Force matching: the illusion's size (mean overcompensation, self-generated minus matched
force, N) over sensory attenuation h x prior log-precision on the intention to push.
Pursuit: the occluded pursuit gain and the catch-up saccade (peak eye velocity after the
target reappears) over level-1 sensory (retinal) x level-2 (oscillator) state log-precision.
Unswept parameters take the control values; the control, schizophrenia and autism presets
are marked at their coordinates on the swept axes (presets that also change unswept
parameters are marked by their projection, labelled as such). Writes heat maps (PDF+PNG)
and the swept datasets (netCDF, resumable stores under OUT/stores/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from cpsych.experiments.sweep_cli import paradigm, run_sweep

MARKERS = {"control": ("o", "white"), "schizophrenia": ("s", "tab:red"),
           "autism": ("^", "tab:cyan")}


def _heat(ax, da: xr.DataArray, x: str, y: str, title: str, cbar_label: str, fig, presets,
          swept_only_notes):
    d = da.transpose(y, x)
    v = d.values[np.isfinite(d.values)]
    lo, hi = (np.percentile(v, [5, 100]) if v.size else (0.0, 1.0))
    extend = "min" if v.size and v.min() < lo else "neither"
    im = ax.pcolormesh(d[x].values, d[y].values, d.values, shading="nearest", cmap="viridis",
                       vmin=lo, vmax=hi)
    cb = fig.colorbar(im, ax=ax, extend=extend)
    cb.set_label(cbar_label)
    for name, (m, c) in MARKERS.items():
        if name not in presets:
            continue
        px, py = presets[name][x], presets[name][y]
        label = name + ("*" if swept_only_notes.get(name) else "")
        ax.plot(px, py, m, ms=9, mfc=c, mec="black", label=label)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)


def _others_differ(par, x, y) -> dict[str, bool]:
    ctl = par.presets["control"]
    return {n: any(p[k] != ctl[k] for k in p if k not in (x, y))
            for n, p in par.presets.items()}


def compute(size: int, out: Path, progress: bool = True) -> dict[str, xr.Dataset]:
    """Run both sweeps (``size`` x ``size`` grids) into resumable stores under ``out``."""
    fm = run_sweep("force-matching", {"h": f"0:8:{size}", "prior": f"2:10:{size}"},
                   readouts=["illusion"], store=out / "stores" / "force_matching",
                   progress=progress, chunk_size=max(size, 8))
    pu = run_sweep("pursuit", {"retina": f"2:8:{size}", "state2": f"-2:6:{size}"},
                   readouts=["gain_occluded", "peak_eye_velocity", "gain_visible"],
                   store=out / "stores" / "pursuit", progress=progress,
                   chunk_size=max(size, 8))
    return {"force_matching": fm, "pursuit": pu}


def figures(res: dict[str, xr.Dataset]) -> dict[str, Figure]:
    figs = {}
    par = paradigm("force-matching")
    fig = Figure(figsize=(5.2, 4.2), constrained_layout=True)
    ax = fig.add_subplot()
    _heat(ax, res["force_matching"].illusion, "h", "prior",
          "Force-matching illusion", "mean overcompensation (N)", fig, par.presets,
          _others_differ(par, "h", "prior"))
    ax.set_xlabel("sensory attenuation h (log-precision units)")
    ax.set_ylabel("prior log-precision on self-generated force")
    ax.text(0.99, 0.01, "* preset also changes unswept precisions; white: flagged (no force)",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=6)
    figs["phase_force_matching"] = fig

    par = paradigm("pursuit")
    fig = Figure(figsize=(10, 4.2), constrained_layout=True)
    notes = _others_differ(par, "retina", "state2")
    for i, (k, lab, t) in enumerate([
            ("gain_occluded", "occluded pursuit gain", "Pursuit behind the occluder"),
            ("peak_eye_velocity", "peak eye velocity after reappearance (deg/s)",
             "Catch-up saccade")]):
        ax = fig.add_subplot(1, 2, i + 1)
        _heat(ax, res["pursuit"][k], "retina", "state2", t, lab, fig, par.presets, notes)
        ax.set_xlabel("level-1 sensory (retinal) log-precision")
        ax.set_ylabel("level-2 state log-precision")
    figs["phase_pursuit"] = fig
    return figs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("results/phase_diagrams"),
                        help="output directory (figures, netCDF, resumable stores)")
    parser.add_argument("--size", type=int, default=6,
                        help="grid points per axis (default 6: CI-sized; 32 for the paper)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    if args.size < 2:
        raise ValueError(f"--size: expected at least 2 points per axis, got {args.size}")
    from cpsych import save
    from cpsych.plotting import save_figure

    out = Path(args.out)
    res = compute(args.size, out, progress=not args.quiet)
    for name, ds in res.items():
        save(ds, out / f"phase_{name}.nc")
    for stem, fig in figures(res).items():
        save_figure(fig, out / stem)
    if not args.quiet:
        fm, pu = res["force_matching"], res["pursuit"]
        print(f"force matching: illusion {float(fm.illusion.min()):.2f}.."
              f"{float(fm.illusion.max()):.2f} N, {int(fm.diverged.sum())} flagged point(s)")
        print(f"pursuit: occluded gain {float(pu.gain_occluded.min()):.2f}.."
              f"{float(pu.gain_occluded.max()):.2f}, {int(pu.diverged.sum())} flagged")
    return 0
