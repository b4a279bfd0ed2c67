"""Fit the smooth-pursuit paradigm ``pursuit-spem`` to human eye traces (SPM's SPEM data).

Data: the grand-average eye traces of Adams et al. (2015), four conditions (fast / slow x
smooth / noisy target), binned in 32 bins per target cycle into the paradigm's tidy format
(experiments/data/spem_fit/spem_binned.csv, made from the four raw files beside it by
:func:`cpsych.models.spem.write_binned`). The fitted signal is the smooth eye velocity
(saccades removed; target amplitudes per 1/32 cycle): the model's eye has no saccades, and the
gains are properties of velocity.

Model: the paradigm ``pursuit-spem`` (:mod:`cpsych.models.spem`: the pursuit agent of SPEC 5.5
in the experiment's geometry, with the kinetics of SPM's DCM of these data), fitted by the
generic :func:`cpsych.fit.hierarchical.fit`: each condition is a design (the paradigm is
simulated in it), each data row (condition, time) is predicted by the ``eye_velocity``
read-out at that condition and time, simulated directly (no emulator: many parameter
settings make the eye oscillate or run away, which an interpolated grid cannot follow).

Fitted (:data:`FREE`, priors the paradigm's): the log-precisions of the retinal channels (the
sensory precision of the target) and of the level-2 state fluctuations (the precision of the
prior beliefs about the target's motion), the log cause gain ``k_c`` and its hidden-target
change ``k_h``, the target gain ``k_t``, its hidden change ``k_th``, the log damping ``k_d``
and the log target rate ``k_r``; the first four (:data:`SHIFTED`) also shift with the
condition (``beta``: each condition minus fast-smooth, prior N(0, the parameter's prior SD));
and the SD of the eye-velocity residuals. Every other parameter stays at its default.

Inference: multi-start MAP (the prior median, then the best of 8x prior draws screened by the
posterior density; optax L-BFGS, reverse-mode gradients through the four simulations), the
best start kept and Laplace-approximated (``method="map"`` of the generic fit). The loss is
piecewise smooth (the occluder is a hard step in the agent's model), so starts stop in
different local optima: every start's final loss is reported. Residuals of a grand-average
trace are autocorrelated, so the Laplace intervals, which treat the bins as independent, are
optimistic; Hessian eigenvalues below the smallest prior precision (a kink, a saddle, no
convergence) are floored there, and the trace figure then shows no predictive band.

Smooth vs noisy: the posterior of each shifted parameter's noisy-minus-smooth difference, per
speed (:func:`noise_effects`). And (:func:`noisy_profile`, :func:`needed_change`): from the
MAP, each parameter of the paradigm is shifted in every condition (the others held); per
condition, the shift that gives the model the data's visible gain is found. The noisy minus
smooth shift is the noise effect that parameter would need to carry the data's 0.17-0.21
lower visible gain with a noisy target, and the summed change of the -log likelihood there
is its cost.

Writes <out>/fit_pursuit.nc (data, fitted traces, posterior predictive bands, parameters per
condition with 90 % intervals, noise effects, gains of data and fit, the per-start losses and
the profile), the generic fit <out>/fit/ (ArviZ netCDF and summary: ``cpsych compare`` reads
it) and <out>/fit_pursuit_traces, <out>/fit_pursuit_effects, <out>/fit_pursuit_noisy (PDF and
PNG).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # SPEC 8

import argparse  # noqa: E402
import contextlib  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from cpsych.experiments import add_out_argument, module_main  # noqa: E402

__all__ = ["CONDITIONS", "FREE", "SHIFTED", "KINETIC", "REFERENCE", "read_rows", "prepare_data",
           "fit", "condition_values", "traces", "gains", "noise_effects", "noisy_profile",
           "needed_change", "results_dataset", "add_arguments", "run", "main"]

DATA = Path(__file__).parent / "data" / "spem_fit"
BINNED = DATA / "spem_binned.csv"
DEFAULT_OUT = "results/fit_pursuit"
PARADIGM_NAME = "pursuit-spem"
CONDITIONS = ("fast_smooth", "fast_noisy", "slow_smooth", "slow_noisy")  # = spem.CONDITIONS
BINS = 32
KINETIC = ("k_c", "k_h", "k_t", "k_th", "k_d", "k_r")  # = spem.KINETIC
#: Fitted parameters, and those that shift with the condition.
FREE = ("retina", "state2", "k_c", "k_h", "k_t", "k_th", "k_d", "k_r")
SHIFTED = ("retina", "state2", "k_c", "k_h")
REFERENCE = "fast_smooth"  # the reference condition of the condition effects


def _paradigm():
    import cpsych

    return cpsych.paradigm.get(PARADIGM_NAME)


# ----------------------------------------------------------------------------- data
_EXTRA = ("target_position", "target_velocity")


def read_rows(path: str | Path = BINNED) -> xr.Dataset:
    """The binned tidy file's rows, read strictly by :func:`cpsych.fit.data.read_data`."""
    from cpsych.fit.data import read_data

    return read_data(path, _paradigm())


