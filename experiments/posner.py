"""Attention as precision: the Posner cueing paradigm (SPEC 5.3; Feldman & Friston 2010).

A central cue points left; 417 ms later a target comes on at the cued (valid) or the uncued
(invalid) location. The observer's attention, a hidden state oriented by the cue, raises the
sensory precision of the cued location, so its belief in a validly cued target rises faster
and crosses the decision threshold sooner. Both trial types are simulated with attention
(attention gain 1) and without it (gain 0, the control). Results go to <out>/posner.nc
(netCDF: belief time courses, attention, precision and reaction times per cue), the figure of
belief time courses and reaction times to <out>/posner.png and .pdf, and the four-panel figure
of each trial to <out>/posner_trial_valid and <out>/posner_trial_invalid (.png, .pdf).
"""

from __future__ import annotations

import os

# Single-threaded OpenBLAS (SPEC 8), for ``python -m cpsych.experiments.posner``; the ``cpsych``
# command line sets the same before NumPy or JAX load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import add_out_argument, module_main

__all__ = ["add_arguments", "run", "main", "posner_results", "plot_posner", "plot_trial"]

DEFAULT_OUT = "results/posner"


def posner_results(attention_gain: float = 1.0, threshold: float | None = None,
                   n_bins: int | None = None) -> tuple[xr.Dataset, dict[str, xr.Dataset]]:
    """Simulate valid and invalid trials with attention, and without it (gain 0).

    Returns
    -------
    (results, trials)
        ``results`` has dimensions ``cue`` (valid, invalid) and ``time`` (ms); ``trials`` maps
        each cue to its full simulation (for the four-panel figure).
    """
    from cpsych.models import posner

    threshold = posner.check_threshold(posner.THRESHOLD if threshold is None else threshold)
    n_bins = posner.T_BINS if n_bins is None else n_bins
    trials = {c: posner.simulate_trial(c, attention_gain, threshold=threshold, n_bins=n_bins)
              for c in posner.CUES}
    control = {c: posner.simulate_trial(c, 0.0, threshold=threshold, n_bins=n_bins)
               for c in posner.CUES}
    cues = list(posner.CUES)
    where = {"valid": "left", "invalid": "right"}

    def stack(fn):
        return np.stack([np.asarray(fn(trials[c], c), dtype=float) for c in cues])

    def ch(ds, c):  # the target's channel
        return {"channel": where[c]}

    time = trials["valid"]["time"]
    onset_ms = trials["valid"].attrs["target_onset_ms"]
    rt = np.array([trials[c].attrs["rt_ms"] for c in cues])
    rt0 = np.array([control[c].attrs["rt_ms"] for c in cues])
    ds = xr.Dataset(
        {
            "belief": (("cue", "time"), stack(lambda d, c: d["belief"].values),
                       {"long_name": "belief in the target (posterior expectation of its "
                                     "intensity at its location)",
                        "units": "fraction of target intensity"}),
            "belief_sd": (("cue", "time"),
                          stack(lambda d, c: np.sqrt(d["v_var"].sel(
                              cause=f"target_{where[c]}").values)),
                          {"long_name": "posterior standard deviation of the belief",
                           "units": "fraction of target intensity"}),
            "belief_no_attention": (("cue", "time"), np.stack(
                [control[c]["belief"].values for c in cues]),
                {"long_name": "belief in the target without attention (gain 0)",
                 "units": "fraction of target intensity"}),
            "attention": (("cue", "time"), stack(lambda d, c: d["x"].sel(state="attention")),
                          {"long_name": "posterior expectation of attention "
                                        "(positive: to the cued, left, location)",
                           "units": "a.u."}),
            "log_pi_target": (("cue", "time"), stack(lambda d, c: d["log_pi_y"].sel(ch(d, c))),
                              {"long_name": "sensory log-precision of the target's channel",
                               "units": "log(1/variance)"}),
            "target_sensed": (("cue", "time"), stack(lambda d, c: d["y"].sel(ch(d, c))),
                              {"long_name": "sensed intensity of the target",
                               "units": "fraction of target intensity"}),
            "rt_ms": (("cue",), rt, {"long_name": "reaction time: target onset to belief "
                                                  "crossing the threshold", "units": "ms"}),
            "rt_ms_no_attention": (("cue",), rt0, {"long_name": "reaction time without "
                                                                "attention (gain 0)",
                                                   "units": "ms"}),
        },
        coords={"cue": cues, "time": time},
        attrs={
            "experiment": "posner",
            "paradigm": "Posner cueing: attention as precision (Feldman & Friston 2010)",
            "attention_gain": float(attention_gain),
            "threshold": threshold,
            "threshold_units": "fraction of target intensity",
            "cue_onset_ms": float(time.values[0] + n_bins / 4 * 10.0),
            "target_onset_ms": float(onset_ms),
            "validity_effect_ms": float(rt[1] - rt[0]),
            "validity_effect_no_attention_ms": float(rt0[1] - rt0[0]),
            "bin_ms": 10.0,
            "cpsych_version": trials["valid"].attrs.get("cpsych_version", ""),
        },
    )
    return ds, trials


