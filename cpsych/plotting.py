"""Publication figures of inversions and of active inference.

Figures are built on :class:`matplotlib.figure.Figure` objects rendered with the Agg (PNG) and
PDF backends, never through ``pyplot``'s global state, and every figure is drawn inside a local
style context (:func:`style`): importing this module changes no ``rcParams``.

Publication style: journal column widths (:data:`SINGLE_COLUMN_MM`, 89 mm, and
:data:`DOUBLE_COLUMN_MM`, 183 mm; :func:`figure_size`, :func:`figure`), 7-9 pt text, vector PDF
with TrueType fonts embedded (``pdf.fonttype`` 42), the colour-blind-safe Okabe-Ito palette
(:data:`PALETTE`) as the colour cycle, a perceptually uniform colour map for heat maps
(:data:`CMAP`), and time axes in milliseconds wherever a bin has a duration
(:func:`with_time_in_ms`, or the ``bin_ms`` argument of the figure functions).

The standard DEM figure (:func:`plot_inversion`) is assembled from one small function per panel
(:func:`panel_predictions`, :func:`panel_states`, :func:`panel_causes`,
:func:`panel_free_energy`); each takes an ``Axes`` and a results dataset. The
active-inference figure (:func:`plot_active`) reuses them, with action in the last panel.

Examples
--------
>>> ds = cpsych.invert(model, y)                                  # doctest: +SKIP
>>> fig = plot_inversion(ds, truth=cpsych.generate(model, u))     # doctest: +SKIP
>>> save_figure(fig, "results/conv")  # writes conv.pdf and conv.png  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from cycler import cycler
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .results import atomic_path

__all__ = [
    "Z90",
    "PALETTE",
    "CMAP",
    "SINGLE_COLUMN_MM",
    "DOUBLE_COLUMN_MM",
    "STYLE",
    "style",
    "figure_size",
    "figure",
    "time_label",
    "with_time_in_ms",
    "panel_series",
    "panel_predictions",
    "panel_states",
    "panel_causes",
    "panel_free_energy",
    "plot_inversion",
    "plot_active",
    "save_figure",
]

#: Half-width of a two-sided 90 % Gaussian interval in standard deviations.
Z90 = 1.6448536269514722

#: Colour-blind-safe qualitative palette (Okabe & Ito 2008), without yellow.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000")

ERROR_COLOUR = "#C0392B"

#: Colour map for heat maps and phase diagrams: perceptually uniform and readable with any
#: colour-vision deficiency, and in greyscale.
CMAP = "cividis"

#: Journal column widths (Nature, Cell, PLoS and most others): single and double column.
SINGLE_COLUMN_MM = 89.0
DOUBLE_COLUMN_MM = 183.0
MM_PER_INCH = 25.4

#: Local style: applied with ``matplotlib.rc_context`` while drawing and saving only.
STYLE: dict[str, Any] = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "lines.linewidth": 1.4,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "image.cmap": CMAP,
    "pdf.fonttype": 42,  # embed TrueType: text stays editable in the PDF
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "savefig.dpi": 300,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Context manager applying the package's figure style (``rcParams`` restored on exit)."""
    with rc_context(STYLE):
        yield


def figure_size(width: str | float = "double", height: float | None = None, *,
                aspect: float = 0.75) -> tuple[float, float]:
    """A figure size in inches for a journal column.

    Parameters
    ----------
    width : {"single", "double"} or float
        ``"single"`` (89 mm), ``"double"`` (183 mm), or a width in millimetres.
    height : float, optional
        Height in millimetres; default ``aspect`` times the width.
    aspect : float
        Height over width when ``height`` is not given.

    Returns
    -------
    (width, height) in inches, as matplotlib's ``figsize`` expects.
    """
    widths = {"single": SINGLE_COLUMN_MM, "double": DOUBLE_COLUMN_MM}
    if isinstance(width, str):
        if width not in widths:
            raise ValueError(f"width: expected 'single', 'double' or millimetres, got {width!r}")
        w = widths[width]
    else:
        w = float(width)
    h = w * float(aspect) if height is None else float(height)
    if not (np.isfinite(w) and np.isfinite(h) and w > 0 and h > 0):
        raise ValueError(f"width, height: expected positive sizes in mm, got {w}, {h}")
    return w / MM_PER_INCH, h / MM_PER_INCH