def prepare_data(data: str | Path | xr.Dataset = BINNED) -> xr.Dataset:
    """The binned tidy file (its path, read by :func:`read_rows`, or the rows
    :func:`read_rows` returned) laid out over
    ``(condition, bin)``: ``eye_velocity``, ``target``, ``target_velocity``, ``occluded``,
    ``time_ms`` (NaN where a bin has no row), ``period_ms``.

    Rows are placed by their time: ``time_ms`` must be a bin centre of its condition
    (:func:`cpsych.models.spem.bin_times`). Besides the data format's columns, the file needs
    ``target_position`` and ``target_velocity`` (the gains and figures use them).
    """
    from cpsych.fit.data import DataError
    from cpsych.models import spem

    rows = data if isinstance(data, xr.Dataset) else read_rows(data)
    src = rows.attrs["source"]
    missing = [c for c in _EXTRA if c not in rows]
    if missing:
        raise DataError(src, f"missing numeric column(s) {', '.join(missing)} (the binned "
                             "target, made by cpsych.models.spem.write_binned)")
    if len(set(rows["participant"].values)) != 1:
        raise DataError(src, "expected one participant (the grand average), got "
                             f"{len(set(rows['participant'].values))}", None, "participant")
    shape = (len(CONDITIONS), BINS)
    out = {k: np.full(shape, np.nan) for k in ("eye_velocity", "target", "target_velocity",
                                               "time_ms")}
    for k in range(rows.sizes["obs"]):
        line, c = int(rows["line"][k]), str(rows["condition"].values[k])
        if c not in CONDITIONS:
            raise DataError(src, f"unknown condition '{c}'; choose from "
                                 f"{', '.join(CONDITIONS)}", line, "condition")
        t = float(rows["time_ms"][k])
        centres = spem.bin_times(c)
        b = int(np.argmin(np.abs(centres - t)))
        if abs(centres[b] - t) > 1e-6:
            raise DataError(src, f"{t:g} ms is not a bin centre of {c} (32 bins of "
                                 f"{centres[1] - centres[0]:g} ms from {centres[0]:g} ms)",
                            line, "time_ms")
        i = CONDITIONS.index(c)
        out["eye_velocity"][i, b] = float(rows["eye_velocity"][k])
        out["target"][i, b] = float(rows["target_position"][k])
        out["target_velocity"][i, b] = float(rows["target_velocity"][k])
        out["time_ms"][i, b] = centres[b]
    for i, c in enumerate(CONDITIONS):
        if np.all(np.isnan(out["eye_velocity"][i])):
            raise DataError(src, f"no row of condition '{c}'", None, "condition")
    occ = (out["target"] > spem.OCC_LO) & (out["target"] < spem.OCC_HI)
    vu, amp = spem.VELOCITY_UNIT, "target amplitude (600 px)"
    return xr.Dataset(
        {"eye_velocity": (("condition", "bin"), out["eye_velocity"], {
            "units": vu, "long_name": "smooth eye velocity (saccades removed)"}),
         "target": (("condition", "bin"), out["target"], {"units": amp}),
         "target_velocity": (("condition", "bin"), out["target_velocity"], {"units": vu}),
         "occluded": (("condition", "bin"), occ),
         "time_ms": (("condition", "bin"), out["time_ms"], {"units": "ms"}),
         "period_ms": ("condition", [spem.PERIOD_MS[spem.speed(c)] for c in CONDITIONS],
                       {"units": "ms"})},
        coords={"condition": list(CONDITIONS), "bin": np.arange(BINS)},
        attrs={"source": src, "bins_per_cycle": BINS, "paradigm": PARADIGM_NAME})


