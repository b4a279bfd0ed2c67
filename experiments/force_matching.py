"""Force-matching illusion in health, schizophrenia and autism (SPEC 5.4; Brown et al. 2013).

An active-inference agent pushes on a force sensor following a prior intention (a Gaussian
bump peaking at 0.5, 1, 1.5 or 2 N) and then matches the force it felt with an external force.
Sensory attenuation (the precision of sensations falls while the agent believes it pushes)
makes it underestimate its own force: self-generated forces exceed the external forces that
feel equal (Shergill et al. 2003). The experiment simulates control, schizophrenia (D = 2:
failed attenuation, raised prior precision) and autism (raised sensory precision, reduced
attenuation) agents; an attenuation sweep h = -4..6; and the delusional case (D = 4), in which
the agent infers an external force when none is applied.

Writes <out>/force_matching.nc (netCDF; forces in N) and the figures force_matching_curves,
attenuation_sweep, false_inference, trial_control and trial_schizophrenia (PDF and PNG).
"""

from __future__ import annotations

import os

# Single-threaded OpenBLAS (SPEC 8) when run as ``python -m cpsych.experiments.force_matching``.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import add_out_argument, module_main

__all__ = ["GROUPS", "CASES", "H_SWEEP", "SHERGILL_2003", "add_arguments", "run", "main",
           "compute", "results_dataset", "trial_datasets"]

DEFAULT_OUT = "results/force_matching"
#: Groups of the force-matching curves.
GROUPS: tuple[str, ...] = ("control", "schizophrenia", "autism")
#: Presets in which belief in a (non-existent) external force is read out.
CASES: tuple[str, ...] = ("control", "schizophrenia", "delusion", "autism")
#: Attenuation values of the sweep (Brown et al. 2013, Fig. 4).
H_SWEEP: tuple[float, ...] = tuple(float(h) for h in range(-4, 7))
#: Target force of the attenuation sweep and the trial figures (N).
SWEEP_TARGET: float = 1.0
#: Target force of the delusion read-out (N; SPM's demo uses twice the unit bump).
DELUSION_TARGET: float = 2.0
#: Human force matching (Shergill et al. 2003, n = 12): regression of self-generated
#: (direct pressing) on external force, intercept (N) and slope.
SHERGILL_2003: dict[str, float] = {"intercept": 0.53, "intercept_se": 0.12,
                                   "slope": 1.49, "slope_se": 0.09}


def _stack(params: Sequence) -> object:
    """Stack a sequence of Params into one Params of arrays (a batch for ``jax.vmap``)."""
    from cpsych.models.force_matching import Params

    return Params(*[jnp.asarray([float(getattr(p, f)) for p in params]) for f in Params._fields])


@functools.cache
def _trials():
    """The batched trial, compiled once per process for the experiment's two calls (quickly:
    :data:`cpsych.cache.QUICK_COMPILE`; with the cache on, traced once per installation:
    :func:`cpsych.cache.program`)."""
    from cpsych.cache import QUICK_COMPILE, program
    from cpsych.models import force_matching as fm

    return program(jax.vmap(fm.simulate_trial), "force-matching-trials",
                   compiler_options=QUICK_COMPILE)


def _batch(params, targets, externals):
    """One batch of trials, returned as NumPy arrays (the post-processing then compiles
    nothing)."""
    out = _trials()(params, jnp.asarray(targets, float), jnp.asarray(externals, float))
    return jax.device_get(out)