def figure(width: str | float = "double", height: float | None = None, *,
           aspect: float = 0.75, **kw: Any) -> Figure:
    """A new :class:`~matplotlib.figure.Figure` of a journal column's width (constrained layout).

    ``width``, ``height`` and ``aspect`` are as in :func:`figure_size`; other keywords go to
    :class:`~matplotlib.figure.Figure`. Draw into it inside :func:`style` and write it with
    :func:`save_figure`, which applies the style again when saving.
    """
    kw.setdefault("layout", "constrained")
    with style():
        return Figure(figsize=figure_size(width, height, aspect=aspect), **kw)


def with_time_in_ms(ds: xr.Dataset, bin_ms: float) -> xr.Dataset:
    """``ds`` with its ``time`` coordinate converted from bins to milliseconds.

    Parameters
    ----------
    ds : Dataset whose ``time`` is in bins (``attrs['units']`` ``"bin"`` or unset).
    bin_ms : duration of one time bin in ms.

    Returns
    -------
    xarray.Dataset
        A copy with ``time`` multiplied by ``bin_ms`` and its units set to ``"ms"``; a dataset
        already in ms is returned unchanged.
    """
    if not (np.isfinite(bin_ms) and bin_ms > 0):
        raise ValueError(f"bin_ms: expected a positive duration in ms, got {bin_ms}")
    units = ds["time"].attrs.get("units", "bin")
    if units == "ms":
        return ds
    if units not in ("bin", "bins", ""):
        raise ValueError(f"ds: time is in {units!r}, not bins; cannot convert to ms")
    attrs = {**ds["time"].attrs, "units": "ms"}
    return ds.assign_coords(time=("time", np.asarray(ds["time"].values, float) * bin_ms, attrs))


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def time_label(ds: xr.Dataset | xr.DataArray) -> str:
    """Axis label for the time coordinate, with its units (``attrs['units']``)."""
    units = ds["time"].attrs.get("units", "") if "time" in ds.coords else ""
    if units == "bin":
        units = "bins"
    return f"time ({units})" if units else "time"


def _truth_array(truth: Any, name: str, like: xr.DataArray) -> np.ndarray | None:
    """The true values of ``name`` as a ``(time, k)`` array shaped like ``like``, or None.

    ``truth`` is a Dataset (from :func:`cpsych.generate`) or a mapping of arrays, each either
    ``(time, k)`` or ``(k, time)`` (SPM's layout); 1-D arrays are taken as one series.
    """
    if truth is None:
        return None
    if isinstance(truth, xr.Dataset):
        if name not in truth:
            return None
        da = truth[name]
        other = [d for d in like.dims if d != "time"]
        if other and other[0] in da.dims and other[0] in like.coords and other[0] in da.coords:
            da = da.sel({other[0]: like[other[0]].values})
        arr = np.asarray(da.transpose("time", ...).values, dtype=float)
    elif isinstance(truth, Mapping):
        if name not in truth or truth[name] is None:
            return None
        arr = np.asarray(truth[name], dtype=float)
    else:
        raise TypeError(f"truth: expected an xarray.Dataset or a mapping, got {type(truth)!r}")
    T, k = like.shape
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape == (T, k):
        return arr
    if arr.shape == (k, T):
        return arr.T
    raise ValueError(f"truth['{name}']: expected shape ({T}, {k}) or ({k}, {T}), got {arr.shape}")


