"""The standard four-panel active-inference figure, reusable by every paradigm."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

__all__ = ["plot_active"]

Z90 = 1.6449


def _time(ds: xr.Dataset) -> tuple[np.ndarray, str]:
    t = ds["time"]
    return t.values, f"time ({t.attrs.get('units', 'bin')})"


def plot_active(ds: xr.Dataset, title: str | None = None, channels: list[str] | None = None,
                fig: plt.Figure | None = None) -> plt.Figure:
    """Four panels: (a) predictions and prediction errors of sensations, (b) hidden states
    with 90 % intervals against the process's true states, (c) causes with 90 % intervals
    and the process's causes, (d) action.

    Parameters
    ----------
    ds : Dataset from :func:`cpsych.simulate`.
    title : figure title.
    channels : sensory channels to draw in panel (a) (default all).
    """
    fig = fig or plt.figure(figsize=(9, 6.5), layout="constrained")
    axes = fig.subplots(2, 2)
    t, tlabel = _time(ds)
    chans = channels or list(ds["channel"].values)
    ax = axes[0, 0]
    for i, ch in enumerate(chans):
        color = f"C{i % 10}"
        ax.plot(t, ds["y_pred"].sel(channel=ch), color=color, label=str(ch))
        ax.plot(t, ds["eps_y"].sel(channel=ch), color=color, ls=":", lw=1)
    ax.set(title="(a) predicted sensations and errors (dotted)", xlabel=tlabel,
           ylabel="sensation")
    if len(chans) <= 6:
        ax.legend(fontsize=8, frameon=False)
    ax = axes[0, 1]
    for i, st in enumerate(ds["state"].values):
        color = f"C{i % 10}"
        m = ds["x"].sel(state=st).values
        sd = np.sqrt(np.maximum(ds["x_var"].sel(state=st).values, 0))
        ax.fill_between(t, m - Z90 * sd, m + Z90 * sd, color=color, alpha=0.2, lw=0)
        ax.plot(t, m, color=color, label=f"{st} (belief)")
    for j, st in enumerate(ds["process_state"].values):
        ax.plot(t, ds["x_process"].sel(process_state=st), color="k", ls="--", lw=1,
                label="true states" if j == 0 else None)
    ax.set(title="(b) hidden states (90 % intervals)", xlabel=tlabel, ylabel="state")
    ax.legend(fontsize=8, frameon=False)
    ax = axes[1, 0]
    for i, c in enumerate(ds["cause"].values):
        color = f"C{i % 10}"
        m = ds["v"].sel(cause=c).values
        sd = np.sqrt(np.maximum(ds["v_var"].sel(cause=c).values, 0))
        ax.fill_between(t, m - Z90 * sd, m + Z90 * sd, color=color, alpha=0.2, lw=0)
        ax.plot(t, m, color=color, label=f"{c} (belief)")
    for j, c in enumerate(ds["process_cause"].values):
        ax.plot(t, ds["v_process"].sel(process_cause=c), color="k", ls="--", lw=1,
                label="true causes" if j == 0 else None)
    ax.set(title="(c) causes (90 % intervals)", xlabel=tlabel, ylabel="cause")
    ax.legend(fontsize=8, frameon=False)
    ax = axes[1, 1]
    for i, a in enumerate(ds["action"].values):
        ax.plot(t, ds["a"].sel(action=a), color=f"C{i % 10}", label=str(a))
    ax.set(title="(d) action", xlabel=tlabel, ylabel="action")
    ax.legend(fontsize=8, frameon=False)
    for ax in axes.flat:
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fig.suptitle(title)
    return fig