def compute(presets: dict | None = None, targets: Sequence[float] | None = None,
            hs: Sequence[float] = H_SWEEP) -> dict[str, np.ndarray]:
    """Run every trial of the experiment in two batched (``vmap``-ed) calls.

    Stage 1: self-generated trials for every group and target, the attenuation sweep and the
    delusion read-out. Stage 2: replays, per group, of no force and of a unit bump (the affine
    calibration of external-force percepts that solves the matching,
    :func:`models.force_matching.replay_calibration`), and of each self-generated force time
    course as an external force at its own amplitude (to check that external forces are
    perceived almost veridically). Both stages are padded to the same batch size so that they
    share one compilation.

    Returns
    -------
    dict of numpy arrays (forces in N); see :func:`results_dataset`.
    """
    from cpsych.models import force_matching as fm

    presets = dict(fm.PRESETS) if presets is None else presets
    targets = np.asarray(fm.TARGETS if targets is None else targets, dtype=float)
    hs = np.asarray(hs, dtype=float)
    for name in GROUPS + CASES:
        if name not in presets:
            raise ValueError(f"presets: missing the group {name!r}")
        fm.check_params(presets[name], f"presets[{name!r}]")
    if targets.ndim != 1 or targets.size == 0 or np.any(~np.isfinite(targets)) \
            or np.any(targets <= 0):
        raise ValueError("targets: expected a non-empty list of positive forces (N), "
                         f"got {targets}")
    if hs.ndim != 1 or hs.size == 0 or np.any(~np.isfinite(hs)):
        raise ValueError(f"hs: expected a non-empty list of finite attenuations, got {hs}")
    T = fm.N_BINS
    G, K, H, C = len(GROUPS), targets.size, hs.size, len(CASES)

    # stage 1: self-generated trials
    p1 = [presets[g] for g in GROUPS for _ in targets]
    p1 += [presets["control"]._replace(h=float(h)) for h in hs]
    p1 += [presets[c] for c in CASES]
    t1 = list(np.tile(targets, G)) + [SWEEP_TARGET] * H + [DELUSION_TARGET] * C
    n1 = len(p1)
    # stage 2: replays (calibration per group, veridicality check per group and target)
    n2 = 2 * G + G * K
    B = max(n1, n2)
    pad = B - n1
    out1 = _batch(_stack(p1 + [p1[0]] * pad), t1 + [t1[0]] * pad, np.zeros((B, T)))
    xp = np.asarray(out1.x_process[:n1, :, 0])
    tpk = xp.argmax(axis=1)
    idx = np.arange(n1)
    x_self = np.asarray(out1.x[:n1, :, 0])
    true_peak = xp[idx, tpk]
    perceived = np.asarray(fm.confident(x_self, out1.x_var[:n1, :, 0]))[idx, tpk]

    # stage 2: per group, a no-force replay and a unit-bump replay (the affine calibration
    # of external-force percepts, models.force_matching.replay_calibration), and each
    # self-generated force time course replayed at its own amplitude (veridicality check)
    gk = slice(0, G * K)
    ext = np.concatenate([np.zeros((G, T)), np.tile(fm.bump(T), (G, 1)), xp[gk]])
    p2 = [presets[g] for g in GROUPS] * 2 + [p1[i] for i in range(G * K)]
    pad2 = B - n2
    out2 = _batch(_stack(p2 + [p2[0]] * pad2), [0.0] * B,
                  np.concatenate([ext, np.zeros((pad2, T))]))
    pct = np.asarray(fm.confident(out2.x[:n2, :, 1], out2.x_var[:n2, :, 1]))
    offset = pct[:G]  # (G, T)
    tb = int(np.argmax(fm.bump(T)))
    gain = pct[G:2 * G, tb] - offset[:, tb]  # (G,)
    grp = np.repeat(np.arange(G), K)
    matched = (perceived[gk] - offset[grp, tpk[gk]]) / gain[grp]
    external_percept = pct[2 * G:][np.arange(G * K), tpk[gk]]

    # delusion read-out
    dc = slice(G * K + H, n1)
    x_e = np.asarray(out1.x[dc, :, 1])
    sd_e = np.sqrt(np.asarray(out1.x_var[dc, :, 1]))
    conf = np.asarray(fm.confident(np.abs(x_e), out1.x_var[dc, :, 1]))
    tc = conf.argmax(axis=1)
    sw = slice(G * K, G * K + H)
    return {
        "targets": targets, "hs": hs, "time": np.arange(1, T + 1, dtype=float),
        "self_generated": true_peak[gk].reshape(G, K),
        "perceived": perceived[gk].reshape(G, K),
        "matched": matched.reshape(G, K),
        "external_percept": external_percept.reshape(G, K),
        "replay_offset": offset, "replay_gain": gain,
        "peak_time": tpk[gk].reshape(G, K) + 1.0,
        "true_peak": true_peak[sw],
        "perceived_peak": x_self[sw].max(axis=1),
        "perceived_force": perceived[sw],
        "x_ext": x_e, "x_ext_sd": sd_e,
        "v_ext": np.asarray(out1.v[dc, :, 1]),
        "v_ext_sd": np.sqrt(np.asarray(out1.v_var[dc, :, 1])),
        "false_external_force": conf[np.arange(C), tc],
        "false_external_sign": np.sign(x_e[np.arange(C), tc]),
        # full self-generated trials per group and target (for the four-panel figures)
        "trials": jax.tree.map(lambda a: np.asarray(a[:G * K]).reshape((G, K) + a.shape[1:]),
                               out1),
    }