def panel_series(ax: Axes, ds: xr.Dataset, name: str, *, truth: Any = None,
                 var: str | None = None, title: str | None = None, ylabel: str | None = None,
                 z: float = Z90, legend: bool = True, colour_offset: int = 0) -> Axes:
    """Posterior expectations of ``ds[name]`` with shaded intervals and optional true values.

    Parameters
    ----------
    ax : Axes
    ds : Dataset with ``name`` of dims ``(time, k)``.
    name : variable to plot (``"x"``, ``"v"``, or e.g. an action variable).
    truth : Dataset or mapping holding the true ``name``; drawn dashed in the same colour.
    var : variance variable (default ``name + "_var"`` when present; ``""`` for no band); the
        band is ``mean +- z sd``.
    z : half-width of the interval in standard deviations (default: 90 %).
    """
    da = ds[name].transpose("time", ...)
    t = ds["time"].values
    mean = np.asarray(da.values, dtype=float)
    if mean.ndim == 1:
        mean = mean[:, None]
    var = var if var is not None else (f"{name}_var" if f"{name}_var" in ds else None)
    sd = None
    if var:
        sd = np.sqrt(np.clip(np.asarray(ds[var].transpose("time", ...).values, float), 0, None))
        sd = sd.reshape(mean.shape)
    true = _truth_array(truth, name, da if da.ndim == 2 else da.expand_dims("k", -1))
    dim = [d for d in da.dims if d != "time"]
    labels = ([str(s) for s in da[dim[0]].values] if dim and dim[0] in da.coords
              else [f"{name}{i + 1}" for i in range(mean.shape[1])])
    handles = []
    for i in range(mean.shape[1]):
        c = _colour(i + colour_offset)
        (h,) = ax.plot(t, mean[:, i], color=c, label=labels[i], zorder=3)
        handles.append(h)
        if sd is not None:
            ax.fill_between(t, mean[:, i] - z * sd[:, i], mean[:, i] + z * sd[:, i],
                            color=c, alpha=0.18, linewidth=0, zorder=1)
        if true is not None:
            ax.plot(t, true[:, i], color=c, linestyle=(0, (4, 2)), linewidth=1.1, alpha=0.9,
                    zorder=2)
    ax.axhline(0.0, color="0.6", linewidth=0.5, zorder=0)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel(time_label(ds))
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left")
    if legend:
        extra = []
        if sd is not None:
            pct = 100 * (2 * _normal_cdf(z) - 1)
            extra.append(Patch(facecolor="0.5", alpha=0.3, label=f"{pct:.0f}% interval"))
        if true is not None:
            extra.append(Line2D([], [], color="0.3", linestyle=(0, (4, 2)), linewidth=1.1,
                                label="true"))
        ax.legend(handles=handles + extra, loc="best", ncol=2 if len(handles) > 3 else 1)
    return ax


def _normal_cdf(z: float) -> float:
    from math import erf, sqrt

    return 0.5 * (1.0 + erf(z / sqrt(2.0)))


def panel_predictions(ax: Axes, ds: xr.Dataset, *, data: bool = False,
                      title: str = "prediction and error", ylabel: str = "response (a.u.)",
                      legend: bool | str = "upper left") -> Axes:
    """Predictions of the data (solid) and their prediction errors (dotted), per channel.

    ``data=True`` also marks the observed samples ``ds['y']``; ``legend`` is a matplotlib
    legend location, ``True`` (``"best"``) or ``False``.
    """
    t = ds["time"].values
    pred = ds["y_pred"].transpose("time", "channel").values
    err = ds["eps_y"].transpose("time", "channel").values
    names = [str(c) for c in ds["channel"].values]
    handles = []
    for i, nm in enumerate(names):
        c = _colour(i)
        (h,) = ax.plot(t, pred[:, i], color=c, label=nm, zorder=3)
        ax.plot(t, err[:, i], color=c, linestyle=":", linewidth=1.1, zorder=2)
        if data:
            ax.plot(t, ds["y"].transpose("time", "channel").values[:, i], ".", color=c,
                    markersize=2.5, zorder=4)
        handles.append(h)
    ax.axhline(0.0, color="0.6", linewidth=0.5, zorder=0)
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel(time_label(ds))
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    if legend:
        extra = [Line2D([], [], color="0.3", label="prediction"),
                 Line2D([], [], color="0.3", linestyle=":", linewidth=1.1,
                        label="prediction error")]
        if data:
            extra.append(Line2D([], [], color="0.3", marker=".", linestyle="", label="data"))
        if len(handles) > 6:  # too many channels to name
            handles = []
        if legend == "upper left":  # headroom above the traces, so the legend covers none
            rows = -(-(len(handles) + len(extra)) // 3)
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + (0.08 + 0.09 * rows) * (hi - lo))
        ax.legend(handles=handles + extra, loc="best" if legend is True else legend, ncol=3,
                  columnspacing=1.2)
    return ax


