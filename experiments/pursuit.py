"""Smooth pursuit with occlusion in health, schizophrenia and autism (SPEC 5.5).

Active-inference simulations of Adams, Perrinet & Friston (2012): an agent pursues a target
moving as sin(w t) (w = 2 pi / 32 bins, 16 ms bins, motion from bin 17) with a hierarchical
model whose oscillator carries it through occlusion. Three groups (control; schizophrenia:
level-2 state log-precision 4 -> 0; autism: sensory-level log-precisions 4 -> 6) by three
scenarios (occlusion, 64 bins; unexpected reversal at bin 50 without occluder, 64 bins;
learning the target's frequency from a prior of w/8, 128 bins). All nine trials run in one
compiled, vmapped simulation. Writes <out>/pursuit.nc (traces in degrees, deg/s and ms, and
the read-outs: pursuit gain while visible and occluded, lag, RMS error, peak eye velocity after
reappearance), <out>/pursuit_traces.{pdf,png} (control vs schizophrenia per scenario) and
<out>/pursuit_human.{pdf,png} (simulated versus human grand-average traces over one cycle).
"""

from __future__ import annotations

import os

# Single-threaded OpenBLAS (SPEC 8) when run as a module; the cpsych CLI sets the same.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
from importlib import resources  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import add_out_argument, module_main

__all__ = ["add_arguments", "run", "main", "run_experiment", "load_human", "plot_traces",
           "plot_human"]

DEFAULT_OUT = "results/pursuit"
GROUPS = ("control", "schizophrenia", "autism")
READOUTS = {
    "gain_visible": ("1", "pursuit gain while the target is visible (least-squares slope of "
                          "eye velocity on target velocity)"),
    "gain_occluded": ("1", "pursuit gain while the target is occluded (NaN: no occluder)"),
    "lag_ms": ("ms", "lag of the eye behind the visible target (best-matching time shift)"),
    "rms_error_deg": ("deg", "RMS eye-minus-target angle (from motion onset; reversal: from "
                             "the reversal)"),
    "peak_eye_velocity": ("deg/s", "peak absolute eye velocity in the 128 ms after the target "
                                   "reappears (catch-up saccade); without occluder, over the "
                                   "scored period"),
}


@functools.cache
def _programs(T: int):
    """The experiment's two programs for ``T`` bins, compiled quickly and, with the cache on,
    traced once per installation (:func:`cpsych.cache.program`). The model's templates are
    built here and closed over: the stored program depends on ``T`` and the sources only."""
    import jax

    from cpsych.cache import QUICK_COMPILE, program
    from cpsych.models import pursuit as P

    templates = P.prepare(T)

    def simulate_all(log_pi, cause, occluder, prior_mean):
        return P.simulate_batch(log_pi, cause, occluder, prior_mean, templates)

    return (program(simulate_all, f"pursuit-batch-{T}", compiler_options=QUICK_COMPILE),
            program(jax.vmap(P.readouts, in_axes=(0, None, 0, 0)), "pursuit-readouts",
                    compiler_options=QUICK_COMPILE))