# ----------------------------------------------------------------------------- model
def fit(data: str | Path | xr.Dataset = BINNED, free: Sequence[str] = FREE,
        shifted: bool | Sequence[str] = SHIFTED, steps: int = 80, starts: int = 4,
        draws: int = 200, seed: int = 0, progress: bool = False):
    """Multi-start MAP and Laplace of the binned file ``data`` (its path, or the rows
    :func:`read_rows` returned) through the generic fit.

    :func:`cpsych.fit.hierarchical.fit` with the conditions as designs, the direct simulator
    (``emulator=None``), ``method="map"`` (``starts`` L-BFGS starts of ``steps`` iterations,
    ``draws`` Laplace draws), one participant (no group effect) and condition effects on
    ``shifted`` (reference condition :data:`REFERENCE`). Returns its
    :class:`~cpsych.fit.hierarchical.FitResult`; the diagnostics' warnings are in
    ``result.warnings`` (not raised).
    """
    from cpsych.fit.hierarchical import FitWarning
    from cpsych.fit.hierarchical import fit as generic_fit

    par = _paradigm()
    rows = data if isinstance(data, xr.Dataset) else read_rows(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return generic_fit(par, rows, tuple(free), method="map", emulator=None,
                           group_effect=False, condition_effect=shifted,
                           reference_condition=REFERENCE, starts=starts, steps=steps,
                           draws=draws, seed=seed, progress=progress, verbose=False)


def _cells(result, point: Mapping[str, np.ndarray]) -> np.ndarray:
    """Free parameters per condition (:data:`CONDITIONS` order, last axis the parameters)
    from a point (``theta``, ``beta``) of the fit, with any leading draw axes."""
    coded = result.coded
    theta = np.asarray(point["theta"])[..., 0, :]  # the one participant
    K = theta.shape[-1]
    beta = (np.asarray(point["beta"]) if "beta" in point
            else np.zeros((*theta.shape[:-1], len(coded.conditions) - 1, K)))
    shift = np.concatenate([np.zeros((*theta.shape[:-1], 1, K)), beta], axis=-2)
    order = [list(coded.conditions).index(c) for c in CONDITIONS]
    return theta[..., None, :] + shift[..., order, :]


def condition_values(result) -> dict[str, np.ndarray]:
    """Every paradigm parameter per condition, ``{name: (4,)}`` in :data:`CONDITIONS` order:
    the free ones at the MAP (the participant's ``theta`` plus the condition's ``beta``; the
    posterior mean for a fit without a MAP point), the others at the preset."""
    par = _paradigm()
    point = result.mode if result.mode is not None else {
        k: result.idata.posterior[k].mean(("chain", "draw")).values
        for k in ("theta", "beta") if k in result.idata.posterior}
    cells = _cells(result, point)
    values = {k: np.full(len(CONDITIONS), float(v))
              for k, v in par.params(result.attrs.get("preset", "control")).items()}
    for j, name in enumerate(result.free):
        values[name] = cells[:, j]
    return values


def traces(data: xr.Dataset, values: Mapping[str, np.ndarray]) -> np.ndarray:
    """The paradigm's eye velocity at every (condition, bin) of ``data`` (:func:`prepare_data`)
    with per-condition parameter ``values``, ``(4, 32)`` (NaN where a bin has no time)."""
    import jax.numpy as jnp

    design, idx = _layout(data)
    out = _paradigm().simulate({k: jnp.asarray(v, float) for k, v in values.items()}, design,
                               None)
    e = np.asarray(out["eye_velocity"])[idx]
    return np.where(np.isfinite(data["time_ms"].values), e, np.nan)


def _layout(data: xr.Dataset) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """The paradigm design of ``data``'s times (every condition) and the index that takes its
    ``eye_velocity`` read-out ``(condition, time)`` to ``data``'s ``(condition, bin)``."""
    times = np.asarray(data["time_ms"].values)
    grid = np.unique(times[np.isfinite(times)])
    t_idx = np.where(np.isfinite(times), np.searchsorted(grid, np.nan_to_num(times)), 0)
    c_idx = np.broadcast_to(np.arange(len(CONDITIONS))[:, None], times.shape)
    return ({"conditions": CONDITIONS, "times_ms": tuple(float(t) for t in grid)},
            (c_idx, t_idx))


def _cell_draws(result) -> np.ndarray:
    """The free parameters per condition at every posterior draw, ``(draw, condition, K)``."""
    post = result.idata.posterior
    return _cells(result, {k: post[k].values.reshape(-1, *post[k].shape[2:])
                           for k in ("theta", "beta") if k in post})


def noise_effects(result) -> xr.Dataset:
    """Noisy minus smooth value of each free parameter, per speed: at the MAP (``estimate``)
    and over the Laplace draws (``interval90``, ``prob_positive``)."""
    draws = _cell_draws(result)  # (S, 4, K)
    point = _cells(result, result.mode) if result.mode is not None else draws.mean(0)
    idx = {c: CONDITIONS.index(c) for c in CONDITIONS}

    def diff(x, sp):
        return x[..., idx[f"{sp}_noisy"], :] - x[..., idx[f"{sp}_smooth"], :]

    speeds = ("fast", "slow")
    d = np.stack([diff(draws, sp) for sp in speeds], 1)  # (S, speed, K)
    return xr.Dataset(
        {"estimate": (("speed", "parameter"), np.stack([diff(point, sp) for sp in speeds])),
         "interval90": (("speed", "parameter", "bound"),
                        np.moveaxis(np.quantile(d, [0.05, 0.95], axis=0), 0, -1)),
         "prob_positive": (("speed", "parameter"), (d > 0).mean(0))},
        coords={"speed": list(speeds), "parameter": list(result.free),
                "bound": ["lower", "upper"]})


def gains(eye_velocity: np.ndarray, target_velocity: np.ndarray,
          occluded: np.ndarray) -> tuple[float, float]:
    """Pursuit gain while visible / occluded (:func:`cpsych.models.spem.gains`), as floats."""
    from cpsych.models import spem

    g = spem.gains(eye_velocity, target_velocity, occluded)
    return float(g[0]), float(g[1])


def noisy_profile(data: xr.Dataset, values: Mapping[str, np.ndarray], sigma: float,
                  deltas: Sequence[float] = tuple(np.linspace(-3.0, 3.0, 25)),
                  names: Sequence[str] | None = None) -> xr.Dataset:
    """How each parameter sets the visible gain, condition by condition, at the MAP.

    ``values``: every paradigm parameter per condition at the MAP (:func:`condition_values`);
    ``sigma``: the SD of the residuals. Every paradigm parameter in ``names`` (default: all)
    is moved by ``delta`` from its MAP value in each condition (the others held). The
    conditions are simulated independently, so one sweep gives, per condition, the model's
    visible gain (against the data's target velocity, as for the data) and that condition's
    negative log-likelihood. From these, :func:`needed_change` finds the shift of each
    parameter that gives each condition the data's visible gain: the noisy-minus-smooth
    difference of those shifts is the noise effect that parameter would need to carry the
    data's smooth-vs-noisy gain difference.

    Returns over ``(parameter, delta, condition)``: ``gain_visible``, ``gain_occluded`` and
    ``nll`` (change of the condition's negative log-likelihood from the MAP); the data's gains
    (``data_gain_visible``) and the MAP's (``fit_gain_visible``) per condition.
    """
    import jax
    import jax.numpy as jnp

    par = _paradigm()
    names = tuple(names or par.parameter_names)
    dsg, idx = _layout(data)
    eye = jnp.asarray(np.nan_to_num(data["eye_velocity"].values))
    mask = jnp.asarray(np.isfinite(data["eye_velocity"].values), float)
    tv, occ = data["target_velocity"].values, data["occluded"].values
    base = {k: jnp.asarray(v, float) for k, v in values.items()}
    keys = list(base)
    sigma = float(sigma)

    @jax.jit
    def one(i_name, delta):
        vals = {k: v + (i_name == j) * delta for j, (k, v) in enumerate(base.items())}
        e = par.simulate(vals, dsg, None)["eye_velocity"][idx]
        return e, 0.5 * jnp.sum(mask * (eye - e) ** 2, axis=1) / sigma**2

    e0, nll0 = (np.asarray(a) for a in one(-1, 0.0))
    shape = (len(names), len(deltas), len(CONDITIONS))
    gv, go, nll = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for a, name in enumerate(names):
        for b, d in enumerate(deltas):
            e, v = (np.asarray(x) for x in one(keys.index(name), float(d)))
            if not np.all(np.isfinite(e)):
                continue
            g = np.array([gains(e[i], tv[i], occ[i]) for i in range(len(CONDITIONS))])
            gv[a, b], go[a, b], nll[a, b] = g[:, 0], g[:, 1], v - nll0
    g_data = [gains(data["eye_velocity"].values[i], tv[i], occ[i])[0]
              for i in range(len(CONDITIONS))]
    g_fit = [gains(e0[i], tv[i], occ[i])[0] for i in range(len(CONDITIONS))]
    dims = ("parameter", "delta", "condition")
    return xr.Dataset(
        {"gain_visible": (dims, gv, {"units": "1", "long_name": "model visible gain"}),
         "gain_occluded": (dims, go, {"units": "1", "long_name": "model occluded gain"}),
         "nll": (dims, nll, {"long_name": "change of the condition's negative "
                                          "log-likelihood from the MAP"}),
         "data_gain_visible": ("condition", g_data), "fit_gain_visible": ("condition", g_fit)},
        coords={"parameter": list(names), "delta": np.asarray(deltas, float),
                "condition": list(CONDITIONS)},
        attrs={"sigma": sigma})


def _crossing(x: np.ndarray, y: np.ndarray, target: float) -> float:
    """The ``x`` nearest 0 where ``y`` (linear between grid points) equals ``target``."""
    best = np.nan
    for k in range(x.size - 1):
        a, b = y[k] - target, y[k + 1] - target
        if np.isfinite(a) and np.isfinite(b) and a * b <= 0 and a != b:
            xx = x[k] + a / (a - b) * (x[k + 1] - x[k])
            if np.isnan(best) or abs(xx) < abs(best):
                best = float(xx)
    return best


def needed_change(profile: xr.Dataset) -> xr.Dataset:
    """Per parameter: the shift from the MAP giving each condition the data's visible gain
    (NaN where the profiled range does not reach it), the noise effect this implies per speed
    (noisy shift minus smooth shift), and the summed change of the negative log-likelihood
    of the four conditions at those shifts (each condition its own shift)."""
    d = profile["delta"].values
    names = [str(p) for p in profile["parameter"].values]
    shift = np.full((len(names), len(CONDITIONS)), np.nan)
    dnll = np.full_like(shift, np.nan)
    for a, p in enumerate(names):
        for i, c in enumerate(CONDITIONS):
            y = profile["gain_visible"].sel(parameter=p, condition=c).values
            s = _crossing(d, y, float(profile["data_gain_visible"].sel(condition=c)))
            shift[a, i] = s
            if np.isfinite(s):
                dnll[a, i] = np.interp(s, d, profile["nll"].sel(parameter=p, condition=c).values)
    effect = np.stack([shift[:, 1] - shift[:, 0], shift[:, 3] - shift[:, 2]], 1)
    return xr.Dataset(
        {"shift": (("parameter", "condition"), shift),
         "noise_effect": (("parameter", "speed"), effect),
         "nll_change": ("parameter", dnll.sum(1))},
        coords={"parameter": names, "condition": list(CONDITIONS), "speed": ["fast", "slow"]})


# ----------------------------------------------------------------------------- results
def _on_grid(data: xr.Dataset, result, per_obs: np.ndarray) -> np.ndarray:
    """Values per data row (the fit's ``obs``) placed on ``data``'s (condition, bin) grid."""
    cd = result.idata.constant_data
    out = np.full(data["time_ms"].shape, np.nan)
    times = np.nan_to_num(data["time_ms"].values, nan=-1e9)
    for k, (c, t) in enumerate(zip(cd["condition_of_obs"].values, cd["x_of_obs"].values,
                                   strict=True)):
        i = CONDITIONS.index(str(c))
        out[i, int(np.argmin(np.abs(times[i] - t)))] = per_obs[k]
    return out


def results_dataset(data: xr.Dataset, result, profile: xr.Dataset | None = None
                    ) -> xr.Dataset:
    """Data, fit (MAP traces and 90 % posterior predictive bands), the free parameters per
    condition with 90 % Laplace intervals, the noise effects, gains, per-start losses (and
    the noisy profile when given) in one dataset."""
    ds = data.copy()
    units = data["eye_velocity"].attrs["units"]
    values = condition_values(result)
    eye_fit = traces(data, values)
    ds["eye_velocity_fit"] = (("condition", "bin"), eye_fit,
                              {"units": units, "long_name": "fitted eye velocity (MAP)"})
    pp = result.idata.posterior_predictive[result.coded.response].values
    q = np.quantile(pp.reshape(-1, pp.shape[-1]), [0.05, 0.95], axis=0)
    ds["eye_pp_lo"] = (("condition", "bin"), _on_grid(data, result, q[0]),
                       {"long_name": "posterior predictive 5 %"})
    ds["eye_pp_hi"] = (("condition", "bin"), _on_grid(data, result, q[1]),
                       {"long_name": "posterior predictive 95 %"})
    post = result.idata.posterior
    free = list(result.free)
    draws = _cell_draws(result)
    losses = [float(v) for v in str(result.attrs["map_losses"]).split(",")]
    ds = ds.assign_coords(parameter=free, bound=["lower", "upper"], start=np.arange(len(losses)))
    ds["estimate"] = (("condition", "parameter"), np.stack([values[n] for n in free], 1),
                      {"long_name": "MAP (best start)"})
    ds["interval90"] = (("condition", "parameter", "bound"),
                        np.moveaxis(np.quantile(draws, [0.05, 0.95], axis=0), 0, -1),
                        {"long_name": "90 % Laplace interval"})
    ne = noise_effects(result)
    ds = ds.assign_coords(speed=["fast", "slow"])
    ds["noise_effect"] = (("speed", "parameter"), ne["estimate"].values,
                          {"long_name": "noisy minus smooth value at the MAP"})
    ds["noise_effect_interval90"] = (("speed", "parameter", "bound"), ne["interval90"].values)
    ds["sigma_obs"] = ((), float(np.median(post["sigma_obs"].values)),
                       {"units": units, "long_name": "SD of the residuals (median)"})
    ds["start_loss"] = ("start", losses, {
        "long_name": "final negative log posterior of each L-BFGS start"})
    g = np.array([[gains(src[i], ds["target_velocity"].values[i], ds["occluded"].values[i])
                   for i in range(len(CONDITIONS))]
                  for src in (ds["eye_velocity"].values, eye_fit)])  # (source, cond, 2)
    ds = ds.assign_coords(source=["data", "fit"], phase=["visible", "occluded"])
    ds["gain"] = (("source", "condition", "phase"), g, {"units": "1", "long_name": "pursuit gain"})
    ds["retina_log_precision"] = ("condition", values["retina"])
    ds["state2_log_precision"] = ("condition", values["state2"])
    ds = ds.assign_coords(kinetic=list(KINETIC))
    ds["kinetic_parameter"] = (("condition", "kinetic"),
                               np.stack([values[k] for k in KINETIC], 1), {
        "long_name": "agent's level-1 kinetic parameters (log gains, linear k_t)"})
    if profile is not None:
        need = needed_change(profile)
        ds = ds.assign_coords(profile_parameter=profile["parameter"].values,
                              delta=profile["delta"].values, speed=["fast", "slow"])
        for k in ("gain_visible", "gain_occluded", "nll"):
            ds[f"profile_{k}"] = (("profile_parameter", "delta", "condition"),
                                  profile[k].values, dict(profile[k].attrs))
        ds["needed_shift"] = (("profile_parameter", "condition"), need["shift"].values, {
            "long_name": "shift from the MAP giving the condition the data's visible gain"})
        ds["needed_noise_effect"] = (("profile_parameter", "speed"), need["noise_effect"].values,
                                     {"long_name": "noisy minus smooth needed shift"})
        ds["needed_nll_change"] = ("profile_parameter", need["nll_change"].values, {
            "long_name": "change of -log likelihood, every condition at its needed shift"})
    ds.attrs.update({"map_seconds": float(result.attrs["sampling_s"]),
                     "starts": len(losses), "best_start": int(np.argmin(losses)),
                     "map_converged": int(result.attrs.get("map_converged", 0)),
                     "laplace_floored": int(result.attrs.get("laplace_floored", 0)),
                     "paradigm": PARADIGM_NAME, "free": ",".join(free),
                     "condition_effect": str(result.attrs.get("condition_effect", "")),
                     "method": "cpsych.fit.hierarchical.fit, method='map': multi-start optax "
                               "L-BFGS (prior median, then screened prior draws; reverse-mode "
                               "gradients through the paradigm's simulator) + Laplace"})
    return ds


def plot_traces(ds: xr.Dataset):
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 6.4), layout="constrained")
        axs = fig.subplots(2, 2, sharey=True)
    for ax, c in zip(axs.ravel(), CONDITIONS, strict=True):
        d = ds.sel(condition=c)
        t = d["time_ms"].values / 1000
        occ = d["occluded"].values
        for b in np.flatnonzero(occ):
            w = float(d["period_ms"]) / BINS / 1000
            ax.axvspan(t[b] - w / 2, t[b] + w / 2, color="0.9", lw=0)
        ax.plot(t, d["target_velocity"], color="0.4", ls="--", lw=1, label="target")
        if not ds.attrs.get("laplace_floored", 0):
            ax.fill_between(t, d["eye_pp_lo"], d["eye_pp_hi"], color=PALETTE[0], alpha=0.25,
                            label="fit: predictive 90 %")
        ax.plot(t, d["eye_velocity_fit"], color=PALETTE[0], lw=1.5, label="fit (MAP)")
        ax.plot(t, d["eye_velocity"], "o", ms=3, color=PALETTE[1],
                label="human eye (grand average, saccades removed)")
        g = d["gain"]
        gv = [float(g.sel(source=src, phase=ph)) for ph in ("visible", "occluded")
              for src in ("data", "fit")]
        ax.set_title(f"{c.replace('_', ', ')}: gain visible {gv[0]:.2f} (fit {gv[1]:.2f}), "
                     f"occluded {gv[2]:.2f} (fit {gv[3]:.2f})", fontsize=8)
        ax.set_xlabel("time (s)")
    for ax in axs[:, 0]:
        ax.set_ylabel("velocity (target amplitudes / bin)")
    # the axis follows the data, the fit and the target: Laplace draws that make the agent run
    # away would otherwise set it (the band is clipped; its values are in the results)
    seen = np.concatenate([ds[k].values.ravel() for k in
                           ("eye_velocity", "eye_velocity_fit", "target_velocity")])
    lo, hi = np.nanmin(seen), np.nanmax(seen)
    axs[0, 0].set_ylim(lo - 0.3 * (hi - lo), hi + 0.3 * (hi - lo))
    axs[0, 0].legend(frameon=False, fontsize=7, loc="lower left")
    if ds.attrs.get("laplace_floored", 0):
        fig.supxlabel(f"No predictive band: {ds.attrs['laplace_floored']} Hessian eigenvalues "
                      "at the MAP were floored at the prior precision (not a smooth optimum), "
                      "so the Laplace draws are prior-sized there.", fontsize=7)
    fig.suptitle("Smooth pursuit through occlusion: human traces and the fitted active-"
                 "inference agent (grey: occluded)")
    return fig