def results_dataset(res: dict[str, np.ndarray], presets: dict | None = None) -> xr.Dataset:
    """Label the results of :func:`compute` (forces in N)."""
    from cpsych import __version__
    from cpsych.models import force_matching as fm

    presets = dict(fm.PRESETS) if presets is None else presets
    N = {"units": "N"}
    gt = ("group", "target")
    slope, intercept = [], []
    for i in range(len(GROUPS)):
        b = np.polyfit(res["matched"][i], res["self_generated"][i], 1)
        slope.append(b[0])
        intercept.append(b[1])
    over = res["self_generated"] - res["matched"]
    ds = xr.Dataset(
        {
            "self_generated": (gt, res["self_generated"], {
                **N, "long_name": "true peak self-generated force"}),
            "matched": (gt, res["matched"], {
                **N, "long_name": "external force perceived as equal (matched force)"}),
            "perceived": (gt, res["perceived"], {
                **N, "long_name": "perceived self-generated force: posterior mean of x_self "
                                  "at the true peak minus 1.694 posterior SD"}),
            "external_percept": (gt, res["external_percept"], {
                **N, "long_name": "percept of the self-generated force time course replayed "
                                  "as an external force (veridicality check)"}),
            "replay_gain": ("group", res["replay_gain"], {
                "units": "1", "long_name": "gain of external-force percepts (unit bump replayed, "
                                           "percept at its peak minus the no-force percept)"}),
            "overcompensation": (gt, over, {
                **N, "long_name": "self-generated minus matched force"}),
            "peak_time": (gt, res["peak_time"], {
                "units": "bin", "long_name": "time of the true peak force (1-based bin)"}),
            "slope": ("group", np.asarray(slope), {
                "units": "1", "long_name": "regression slope of self-generated on matched force"}),
            "intercept": ("group", np.asarray(intercept), {
                **N, "long_name": "regression intercept of self-generated on matched force"}),
            "mean_overcompensation": ("group", over.mean(axis=1), {
                **N, "long_name": "mean over targets of self-generated minus matched force"}),
            "true_peak": ("h", res["true_peak"], {
                **N, "long_name": f"true peak self-generated force (target {SWEEP_TARGET:g} N)"}),
            "perceived_peak": ("h", res["perceived_peak"], {
                **N, "long_name": "peak posterior mean of the self-generated force"}),
            "perceived_force": ("h", res["perceived_force"], {
                **N, "long_name": "perceived force: posterior mean of x_self at the true peak "
                                  "minus 1.694 posterior SD"}),
            "x_ext": (("case", "time"), res["x_ext"], {
                **N, "long_name": "posterior mean of the external force (none applied)"}),
            "x_ext_sd": (("case", "time"), res["x_ext_sd"], {
                **N, "long_name": "posterior SD of the external force"}),
            "v_ext": (("case", "time"), res["v_ext"], {
                **N, "long_name": "posterior mean of the external cause (none applied)"}),
            "v_ext_sd": (("case", "time"), res["v_ext_sd"], {
                **N, "long_name": "posterior SD of the external cause"}),
            "false_external_force": ("case", res["false_external_force"], {
                **N, "long_name": "max over time of |E x_ext| - 1.694 SD: > 0 when the 90 % "
                                  "interval of the external force excludes zero although none "
                                  "was applied"}),
            "false_external_sign": ("case", res["false_external_sign"], {
                "units": "1", "long_name": "sign of the inferred external force (-1: "
                                           "antagonistic, pushing against the agent)"}),
        },
        coords={
            "group": ("group", list(GROUPS)),
            "target": ("target", res["targets"], {**N, "long_name": "peak intended force"}),
            "h": ("h", res["hs"], {"units": "1", "long_name": "sensory attenuation h "
                                   "(log-precision 8 - h tanh(v_self + x_self))"}),
            "case": ("case", list(CASES)),
            "time": ("time", res["time"], {"units": "bin", "long_name": "time (1-based bin)"}),
        },
        attrs={
            "experiment": "force matching (cpsych SPEC 5.4; Brown et al. 2013)",
            "cpsych_version": __version__,
            "sweep_target_N": SWEEP_TARGET,
            "delusion_target_N": DELUSION_TARGET,
            "human_intercept_N_shergill2003": SHERGILL_2003["intercept"],
            "human_slope_shergill2003": SHERGILL_2003["slope"],
            "noise": "noiseless process (deterministic)",
        },
    )
    for name in CASES:
        p = presets[name]
        for field, value in p._asdict().items():
            ds.attrs[f"{name}_{field}"] = float(value)
    return ds