def run_experiment() -> xr.Dataset:
    """Simulate every group in every scenario and collect traces and read-outs."""
    import jax.numpy as jnp

    import cpsych
    from cpsych.models import pursuit as P

    groups = {g: P.PRESETS[g] for g in GROUPS}
    inputs = P.batch_inputs(groups, P.SCENARIOS)
    T = inputs[1].shape[1]
    simulate, read = _programs(T)
    traces = simulate(*(jnp.asarray(a) for a in inputs))
    lengths = [P.scenario(s).cause.size for s in P.SCENARIOS]
    score_from = [P.REVERSAL if s == "reversal" else P.ONSET for s in P.SCENARIOS]
    nG, nS = len(GROUPS), len(P.SCENARIOS)
    out = read(traces, P.ONSET, jnp.asarray(np.tile(score_from, nG)),
               jnp.asarray(np.tile(lengths, nG)))  # rows: groups (outer) x scenarios
    ro = {k: np.asarray(out[k]).reshape(nG, nS) for k in READOUTS}
    shaped = {k: np.asarray(v).reshape(nG, nS, T) for k, v in traces._asdict().items()}
    valid = np.arange(T)[None, :] < np.asarray(lengths)[:, None]  # (scenario, time)

    def field(name, scale=1.0):
        return np.where(valid[None], shaped[name] * scale, np.nan)

    deg_s = P.DEG_PER_UNIT * 1000.0 / P.DT_MS
    dims = ("group", "scenario", "time")
    ds = xr.Dataset(
        {
            "eye_angle": (dims, field("eye_angle", P.DEG_PER_UNIT),
                          {"units": "deg", "long_name": "eye angle"}),
            "target_angle": (dims, field("target_angle", P.DEG_PER_UNIT),
                             {"units": "deg", "long_name": "target angle"}),
            "eye_velocity": (dims, field("eye_velocity", deg_s),
                             {"units": "deg/s", "long_name": "eye velocity"}),
            "target_velocity": (dims, field("target_velocity", deg_s),
                                {"units": "deg/s", "long_name": "target velocity"}),
            "occluded": (dims, field("occluded"),
                         {"units": "1", "long_name": "target behind the occluder (1) or "
                                                     "visible (0)"}),
            "believed_frequency": (dims, field("frequency", 1.0 / 8.0),
                                   {"units": "rad/bin", "long_name": "posterior expectation "
                                    "of the target's angular frequency (v3 / 8)"}),
            "oculomotor_action": (dims, field("action"),
                                  {"units": "model units", "long_name": "action"}),
            **{k: (("group", "scenario"), ro[k], {"units": u, "long_name": d})
               for k, (u, d) in READOUTS.items()},
            "n_bins": (("scenario",), np.asarray(lengths),
                       {"units": "bin", "long_name": "length of the scenario (later bins NaN)"}),
        },
        coords={
            "group": list(GROUPS), "scenario": list(P.SCENARIOS),
            "time": ("time", np.arange(1, T + 1) * P.DT_MS,
                     {"units": "ms", "long_name": "time (bin t at t x 16 ms)"}),
        },
        attrs={
            "experiment": "pursuit",
            "paradigm": "smooth pursuit with occlusion (Adams, Perrinet & Friston 2012; "
                        "cpsych SPEC 5.5)",
            "cpsych_version": cpsych.__version__,
            "bin_ms": P.DT_MS, "deg_per_model_unit": P.DEG_PER_UNIT,
            "target_frequency_rad_per_bin": P.W, "motion_onset_bin": P.ONSET,
            "reversal_bin": P.REVERSAL,
            **{f"log_pi_{g}": groups[g].as_array() for g in GROUPS},
            "log_pi_order": "proprio, retina, state1, cause2, state2, prior",
        },
    )
    return ds


# ----------------------------------------------------------------------------- human data
def load_human(condition: str = "fast") -> dict[str, np.ndarray]:
    """Human grand averages (smooth target), time-normalised to one cycle.

    Returns ``phase`` (0..1), eye and target position divided by the target amplitude, eye
    (desaccaded) and target velocity divided by the target's peak velocity, and ``occluded``
    (normalised target between -0.8 and 0, SPEC 7).
    """
    if condition not in ("fast", "slow"):
        raise ValueError(f"condition: must be 'fast' or 'slow', got {condition!r}")
    base = resources.files("cpsych.experiments").joinpath("data", "spem")
    with resources.as_file(base.joinpath(f"{condition}_smooth_10ms.csv")) as path:
        if not Path(path).exists():
            raise FileNotFoundError(f"human data missing from the installation: {path}")
        d = np.genfromtxt(path, delimiter=",", names=True)
    t = d["time_ms"]
    tgt, eye = d["target_position_px"], d["eye_position_px"]
    vel, raw = d["eye_velocity_desaccaded"], d["eye_velocity"]
    amp = np.max(np.abs(tgt))
    # velocity units as recorded: calibrate on the raw (saccades included) velocity, which
    # is the derivative of the recorded position (about 21.6 units per px/ms)
    dpos = np.gradient(eye, t)  # px/ms
    ok = np.isfinite(raw)
    scale = np.sum(raw[ok] * dpos[ok]) / np.sum(dpos[ok] ** 2)
    tv = np.gradient(tgt, t)
    peak = np.max(np.abs(tv))
    xn = tgt / amp
    return {"phase": (t - t[0]) / (t[-1] - t[0]), "eye": eye / amp, "target": xn,
            "eye_velocity": vel / scale / peak, "target_velocity": tv / peak,
            "occluded": ((xn > -0.8) & (xn < 0.0)).astype(float), "cycle_ms": t[-1] - t[0]}