def panel_states(ax: Axes, ds: xr.Dataset, truth: Any = None, *,
                 title: str = "hidden states", ylabel: str = "state (a.u.)", **kw) -> Axes:
    """Hidden states ``x`` with 90 % conditional intervals, against the true states if given."""
    return panel_series(ax, ds, "x", truth=truth, title=title, ylabel=ylabel, **kw)


def panel_causes(ax: Axes, ds: xr.Dataset, truth: Any = None, *,
                 title: str = "causes", ylabel: str = "cause (a.u.)", **kw) -> Axes:
    """Causes ``v`` with 90 % conditional intervals, against the true causes if given."""
    return panel_series(ax, ds, "v", truth=truth, title=title, ylabel=ylabel, **kw)


def panel_free_energy(ax: Axes, ds: xr.Dataset, *, title: str = "free energy",
                      ylabel: str = "F (nats)", colour: str = "0.15") -> Axes:
    """Free energy per time bin ``F`` (to minimise), with the free action in the legend."""
    t = ds["time"].values
    F = np.asarray(ds["F"].values, dtype=float)
    units = ds["F"].attrs.get("units", "nats")
    ax.plot(t, F, color=colour, marker="o", markersize=2.5,
            label=f"free action $\\Sigma_t F$ = {F.sum():.4g} {units}")
    ax.set_xlim(t[0], t[-1])
    ax.set_xlabel(time_label(ds))
    ax.set_ylabel(ylabel)
    ax.set_title(title, loc="left")
    ax.legend(loc="best")
    return ax


def _four_axes(ax: Sequence[Axes] | np.ndarray | None) -> tuple[Figure, list[Axes]]:
    """Four Axes to draw into: the given ones (any shape, row-major) or a new 2 x 2 figure."""
    if ax is None:
        fig = Figure(figsize=figure_size("double", aspect=0.75), layout="constrained")
        return fig, list(fig.subplots(2, 2).ravel())
    axes = list(np.asarray(ax, dtype=object).ravel())
    if len(axes) != 4:
        raise ValueError(f"ax: expected 4 Axes, got {len(axes)}")
    return axes[0].figure, axes


def _letter(ax: Axes, letter: str) -> None:
    ax.text(-0.13, 1.06, letter, transform=ax.transAxes, fontsize=11, fontweight="bold",
            va="bottom", ha="left")


def plot_inversion(ds: xr.Dataset, truth: Any = None,
                   ax: Sequence[Axes] | np.ndarray | None = None, *,
                   title: str | None = None, data: bool = False,
                   bin_ms: float | None = None) -> Figure:
    """The standard four-panel DEM figure of an inversion.

    (a) predictions of the data with prediction errors (dotted); (b) hidden states with 90 %
    conditional intervals (shaded, ``1.645 sqrt(x_var)``) and the true states (dashed) when
    ``truth`` is given; (c) causes likewise; (d) free energy per time bin.

    Parameters
    ----------
    ds : Dataset from :func:`cpsych.invert` (or :func:`cpsych.load`).
    truth : Dataset from :func:`cpsych.generate`, or a mapping with ``"x"`` and/or ``"v"``
        arrays of shape ``(time, k)`` or ``(k, time)``.
    ax : four Axes to draw into (any shape, read in row-major order); default: a new
        double-column figure (183 x 137 mm).
    title : figure title (suptitle).
    data : also mark the observed data in panel (a).
    bin_ms : duration of a time bin in ms; time axes are then in ms
        (:func:`with_time_in_ms`).

    Returns
    -------
    matplotlib.figure.Figure
        Save it with :func:`save_figure`.
    """
    if bin_ms is not None:
        ds = with_time_in_ms(ds, bin_ms)
    with style():
        fig, axes = _four_axes(ax)
        panel_predictions(axes[0], ds, data=data)
        panel_states(axes[1], ds, truth)
        panel_causes(axes[2], ds, truth)
        panel_free_energy(axes[3], ds)
        for a, letter in zip(axes, "abcd", strict=True):
            _letter(a, letter)
        if title:
            fig.suptitle(title, fontsize=11)
    return fig