_LABEL = {"retina": "retina (log-precision)", "state2": "prior, level 2 (log-precision)",
          "k_c": "eye to cause (log gain k_c)", "k_h": "hidden: change of it (k_h)",
          "k_t": "eye to target (gain k_t)", "k_th": "hidden: change of it (k_th)",
          "k_d": "eye damping (log, k_d)", "k_r": "target to cause (log rate, k_r)",
          "proprio": "proprioception (log-precision)", "state1": "level-1 states (log-prec.)",
          "cause2": "level-2 cause (log-precision)", "prior": "frequency prior (log-prec.)"}


def plot_effects(ds: xr.Dataset):
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 5.2), layout="constrained")
        axs = fig.subplots(1, 2, width_ratios=(1.1, 1.0))
    ax = axs[0]
    names = [str(p) for p in ds["parameter"].values]
    step = len(CONDITIONS) + 1.5
    ticks = []
    for k, n in enumerate(names):
        y0 = (len(names) - 1 - k) * step
        ticks.append(y0 + (len(CONDITIONS) - 1) / 2)
        for i, c in enumerate(CONDITIONS):
            yi = y0 + len(CONDITIONS) - 1 - i
            lo, hi = ds["interval90"].sel(parameter=n, condition=c).values
            col = PALETTE[i % len(PALETTE)]
            ax.plot([lo, hi], [yi, yi], color=col, lw=2)
            ax.plot(float(ds["estimate"].sel(parameter=n, condition=c)), yi, "o", color=col,
                    ms=4, label=c.replace("_", ", ") if k == 0 else None)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ticks)
    ax.set_yticklabels([_LABEL.get(n, n) for n in names], fontsize=8)
    ax.set_xlabel("estimate (MAP, 90 % Laplace interval)")
    ax.set_title("fitted parameters per condition", fontsize=9)
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    ax = axs[1]
    x = np.arange(len(CONDITIONS))
    w = 0.2
    for k, (src, ph) in enumerate([("data", "visible"), ("fit", "visible"),
                                   ("data", "occluded"), ("fit", "occluded")]):
        ax.bar(x + (k - 1.5) * w, ds["gain"].sel(source=src, phase=ph), w,
               color=PALETTE[0 if ph == "visible" else 1], alpha=1.0 if src == "data" else 0.45,
               label=f"{ph}, {src}")
    ax.set_xticks(x)
    ax.set_xticklabels([c.replace("_", "\n") for c in CONDITIONS], fontsize=8)
    ax.set_ylabel("pursuit gain")
    ax.set_ylim(0, 1.2)
    ax.legend(frameon=False, fontsize=7, ncol=2, loc="upper right")
    ax.set_title(f"gains: data vs fit (best of {ds.attrs['starts']} starts)")
    return fig