def _human_summary() -> dict[tuple[str, str], tuple[float, float]]:
    base = resources.files("cpsych.experiments").joinpath("data", "spem")
    with resources.as_file(base.joinpath("summary_stats.csv")) as path:
        rows = np.genfromtxt(path, delimiter=",", names=True, dtype=None, encoding="utf-8")
    out = {}
    for r in rows:
        if r["measure"] == "gain":
            out[(str(r["speed"]), str(r["target_motion"]))] = (
                float(r["visible"]), float((r["occluded_1"] + r["occluded_2"]) / 2))
    return out


# ----------------------------------------------------------------------------- figures
COLOURS = {"control": "#0072B2", "schizophrenia": "#D55E00", "autism": "#009E73",
           "target": "#000000"}


def _shade(ax, x, occluded, label=None):
    occ = np.nan_to_num(occluded) > 0.5
    edges = np.flatnonzero(np.diff(np.r_[0, occ.astype(int), 0]))
    for k, (a, b) in enumerate(zip(edges[::2], edges[1::2], strict=True)):
        dx = x[1] - x[0]
        ax.axvspan(x[a] - dx / 2, x[b - 1] + dx / 2, color="0.88", lw=0,
                   label=label if k == 0 else None, zorder=0)


def plot_traces(ds: xr.Dataset, groups=("control", "schizophrenia")):
    """Eye and target angle, velocity and believed frequency per scenario (occluder shaded)."""
    from matplotlib.figure import Figure

    from cpsych.plotting import style

    titles = {"occlusion": "occluded sinusoid", "reversal": "unexpected reversal (bin 50)",
              "frequency": "learning the frequency (prior w/8)"}
    with style():
        fig = Figure(figsize=(11, 7.2), layout="constrained")
        axs = fig.subplots(3, 3, sharex="col")
        for j, sc in enumerate(ds.scenario.values):
            L = int(ds.n_bins.sel(scenario=sc))
            t = ds.time.values[:L]
            sub = ds.sel(scenario=sc).isel(time=slice(0, L))
            for i in range(3):
                _shade(axs[i, j], t, sub.occluded.sel(group=groups[0]).values,
                       "occluder" if (i == 0 and j == 0) else None)
            axs[0, j].plot(t, sub.target_angle.sel(group=groups[0]), ":", color="k", lw=1.6,
                           label="target")
            axs[1, j].plot(t, sub.target_velocity.sel(group=groups[0]), ":", color="k", lw=1.6)
            for g in groups:
                c = COLOURS[g]
                axs[0, j].plot(t, sub.eye_angle.sel(group=g), color=c, label=f"eye, {g}")
                axs[1, j].plot(t, sub.eye_velocity.sel(group=g), color=c)
                axs[2, j].plot(t, sub.believed_frequency.sel(group=g), color=c)
            axs[2, j].axhline(2 * np.pi / 32, color="k", ls=":", lw=1.2,
                              label="true frequency" if j == 0 else None)
            axs[0, j].set_title(titles.get(str(sc), str(sc)))
            axs[2, j].set_xlabel("time (ms)")
            for i in range(3):
                axs[i, j].set_xlim(t[0], t[-1])
        axs[0, 0].set_ylabel("angle (deg)")
        axs[1, 0].set_ylabel("velocity (deg/s)")
        axs[2, 0].set_ylabel("believed frequency\n(rad/bin)")
        axs[0, 0].legend(loc="lower left", ncol=2)
        axs[2, 0].legend(loc="lower right")
        fig.suptitle("Smooth pursuit under active inference: control vs schizophrenia "
                     "(level-2 log-precision 4 \u2192 0)")
    return fig