def _overlay_process(ax: Axes, ds: xr.Dataset, var: str, dim: str) -> None:
    """The generative process's true values (black, dashed) over an agent's beliefs."""
    if var not in ds or ds.sizes.get(dim, 0) == 0:
        return
    t = ds["time"].values
    for j, name in enumerate(ds[dim].values):
        ax.plot(t, ds[var].sel({dim: name}).values, color="k", linestyle=(0, (4, 2)),
                linewidth=1.0, zorder=2, label="world" if j == 0 else None)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="best", ncol=2 if len(handles) > 4 else 1)


def plot_active(ds: xr.Dataset, title: str | None = None,
                ax: Sequence[Axes] | np.ndarray | None = None, *,
                bin_ms: float | None = None) -> Figure:
    """The standard four-panel active-inference figure, shared by every paradigm.

    (a) predicted sensations with their prediction errors (dotted); (b) the agent's beliefs
    about hidden states with 90 % intervals, the world's true states dashed in black; (c) its
    beliefs about causes with 90 % intervals, the world's causes dashed; (d) action.

    Parameters
    ----------
    ds : Dataset from :func:`cpsych.simulate`.
    title : figure title.
    ax : four Axes to draw into; default a new double-column figure.
    bin_ms : duration of a time bin in ms; time axes are then in ms.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if bin_ms is not None:
        ds = with_time_in_ms(ds, bin_ms)
    with style():
        fig, axes = _four_axes(ax)
        panel_predictions(axes[0], ds, title="predicted sensations and errors",
                          ylabel="sensation (a.u.)")
        panel_states(axes[1], ds, title="hidden states (beliefs)")
        _overlay_process(axes[1], ds, "x_process", "process_state")
        panel_causes(axes[2], ds, title="causes (beliefs)")
        _overlay_process(axes[2], ds, "v_process", "process_cause")
        panel_series(axes[3], ds, "a", title="action", ylabel="action (a.u.)")
        for a, letter in zip(axes, "abcd", strict=True):
            _letter(a, letter)
        if title:
            fig.suptitle(title, fontsize=11)
    return fig


def _atomic_savefig(fig: Figure, path: Path, fmt: str, **kw) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, **kw)
    return path


def save_figure(fig: Figure, path_stem: str | os.PathLike, dpi: int = 200) -> tuple[Path, Path]:
    """Write ``fig`` as ``<stem>.pdf`` (vector) and ``<stem>.png`` (``dpi``), atomically.

    Each file is written to a temporary file beside its destination and renamed into place,
    so a crash never leaves a truncated figure. A ``.pdf``/``.png`` suffix on ``path_stem``
    is dropped. The PDF carries no creation date, so identical figures give identical files.

    Returns
    -------
    (pdf_path, png_path)
    """
    stem = Path(path_stem)
    if stem.suffix.lower() in (".pdf", ".png"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    pdf = Path(f"{stem}.pdf")
    png = Path(f"{stem}.png")
    with style():
        _atomic_savefig(fig, pdf, "pdf", metadata={"CreationDate": None}, bbox_inches="tight")
        _atomic_savefig(fig, png, "png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return pdf, png
