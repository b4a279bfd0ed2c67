"""``invert``: generalised filtering of data under an HDM, returning labelled results."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import xarray as xr

from . import filtering
from . import validation as val
from .hdm import HDM
from .results import check_finite_result, clean_attrs, time_coord
from .version import __version__

__all__ = ["invert", "check_data"]


def check_data(model: HDM, y: Any, name: str = "y") -> np.ndarray:
    """Validate data against the model before tracing: ``(n_y, T)``, finite."""
    arr = val.check_array(y, name, finite=False)
    if arr.ndim == 1 and model.n_y == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != model.n_y:
        raise ValueError(
            f"{name}: data must have shape (n_y, T) = ({model.n_y}, T) for this model "
            f"(level 1 'g' returns {model.n_y} channels), got shape {arr.shape}"
        )
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: data has no time bins")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: data has non-finite values at (channel, time) "
                         f"{tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])}")
    return arr


def _check_eta(model: HDM, eta: Any, T: int) -> np.ndarray | None:
    if eta is None:
        eta = model.eta
    arr = val.check_array(eta, "eta", ndim=(0, 1, 2))
    if arr.ndim == 2 and arr.shape[1] != T:
        raise ValueError(f"eta: prior time series has {arr.shape[1]} bins but the data has {T}")
    if arr.ndim == 0 or arr.shape[0] != model.n_top:
        raise ValueError(f"eta: expected ({model.n_top},) or ({model.n_top}, {T}), got {arr.shape}")
    return arr


def filter_dataset(model: HDM, out: filtering.FilterOutput, y: np.ndarray, time: Any,
                   time_units: str, attrs: dict[str, Any]) -> xr.Dataset:
    """Wrap stacked :class:`~cpsych.filtering.FilterOutput` as an ``xarray.Dataset``."""
    T = y.shape[1]
    n_y = model.n_y
    o = {k: np.asarray(v) for k, v in out._asdict().items()}
    xs, vs, ys = model.x_names, model.v_names, model.y_names
    coords = {
        "time": time_coord(T, model.dt, time, time_units),
        "state": xs, "state_": xs, "cause": vs, "cause_": vs, "channel": ys,
        "state_level": ("state", np.asarray(model.x_level(), dtype=np.int64)),
        "cause_level": ("cause", np.asarray(model.v_level(), dtype=np.int64)),
    }
    x_var = np.diagonal(o["x_cov"], axis1=1, axis2=2)
    v_var = np.diagonal(o["v_cov"], axis1=1, axis2=2)
    data = {
        "y": (("time", "channel"), y.T, {"long_name": "data"}),
        "x": (("time", "state"), o["x"], {"long_name": "posterior expectation of hidden states"}),
        "x_var": (("time", "state"), x_var, {"long_name": "conditional variance of hidden states"}),
        "x_cov": (("time", "state", "state_"), o["x_cov"],
                  {"long_name": "conditional covariance of hidden states"}),
        "v": (("time", "cause"), o["v"], {"long_name": "posterior expectation of causes"}),
        "v_var": (("time", "cause"), v_var, {"long_name": "conditional variance of causes"}),
        "v_cov": (("time", "cause", "cause_"), o["v_cov"],
                  {"long_name": "conditional covariance of causes"}),
        "y_pred": (("time", "channel"), o["pred"][:, :n_y], {"long_name": "prediction of data"}),
        "eps_y": (("time", "channel"), o["ev"][:, :n_y],
                  {"long_name": "prediction error on data (y - g)"}),
        "v_pred": (("time", "cause"), o["pred"][:, n_y:],
                   {"long_name": "prediction of causes (by the level above, or the prior)"}),
        "eps_v": (("time", "cause"), o["ev"][:, n_y:],
                  {"long_name": "prediction error on causes"}),
        "eps_x": (("time", "state"), o["ex"],
                  {"long_name": "prediction error on the motion of hidden states (x' - f)"}),
        "log_pi_y": (("time", "channel"), o["log_pi_v"][:, :n_y],
                     {"long_name": "sensory log-precision in force"}),
        "F": ("time", o["F"], {"long_name": "free energy per bin, L + 1/2 ln|H| (to minimise)",
                               "units": "nats"}),
        "F_spm_dem": ("time", o["F_dem"], {
            "long_name": "spm_DEM's log-evidence bound accumulated per bin (SPM's sign: "
                         "to maximise; see cpsych.evidence)", "units": "nats"}),
        "F_spm_lap": ("time", o["F_lap"], {
            "long_name": "spm_LAP's log-evidence bound accumulated per bin (SPM's sign: "
                         "to maximise; see cpsych.evidence)", "units": "nats"}),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(clean_attrs({
        "cpsych_version": __version__,
        **{f"model_{k}": v for k, v in model.settings().items()},
        "free_action": float(np.sum(o["F"])),
        "free_energy_sign": "F is the free energy to minimise (SPM reports -F)",
        "F_spm_dem": float(np.sum(o["F_dem"])),
        "F_spm_lap": float(np.sum(o["F_lap"])),
        "model_kappa": float(np.asarray(model.kappa)),
        **attrs,
    }))
    return ds


def invert(model: HDM, y: Any, eta: Any = None, *, time: Any = None, time_units: str = "bin",
           on_divergence: str = "raise") -> xr.Dataset:
    """Invert an HDM on data by generalised filtering (SPEC section 3).

    Parameters
    ----------
    model : HDM
        The generative model; validated here before any tracing.
    y : array, shape (n_y, T)
        Data sampled every ``model.dt``.
    eta : array, optional
        Prior expectation of the top causes, ``(n_top,)`` or ``(n_top, T)``; defaults to
        ``model.eta``.
    time : array of shape (T,), optional
        Values of the time coordinate (default ``arange(T) * dt``) in ``time_units``.
    on_divergence : {"raise", "flag"}
        What to do when the filter produces non-finite values.

    Returns
    -------
    xarray.Dataset
        Posterior expectations ``x``, ``v`` with variances and covariances, predictions
        ``y_pred``, prediction errors ``eps_y``, ``eps_v``, ``eps_x``, the free energy per bin
        ``F`` and settings in ``attrs``. The expectation at bin ``t`` is the one held before
        the update at ``t`` (SPM's convention).
    """
    val.check_type(model, "model", HDM, "a cpsych.HDM")
    val.check_choice(on_divergence, "on_divergence", ("raise", "flag"))
    model = model.validate()
    y = check_data(model, y)
    eta = _check_eta(model, eta, y.shape[1])
    val.check_time(time, y.shape[1])
    out = filtering.run_jit(model, jnp.asarray(y), jnp.asarray(eta))
    ds = filter_dataset(model, out, y, time, time_units, {"scheme": "generalised filtering"})
    return check_finite_result(ds, "inversion", on_divergence)