def plot_human(ds: xr.Dataset):
    """Human grand averages vs simulated traces, one cycle, normalised units."""
    from matplotlib.figure import Figure

    from cpsych.models import pursuit as P
    from cpsych.plotting import style

    human = {c: load_human(c) for c in ("fast", "slow")}
    summ = _human_summary()
    # one simulated cycle of the occlusion scenario, trough to trough (bins 24..56), mirrored
    # so that it starts at +1 like the human trials
    b0, b1 = 24, 24 + 32
    sub = ds.sel(scenario="occlusion").isel(time=slice(b0 - 1, b1))
    phase = np.linspace(0, 1, b1 - b0 + 1)
    tg = -sub.target_angle.sel(group="control").values
    amp = np.max(np.abs(tg))
    tv = -sub.target_velocity.sel(group="control").values
    vpk = np.max(np.abs(tv))
    with style():
        fig = Figure(figsize=(10, 5.6), layout="constrained")
        axs = fig.subplots(2, 2, sharex=True, sharey="row")
        h = human["fast"]
        for i in range(2):
            _shade(axs[i, 0], h["phase"], h["occluded"], "occluder" if i == 0 else None)
            _shade(axs[i, 1], phase, sub.occluded.sel(group="control").values,
                   "occluder" if i == 0 else None)
        axs[0, 0].plot(h["phase"], h["target"], ":", color="k", lw=1.6, label="target")
        axs[1, 0].plot(h["phase"], h["target_velocity"], ":", color="k", lw=1.6)
        for c, col in (("fast", "#333333"), ("slow", "#E69F00")):
            g = summ.get((c, "smooth"), (np.nan, np.nan))
            lab = (f"eye, {c} ({human[c]['cycle_ms'] / 1000:.1f} s cycle; "
                   f"gain {g[0]:.2f} / {g[1]:.2f})")
            axs[0, 0].plot(human[c]["phase"], human[c]["eye"], color=col, label=lab)
            axs[1, 0].plot(human[c]["phase"], human[c]["eye_velocity"], color=col)
        axs[0, 1].plot(phase, tg / amp, ":", color="k", lw=1.6, label="target")
        axs[1, 1].plot(phase, tv / vpk, ":", color="k", lw=1.6)
        for g in ("control", "schizophrenia"):
            gv = float(ds.gain_visible.sel(group=g, scenario="occlusion"))
            go = float(ds.gain_occluded.sel(group=g, scenario="occlusion"))
            axs[0, 1].plot(phase, -sub.eye_angle.sel(group=g).values / amp, color=COLOURS[g],
                           label=f"eye, {g} (gain {gv:.2f} / {go:.2f})")
            axs[1, 1].plot(phase, -sub.eye_velocity.sel(group=g).values / vpk, color=COLOURS[g])
        axs[0, 0].set_title("human grand averages (smooth target; SPM12 SPEM data)")
        axs[0, 1].set_title(f"simulation (one cycle = 32 bins = {32 * P.DT_MS:.0f} ms, "
                            "mirrored)")
        axs[0, 0].set_ylabel("position / target amplitude")
        axs[1, 0].set_ylabel("velocity / peak target velocity")
        for ax in axs[1]:
            ax.set_xlabel("phase of the target cycle")
        for j in range(2):  # legends in the empty upper-left of the velocity panels
            hs, ls = axs[0, j].get_legend_handles_labels()
            axs[1, j].legend(hs, ls, loc="upper left", fontsize=7,
                             title="gain visible / occluded", title_fontsize=7)
        axs[0, 0].set_xlim(0, 1)
        fig.suptitle("Pursuit through occlusion: humans (healthy) vs simulated agents; "
                     "time normalised to one target cycle")
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--no-figures", action="store_true", help="write the results only")


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych import cache

    out = Path(args.out)
    ds = run_experiment()
    nc = cpsych.save(ds, out / "pursuit.nc")
    written = [nc]
    if not getattr(args, "no_figures", False):
        # rendered once per result: a rerun copies the files (cpsych.cache.figure)
        for build, stem in ((plot_traces, "pursuit_traces"), (plot_human, "pursuit_human")):
            written += list(cache.figure(functools.partial(build, ds), out / stem, ds,
                                         name=stem))
    tab = ds[list(READOUTS)].to_dataframe()
    print(tab.round(3).to_string())
    for p in written:
        print(f"wrote {p}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