def plot_noisy(ds: xr.Dataset):
    """The profile: each parameter's effect on the visible gain of a smooth and a noisy
    condition, against the data's gains (fast speed left, slow right)."""
    from matplotlib.figure import Figure

    from cpsych.plotting import PALETTE, style

    with style():
        fig = Figure(figsize=(10.0, 4.6), layout="constrained")
        axs = fig.subplots(1, 2, sharey=True)
    d = ds["delta"].values
    for ax, sp in zip(axs, ("fast", "slow"), strict=True):
        for k, p in enumerate(ds["profile_parameter"].values):
            col, ls = PALETTE[k % len(PALETTE)], "-" if k < len(PALETTE) else ":"
            for cond, lw in ((f"{sp}_smooth", 1.8), (f"{sp}_noisy", 0.9)):
                g = ds["profile_gain_visible"].sel(profile_parameter=p, condition=cond)
                ax.plot(d, g, color=col, ls=ls, lw=lw, label=str(p) if lw > 1 else None)
        for cond, ls in ((f"{sp}_smooth", "-"), (f"{sp}_noisy", "--")):
            ax.axhline(float(ds["gain"].sel(source="data", phase="visible", condition=cond)),
                       color="k", ls=ls, lw=1)
        ax.set_title(f"{sp}: data smooth (black line), noisy (dashed); model smooth (thick), "
                     "noisy (thin)", fontsize=8)
        ax.set_xlabel("shift of the parameter from the MAP")
        ax.set_ylim(0.0, 1.5)
    axs[0].set_ylabel("visible pursuit gain")
    axs[0].legend(frameon=False, fontsize=7, ncol=2)
    fig.suptitle("Which parameter sets the visible gain? (one at a time, from the MAP)")
    return fig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out_argument(parser, DEFAULT_OUT)
    parser.add_argument("--data", metavar="CSV", default=str(BINNED),
                        help="binned tidy data (default: the shipped grand averages)")
    parser.add_argument("--steps", type=int, default=80,
                        help="L-BFGS iterations per start (default 80)")
    parser.add_argument("--starts", type=int, default=4,
                        help="L-BFGS starts (the prior median, then screened prior draws); the "
                             "best is kept (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the starts (default 0)")
    parser.add_argument("--draws", type=int, default=200,
                        help="Laplace draws for the intervals and bands (default 200)")
    parser.add_argument("--free", default=",".join(FREE), metavar="NAME[,NAME...]",
                        help=f"fitted parameters (default {','.join(FREE)})")
    parser.add_argument("--condition-effect", default=",".join(SHIFTED),
                        metavar="all|none|NAMES",
                        help=f"parameters that shift with the condition (default "
                             f"{','.join(SHIFTED)})")
    parser.add_argument("--no-profile", action="store_true",
                        help="skip the noisy-condition profile of every parameter")
    parser.add_argument("--no-figures", action="store_true", help="write the results only")


