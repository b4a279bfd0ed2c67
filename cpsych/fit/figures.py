"""Figures of a hierarchical fit (:mod:`cpsych.fit.hierarchical`), drawn with ArviZ where it
has the plot: traces (``az.plot_trace``), group means and contrasts (``az.plot_forest``),
the posterior predictive against the data per participant, model comparison
(``az.plot_compare``) and parameter recovery.

Every function takes an :class:`arviz.InferenceData` (or a table) and returns a Matplotlib
figure; any number of groups and conditions, one included, is drawn.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["plot_traces", "plot_groups", "plot_predictive", "plot_compare", "plot_recovery"]


def _group_vars(post) -> list[str]:
    from .hierarchical import GROUP_VARS

    return [v for v in GROUP_VARS if v in post]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_traces(idata) -> Any:
    """Traces and marginal densities of the group-level parameters (``az.plot_trace``)."""
    import arviz as az

    from ..plotting import style

    plt = _pyplot()
    names = _group_vars(idata.posterior)
    with style():
        axes = az.plot_trace(idata, var_names=names, compact=True, combined=False,
                             backend_kwargs={"layout": "constrained"},
                             figsize=(10.0, 1.8 * len(names)))
    fig = np.asarray(axes).ravel()[0].figure
    n_div = int(idata.sample_stats["diverging"].sum()) if "sample_stats" in idata.groups() \
        else 0
    fig.suptitle(f"Traces ({idata.posterior.sizes['chain']} chains, {n_div} divergences)")
    plt.close(fig)
    return fig


def plot_groups(idata) -> Any:
    """Group means, group contrasts and condition effects per parameter (90 % and 50 %
    intervals; ``az.plot_forest``)."""
    import arviz as az

    from ..plotting import style

    plt = _pyplot()
    post = idata.posterior
    names = [v for v in ("group_mean", "delta", "beta") if v in post]
    free = [str(p) for p in post["parameter"].values]
    with style():
        fig, axs = plt.subplots(1, len(free), figsize=(4.5 * len(free), 1.0 + 0.5 * sum(
            post[v].size // (post.sizes["chain"] * post.sizes["draw"] * len(free))
            for v in names)), squeeze=False, layout="constrained")
        for k, p in enumerate(free):
            az.plot_forest(idata, var_names=names, coords={"parameter": [p]}, combined=True,
                           hdi_prob=0.9, ax=axs[0, k])
            axs[0, k].set_title(f"{p}", fontsize=10)
    fig.suptitle("Group means, group differences (delta) and condition effects (beta)")
    plt.close(fig)
    return fig


def plot_predictive(idata, max_participants: int = 30, kind: str | None = None) -> Any:
    """Data and the posterior predictive (median, 90 % band) against the design value, one
    panel per participant (the first ``max_participants``), one colour per condition.

    With several kinds of response (``constant_data.kind_of_obs``), the rows of ``kind``
    (default: the first, the data format's response)."""
    from matplotlib.figure import Figure

    from ..plotting import PALETTE, style

    post, const = idata.posterior, idata.constant_data
    resp = next(iter(idata.observed_data.data_vars))
    y = idata.observed_data[resp].values
    pp = idata.posterior_predictive[resp].stack(s=("chain", "draw")).transpose("obs", "s").values
    lo, med, hi = np.quantile(pp, [0.05, 0.5, 0.95], axis=1)
    part = const["participant_of_obs"].values.astype(str)
    cond = const["condition_of_obs"].values.astype(str)
    x = const["x_of_obs"].values
    units = post.attrs.get("response_units", "")
    if "kind_of_obs" in const:
        kinds = str(post.attrs.get("responses", "")).split(",")
        kind = kind or kinds[0]
        if kind in kinds:
            units = str(post.attrs.get("responses_units", "")).split(",")[kinds.index(kind)]
        keep = const["kind_of_obs"].values.astype(str) == kind
        if not keep.any():
            raise ValueError(f"kind: no observations of '{kind}' (the fit has {kinds})")
        y, lo, med, hi, part, cond, x = (a[keep] for a in (y, lo, med, hi, part, cond, x))
        resp = kind
    elif kind not in (None, resp):
        raise ValueError(f"kind: the fit has one kind of response, '{resp}', not '{kind}'")
    people = [str(p) for p in post["participant"].values][:max_participants]
    conds = sorted(set(cond))
    ncol = min(5, len(people))
    nrow = math.ceil(len(people) / ncol)
    with style():
        fig = Figure(figsize=(2.6 * ncol, 2.2 * nrow + 0.6), layout="constrained")
        axs = np.atleast_2d(fig.subplots(nrow, ncol, squeeze=False, sharex=True))
    xlabel = post.attrs.get("design_column") or "row"
    for i, p in enumerate(people):
        ax = axs.ravel()[i]
        for j, c in enumerate(conds):
            sel = (part == p) & (cond == c)
            if not sel.any():
                continue
            col = PALETTE[j % len(PALETTE)]
            xs = np.unique(x[sel])
            band = np.array([[lo[sel][x[sel] == v].mean(), med[sel][x[sel] == v].mean(),
                              hi[sel][x[sel] == v].mean()] for v in xs])
            if xs.size == 1:  # one design value: the band as an error bar
                ax.errorbar(xs + 0.02 * j, band[:, 1], yerr=[band[:, 1] - band[:, 0],
                                                             band[:, 2] - band[:, 1]],
                            fmt="_", ms=10, color=col, lw=1.2, label=f"{c}")
            else:
                ax.fill_between(xs, band[:, 0], band[:, 2], color=col, alpha=0.2, lw=0)
                ax.plot(xs, band[:, 1], color=col, lw=1.2, label=f"{c}")
            ax.plot(x[sel], y[sel], "o", ms=3, color=col)
        ax.set_title(p, fontsize=8)
    for ax in axs.ravel()[len(people):]:
        ax.set_visible(False)
    for ax in axs[-1]:
        ax.set_xlabel(xlabel)
    for ax in axs[:, 0]:
        ax.set_ylabel(f"{resp} ({units})")
    if len(conds) > 1:
        axs[0, 0].legend(frameon=False, fontsize=7)
    fig.suptitle(f"Posterior predictive of {resp} (median, 90 % band) and data, per "
                 "participant")
    return fig


def plot_compare(table) -> Any:
    """PSIS-LOO comparison of :func:`cpsych.fit.hierarchical.compare` (``az.plot_compare``)."""
    import arviz as az

    from ..plotting import style

    plt = _pyplot()
    df = table.set_index("model") if "model" in table.columns else table
    with style():
        fig, ax = plt.subplots(figsize=(7.0, 1.2 + 0.6 * len(df)), layout="constrained")
        az.plot_compare(df, ax=ax, insample_dev=False)
    ax.set_title("PSIS-LOO model comparison (higher elpd is better)")
    plt.close(fig)
    return fig


def plot_recovery(rec) -> Any:
    """True vs recovered parameters (posterior mean, 90 % interval) and the posterior
    correlation between parameters (identifiability)."""
    from matplotlib.figure import Figure

    from ..plotting import PALETTE, style

    free = [str(p) for p in rec["parameter"].values]
    K = len(free)
    with style():
        fig = Figure(figsize=(3.6 * (K + 1), 3.6), layout="constrained")
        axs = fig.subplots(1, K + 1, squeeze=False)[0]
    for k, p in enumerate(free):
        ax = axs[k]
        t = rec["true"].sel(parameter=p).values
        m = rec["mean"].sel(parameter=p).values
        lo, hi = rec["q05"].sel(parameter=p).values, rec["q95"].sel(parameter=p).values
        ax.errorbar(t, m, yerr=[m - lo, hi - m], fmt="o", ms=3.5, lw=0.8, color=PALETTE[k])
        a, b = min(t.min(), lo.min()), max(t.max(), hi.max())
        ax.plot([a, b], [a, b], color="0.5", ls="--", lw=0.8)
        ax.set_xlabel(f"true {p}")
        ax.set_ylabel(f"posterior mean {p} (90 %)")
        ax.set_title(f"r = {float(rec['r'].sel(parameter=p)):.3f}, bias "
                     f"{float(rec['bias'].sel(parameter=p)):+.2f}, coverage "
                     f"{float(rec['coverage90'].sel(parameter=p)):.2f}", fontsize=8)
    ax = axs[K]
    c = rec["posterior_corr"].values
    im = ax.imshow(c, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(K), free)
    ax.set_yticks(range(K), free)
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f"{c[i, j]:.2f}", ha="center", va="center", fontsize=9)
    ax.set_title("mean posterior correlation", fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"Parameter recovery: {rec.attrs.get('paradigm', '')}, "
                 f"{rec.sizes['participant']} participants (direct simulator)")
    return fig