def trial_datasets(res: dict, names: Sequence[str] = ("control", "schizophrenia"),
                   target: float = SWEEP_TARGET) -> dict[str, xr.Dataset]:
    """Full single-trial datasets from :func:`compute`'s results (four-panel figures)."""
    from cpsych.active import active_dataset
    from cpsych.models import force_matching as fm

    k = int(np.argmin(np.abs(res["targets"] - target)))
    out = {}
    for name in names:
        g = GROUPS.index(name)
        o = jax.tree.map(lambda a, g=g, k=k: a[g, k], res["trials"])
        ds = active_dataset(fm.process(), fm.model(fm.PRESETS[name]), o, res["time"])
        for v in ("x_process", "v_process", "x", "v", "y", "y_pred"):
            ds[v].attrs["units"] = "N"
        ds.attrs["target_N"] = float(res["targets"][k])
        out[name] = ds
    return out


# ---------------------------------------------------------------------------- figures
def _colours() -> dict[str, str]:
    from cpsych.plotting import PALETTE  # colour-blind-safe (Okabe-Ito)

    return {"control": PALETTE[0], "schizophrenia": PALETTE[1], "autism": PALETTE[2],
            "delusion": PALETTE[3]}


COLOURS = _colours()


def figure_curves(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4), layout="constrained")
    hi = float(max(ds["self_generated"].max(), ds["matched"].max())) * 1.08
    ax.plot([0, hi], [0, hi], color="0.55", ls=":", lw=1.2, label="identity (no illusion)")
    xs = np.array([0.0, hi])
    ax.plot(xs, SHERGILL_2003["intercept"] + SHERGILL_2003["slope"] * xs, color="0.3",
            ls=(0, (5, 3)), lw=1.0, label="humans (Shergill et al. 2003)")
    for g in GROUPS:
        m = ds["matched"].sel(group=g).values
        s = ds["self_generated"].sel(group=g).values
        lab = (f"{g}: slope {float(ds['slope'].sel(group=g)):.2f}, "
               f"intercept {float(ds['intercept'].sel(group=g)):+.2f} N")
        ax.plot(m, s, "-o", color=COLOURS[g], ms=5, lw=1.6, label=lab)
    ax.set(xlim=(0, hi), ylim=(0, hi), aspect="equal",
           xlabel="matched external force (N)", ylabel="self-generated force (N)")
    ax.set_title("Force-matching illusion", loc="left", fontsize=11)
    ax.legend(fontsize=7.5, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def figure_sweep(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    h = ds["h"].values
    ax.plot(h, ds["true_peak"], "-o", color="k", ms=4, label="true peak force")
    ax.plot(h, ds["perceived_peak"], "-s", color=COLOURS["schizophrenia"], ms=4,
            label="perceived (peak posterior mean)")
    ax.plot(h, ds["perceived_force"], "--^", color=COLOURS["delusion"], ms=4, lw=1.2,
            label="perceived (mean - 1.694 SD at true peak)")
    ax.axvline(6, color="0.6", lw=0.8, ls=":")
    ax.text(5.9, 0.05, "health", ha="right", va="bottom", fontsize=8, color="0.4")
    ax.set(xlabel="sensory attenuation h", ylabel="self-generated force (N)",
           xticks=h)
    ax.set_title(f"Attenuation is needed to act (target {SWEEP_TARGET:g} N)", loc="left",
                 fontsize=11)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def figure_false_inference(ds: xr.Dataset):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.4), layout="constrained")
    t = ds["time"].values
    for c in ("control", "delusion"):
        m = ds["x_ext"].sel(case=c).values
        sd = ds["x_ext_sd"].sel(case=c).values
        ax.fill_between(t, m - 1.694 * sd, m + 1.694 * sd, color=COLOURS[c], alpha=0.18, lw=0)
        lab = "delusion (D = 4)" if c == "delusion" else c
        ax.plot(t, m, color=COLOURS[c], label=f"{lab}")
    ax.axhline(0, color="0.4", lw=0.8, ls="--", label="true external force (none)")
    ax.set(xlabel="time (bins)", ylabel="believed external force (N)", xlim=(t[0], t[-1]))
    ax.set_title(f"False inference of an external force (target {DELUSION_TARGET:g} N)",
                 loc="left", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="lower left", title="posterior mean, 90 % interval",
              title_fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _save(fig, stem: Path) -> tuple[Path, Path]:
    """Write PDF and PNG atomically, then release the pyplot figure."""
    import matplotlib.pyplot as plt

    from cpsych.plotting import save_figure

    paths = save_figure(fig, stem)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--no-figures", action="store_true", help="write the results only")


def _trial_figure(name: str, tds):
    """The active-inference figure of one example trial."""
    from cpsych.plotting import plot_active

    fig = plot_active(tds, title=f"Force matching, {name} ({tds.attrs['target_N']:g} N target)")
    for ax, lab in zip(fig.axes[:4], ("sensation (N)", "force (N)", "cause (N/bin)",
                                      "action (a.u.)"), strict=True):
        ax.set_ylabel(lab)
    return fig


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych import cache

    out = Path(args.out)
    res = compute()
    ds = results_dataset(res)
    nc = cpsych.save(ds, out / "force_matching.nc")
    figs = []
    if not args.no_figures:
        # rendered once per result: a rerun copies the files (cpsych.cache.figure)
        for build, stem in ((figure_curves, "force_matching_curves"),
                            (figure_sweep, "attenuation_sweep"),
                            (figure_false_inference, "false_inference")):
            figs.append(cache.figure(functools.partial(build, ds), out / stem, ds,
                                     name=f"force-matching-{stem}", save=_save))
        for name, tds in trial_datasets(res).items():
            figs.append(cache.figure(functools.partial(_trial_figure, name, tds),
                                     out / f"trial_{name}", name, tds,
                                     name="force-matching-trial", save=_save))
    print("force matching (Brown et al. 2013): self-generated vs matched external force (N)")
    for g in GROUPS:
        s = ds["self_generated"].sel(group=g).values
        m = ds["matched"].sel(group=g).values
        print(f"  {g:13s} self {np.array2string(s, precision=2)}  matched "
              f"{np.array2string(m, precision=2)}  slope {float(ds['slope'].sel(group=g)):.2f}"
              f"  intercept {float(ds['intercept'].sel(group=g)):+.2f} N  overcompensation "
              f"{float(ds['mean_overcompensation'].sel(group=g)):.2f} N")
    print(f"  humans (Shergill et al. 2003): slope {SHERGILL_2003['slope']:.2f}, intercept "
          f"{SHERGILL_2003['intercept']:+.2f} N")
    err = np.abs(ds["external_percept"] - ds["self_generated"]).max().item()
    print(f"  external forces perceived almost veridically: max |percept - force| = {err:.3f} N"
          f" (calibration gain {np.array2string(ds['replay_gain'].values, precision=3)})")
    print("  attenuation sweep h = -4..6 (true / perceived peak, N): "
          + " ".join(f"{t:.2f}/{p:.2f}" for t, p in zip(ds["true_peak"].values,
                                                      ds["perceived_peak"].values, strict=True)))
    print("  false external force (|E x_ext| - 1.694 SD, N): "
          + ", ".join(f"{c} {float(ds['false_external_force'].sel(case=c)):+.3f}" for c in CASES))
    print(f"  results: {nc}")
    for _pdf, png in figs:
        print(f"  figure:  {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