@contextlib.contextmanager
def _quiet_arviz():
    """ArviZ's R-hat and ESS of the one Laplace "chain" are undefined: its log messages and
    runtime warnings about them are silenced here, and only here."""
    import logging

    log = logging.getLogger("arviz")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        log.setLevel(level)


def run(args: argparse.Namespace) -> int:
    import cpsych
    from cpsych.plotting import save_figure

    if args.steps < 1:
        raise ValueError(f"--steps: expected at least 1 L-BFGS iteration, got {args.steps}")
    if args.starts < 1:
        raise ValueError(f"--starts: expected at least 1 start, got {args.starts}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected a non-negative integer, got {args.seed}")
    if args.draws < 10:
        raise ValueError(f"--draws: expected at least 10 Laplace draws, got {args.draws}")
    from cpsych.experiments.fit import condition_effect, parse_free

    par = _paradigm()
    free = parse_free(args.free, par)
    shifted = condition_effect(args.condition_effect, free)
    rows = read_rows(args.data)  # read once; errors name file, line and column
    data = prepare_data(rows)  # before compiling
    print(f"pursuit fit ({PARADIGM_NAME}): free {','.join(free)}; condition effects on "
          f"{args.condition_effect}; {args.starts} starts x {args.steps} L-BFGS iterations",
          flush=True)
    with _quiet_arviz():
        res = fit(rows, free, shifted, steps=args.steps, starts=args.starts,
                  draws=args.draws, seed=args.seed, progress=True)
    values = condition_values(res)
    sigma = float(np.median(res.idata.posterior["sigma_obs"].values))
    profile = None if args.no_profile else noisy_profile(data, values, sigma)
    ds = results_dataset(data, res, profile)
    out = Path(args.out)
    nc = cpsych.save(ds, out / "fit_pursuit.nc")
    res.idata.posterior.attrs["source"] = str(args.data)
    with _quiet_arviz():
        res.save(out / "fit", figures=False)
    figs = [] if args.no_figures else [save_figure(plot_traces(ds), out / "fit_pursuit_traces"),
                                       save_figure(plot_effects(ds), out / "fit_pursuit_effects")]
    if profile is not None and not args.no_figures:
        figs.append(save_figure(plot_noisy(ds), out / "fit_pursuit_noisy"))
    sl = ds["start_loss"].values
    print(f"MAP + Laplace {ds.attrs['map_seconds']:.1f} s, best start "
          f"{ds.attrs['best_start'] + 1}: -log posterior per start "
          f"{', '.join(f'{v:.1f}' for v in sl)} (spread "
          f"{np.ptp(sl[np.isfinite(sl)]) if np.isfinite(sl).any() else np.nan:.1f})")
    for p in free:
        cells = ", ".join(
            f"{float(ds['estimate'].sel(parameter=p, condition=c)):+.2f}" for c in CONDITIONS)
        print(f"  {p:8s} {cells}   ({', '.join(CONDITIONS)})")
    for sp in ("fast", "slow"):
        for p in free:
            lo, hi = ds["noise_effect_interval90"].sel(speed=sp, parameter=p).values
            if hi - lo > 0:
                print(f"  noisy - smooth, {sp}: {p:8s} "
                      f"{float(ds['noise_effect'].sel(speed=sp, parameter=p)):+.2f} "
                      f"[{lo:+.2f}, {hi:+.2f}]")
    for c in CONDITIONS:
        g = ds["gain"].sel(condition=c)
        print(f"  {c:12s} gain visible data {float(g.sel(source='data', phase='visible')):.2f} "
              f"fit {float(g.sel(source='fit', phase='visible')):.2f}; occluded data "
              f"{float(g.sel(source='data', phase='occluded')):.2f} fit "
              f"{float(g.sel(source='fit', phase='occluded')):.2f}")
    if profile is not None:
        need = needed_change(profile)
        g = ds["gain"].sel(source="data", phase="visible").values
        print(f"  visible gain smooth minus noisy: data {g[0] - g[1]:.2f} (fast), "
              f"{g[2] - g[3]:.2f} (slow). Noise effect one parameter would need (noisy minus "
              "smooth shift from the MAP; change of -log likelihood with every condition at "
              "its data gain):")
        for p in need["parameter"].values:
            e = need["noise_effect"].sel(parameter=p).values
            print(f"    {p:8s} fast {e[0]:+.2f}, slow {e[1]:+.2f} "
                  f"({float(need['nll_change'].sel(parameter=p)):+.1f})")
    for w in res.warnings:
        print(f"  note: {w}")
    print(f"  results: {nc} (generic fit: {out / 'fit'})")
    for _pdf, png in figs:
        print(f"  figure:  {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