def _fmt_rt(rt: float) -> str:
    return "miss" if not np.isfinite(rt) else f"{rt:.0f} ms"


def _fmt_diff(ms: float) -> str:
    return "n/a (miss)" if not np.isfinite(ms) else f"{round(ms) + 0} ms"  # + 0: no "-0"


def plot_posner(ds: xr.Dataset):
    """Belief time courses with threshold and RTs; attention; precision; reaction times."""
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    colours = {"valid": PALETTE[0], "invalid": PALETTE[1]}
    t = ds["time"].values
    onset = ds.attrs["target_onset_ms"]
    cue_on = ds.attrs["cue_onset_ms"]
    th = ds.attrs["threshold"]
    with style():
        fig = Figure(figsize=(7.2, 5.6), layout="constrained")
        (a, b), (c, d) = fig.subplots(2, 2)
        # (a) belief in the target
        a.plot(t, ds["target_sensed"].sel(cue="valid"), color="0.55", linestyle=":",
               label="sensed target")
        for cue in ds["cue"].values:
            col = colours[str(cue)]
            a.plot(t, ds["belief"].sel(cue=cue), color=col, label=f"{cue} cue")
            rt = float(ds["rt_ms"].sel(cue=cue))
            if np.isfinite(rt):
                a.axvline(onset + rt, color=col, linewidth=0.8, linestyle="--")
                a.plot([onset + rt], [th], "o", color=col, markersize=4)
                left = cue == "valid"
                a.annotate(f"RT {rt:.0f} ms", (onset + rt, th),
                           xytext=(-5, 5) if left else (5, -12), textcoords="offset points",
                           ha="right" if left else "left",
                           color=col, fontsize=7.5)
        a.axhline(th, color="0.2", linewidth=0.8, linestyle="--", label=f"threshold {th:g}")
        a.axvline(onset, color="0.6", linewidth=0.8, label="target onset")
        a.set_xlim(onset - 100, t[-1])
        a.set_ylim(-0.05, 1.1)
        a.set_xlabel("time (ms)")
        a.set_ylabel("belief (fraction of target)")
        a.set_title("belief in the target", loc="left")
        a.legend(loc="lower right")
        # (b) attention
        for cue in ds["cue"].values:
            col = colours[str(cue)]
            b.plot(t, ds["attention"].sel(cue=cue), color=col, label=f"{cue} cue")
        b.axvspan(cue_on, cue_on + 50, color="0.85", lw=0, label="cue")
        b.axvline(onset, color="0.6", linewidth=0.8, label="target onset")
        b.axhline(0, color="0.6", linewidth=0.5)
        b.set_xlim(t[0], t[-1])
        b.set_xlabel("time (ms)")
        b.set_ylabel("attention to the cued side (a.u.)")
        b.set_title("attention (posterior expectation)", loc="left")
        b.legend(loc="upper left")
        # (c) precision of the target's channel
        for cue in ds["cue"].values:
            c.plot(t, ds["log_pi_target"].sel(cue=cue), color=colours[str(cue)],
                   label=f"{cue} cue")
        c.axhline(2.0, color="0.4", linewidth=0.8, linestyle=":", label="no attention")
        c.axvspan(cue_on, cue_on + 50, color="0.85", lw=0, label="cue")
        c.axvline(onset, color="0.6", linewidth=0.8)
        c.set_xlim(t[0], t[-1])
        c.set_xlabel("time (ms)")
        c.set_ylabel("log-precision")
        c.set_title("sensory precision at the target's location", loc="left")
        c.legend(loc="lower left")
        # (d) reaction times
        x = np.arange(2)
        w = 0.36
        for k, cue in enumerate(ds["cue"].values):
            col = colours[str(cue)]
            vals = [float(ds["rt_ms"].sel(cue=cue)), float(ds["rt_ms_no_attention"].sel(cue=cue))]
            bars = d.bar(x + (k - 0.5) * w, np.nan_to_num(vals), w, color=col,
                         label=f"{cue} cue")
            for bar, v in zip(bars, vals, strict=True):
                d.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 2, _fmt_rt(v),
                       ha="center", va="bottom", fontsize=7.5)
        eff = _fmt_diff(ds.attrs["validity_effect_ms"])
        eff0 = _fmt_diff(ds.attrs["validity_effect_no_attention_ms"])
        d.set_xticks(x, [f"attention (gain {ds.attrs['attention_gain']:g})\n"
                         f"invalid - valid = {eff}",
                         f"no attention (gain 0)\ninvalid - valid = {eff0}"])
        top = np.nanmax(np.concatenate([ds["rt_ms"].values, ds["rt_ms_no_attention"].values]))
        d.set_ylim(0, 1.25 * top if np.isfinite(top) else 1)
        d.set_ylabel("reaction time (ms)")
        d.set_title("reaction times", loc="left")
        d.legend(loc="upper right")
        for ax, letter in zip((a, b, c, d), "abcd", strict=True):
            ax.text(-0.14, 1.04, letter, transform=ax.transAxes, fontsize=11,
                    fontweight="bold", va="bottom")
        fig.suptitle("Posner cueing: attention as sensory precision", fontsize=11)
    return fig


def plot_trial(trial: xr.Dataset, title: str):
    """The four-panel active-inference figure of one trial, adapted to a passive observer.

    Panels (a)-(c) come from :func:`cpsych.plotting.plot_active`: predicted sensations and
    errors, the attention state, and the causes (targets and cue) with 90 % intervals against
    the display. Attention acts only through precision; its interval comes from the expected
    curvature of the log-precisions it sets. The world's states
    (the low-pass-filtered display) are the causes' truth in (c), not attention's, and are
    left out of (b). The observer cannot act, so panel (d) shows the sensory log-precisions in
    force instead of action.
    """
    from cpsych.plotting import panel_series, plot_active, style

    ds = trial.isel(process_state=[])
    fig = plot_active(ds, title=title)
    ax = fig.axes[3]
    ax.clear()
    with style():
        fig.axes[1].set_title("attention state (belief)", loc="left")
        panel_series(ax, ds, "log_pi_y", var="", title="sensory log-precision (set by attention)",
                     ylabel="log-precision")
        ax.text(-0.13, 1.06, "d", transform=ax.transAxes, fontsize=11, fontweight="bold",
                va="bottom", ha="left")
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--threshold", type=float, default=None,
                        help="decision threshold on the belief in the target, in (0, 1) "
                             "(default 0.75)")
    parser.add_argument("--attention-gain", type=float, default=1.0,
                        help="attention's effect on log-precision, 2 +- gain * attention "
                             "(default 1; 0 removes attention)")


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych import cache
    from cpsych.validation import check_scalar

    check_scalar(args.attention_gain, "--attention-gain", fix="e.g. 1 (0 removes attention)")
    out = Path(args.out)
    ds, trials = posner_results(args.attention_gain, args.threshold)
    nc = cpsych.save(ds, out / "posner.nc")
    # rendered once per result: a rerun copies the files (cpsych.cache.figure)
    pdf, png = cache.figure(functools.partial(plot_posner, ds), out / "posner", ds,
                            name="posner")
    figs = []
    for cue, tr in trials.items():
        title = f"Posner trial, {cue} cue (attention gain {args.attention_gain:g})"
        figs.append(cache.figure(functools.partial(plot_trial, tr, title=title),
                                 out / f"posner_trial_{cue}", tr, title,
                                 name="posner-trial")[1])
    rt, rt0 = ds["rt_ms"], ds["rt_ms_no_attention"]
    print(f"Posner cueing: {ds.sizes['time']} bins of 10 ms, threshold "
          f"{ds.attrs['threshold']:g}, attention gain {ds.attrs['attention_gain']:g}")
    print(f"  RT valid {_fmt_rt(float(rt.sel(cue='valid')))}, invalid "
          f"{_fmt_rt(float(rt.sel(cue='invalid')))}: validity effect "
          f"{ds.attrs['validity_effect_ms']:.1f} ms")
    print(f"  without attention (gain 0): valid {_fmt_rt(float(rt0.sel(cue='valid')))}, "
          f"invalid {_fmt_rt(float(rt0.sel(cue='invalid')))}")
    print(f"  results: {nc}")
    print(f"  figure:  {png}")
    print(f"           {pdf}")
    for p in figs:
        print(f"  trial:   {p}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
