"""Learning: parameters and log-precisions by descent on free action (the E- and M-steps).

DEM's E-step (parameters ``theta``) and M-step (log-precisions ``h, gamma``) minimise the free
action, the time integral of the Laplace free energy, under Gaussian priors (SPEC 3). cpsych
uses the same generalised-filtering core as inversion: the free action of a filter run is a
differentiable function of every number in the model, so the E- and M-steps become one
quasi-Newton descent (:func:`cpsych.optimise.lbfgs`) on

    A(p) = sum_t F_t(p) + 1/2 (p - p_E)' inv(C_p) (p - p_E),

with ``F_t = L_t + 1/2 ln|H_t|`` the free energy of bin ``t``. The posterior covariance of
``p`` is the inverse Hessian of ``A`` at its minimum (Laplace).

``learn(..., scheme="dem")`` instead iterates SPM's DEM (:func:`cpsych.dem.dem`): a mean-field
posterior over parameters and log-precisions, alternating Gauss-Newton E- and M-steps that
include the states' and parameters' uncertainty, a fixed number of iterations, and SPM's
log-evidence bound ``F`` (not the free action) to accept or reject each step. It reproduces
spm_DEM's estimates number for number (docs/spm.md); the default finds the minimum of the
free action, which spm_DEM approaches only after many more iterations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.flatten_util import ravel_pytree

from . import filtering
from . import validation as val
from .dem import dem
from .hdm import HDM
from .inversion import _check_eta, check_data, filter_dataset, invert
from .optimise import lbfgs

__all__ = ["free_action", "learn", "LearnResult"]


def free_action(model: HDM, y: jax.Array, eta: jax.Array | None = None) -> jax.Array:
    """Free action ``sum_t F_t`` of generalised filtering of ``y`` under ``model``."""
    return jnp.sum(filtering.run(model, y, eta).F)


class LearnResult(NamedTuple):
    """Outcome of :func:`learn`.

    Attributes
    ----------
    params : the posterior expectation of the free parameters (same pytree as the start).
    cov : posterior covariance of the flattened parameters (inverse Hessian).
    sd : posterior standard deviations, same pytree as ``params``.
    history : objective after each iteration.
    posterior : inversion of the data under the learned model (``scheme="dem"``: spm_DEM's
        last D-step, its ``qU``).
    converged : whether the gradient norm fell below the tolerance (``scheme="dem"``:
        whether spm_DEM's convergence test was met).
    F_spm : ``scheme="dem"`` only: spm_DEM's log-evidence bound after each iteration
        (``DEM.F``, SPM's sign; ``history`` is its negative).
    """

    params: Any
    cov: np.ndarray
    sd: Any
    history: np.ndarray
    posterior: xr.Dataset
    converged: bool
    F_spm: np.ndarray | None = None


def learn(build: Callable[[Any], HDM], y: Any, params0: Any, *, prior_mean: Any = None,
          prior_var: Any = 1.0, eta: Any = None, max_iter: int = 100, tol: float = 1e-6,
          scheme: str = "lbfgs", hyper: tuple[str, ...] = (), linear: bool = False
          ) -> LearnResult:
    """Estimate parameters and log-precisions of an HDM from data (E- and M-steps).

    Parameters
    ----------
    build : callable ``params -> HDM``
        Maps the free parameters (any pytree of floats: entries of ``theta``, log-precisions)
        to a model. Must be a pure JAX function of ``params``.
    y : array ``(n_y, T)``
        Data.
    params0 : pytree
        Starting point (also the prior mean unless ``prior_mean`` is given).
    prior_mean, prior_var : pytree or float
        Gaussian prior on the parameters (a float or, for a dict of parameters, a dict of
        variances, each broadcast over its leaf).
    max_iter, tol : iterations of L-BFGS and the gradient-norm tolerance (``scheme="dem"``:
        ``max_iter`` is SPM's ``E.nE``; ``tol`` is unused, spm_DEM's own test applies).
    scheme : {"lbfgs", "dem"}
        ``"lbfgs"``: minimise the free action plus the prior (module docstring). ``"dem"``:
        spm_DEM's E- and M-steps (:func:`cpsych.dem.dem`); ``params0`` must then be a dict.
    hyper : names (keys of ``params0``) of the log-precisions that DEM's M-step estimates
        (``scheme="dem"``); the other keys are parameters (E-step).
    linear : ``scheme="dem"``: SPM's ``E.linear = 1`` (the first E-step is less damped).

    Returns
    -------
    LearnResult
    """
    val.check_callable(build, "build", "build(params) -> HDM")
    val.check_tree_finite(params0, "params0")
    max_iter = val.check_int(max_iter, "max_iter", minimum=1)
    tol = val.check_scalar(tol, "tol", minimum=0.0, strict_min=True)
    val.check_choice(scheme, "scheme", ("lbfgs", "dem"))
    val.check_tree_finite(prior_var, "prior_var")
    if prior_mean is not None:
        val.check_tree_finite(prior_mean, "prior_mean")
    if scheme == "dem":
        return _learn_dem(build, y, params0, prior_mean, prior_var, eta, max_iter, hyper, linear)
    flat0, unravel = ravel_pytree(params0)
    flat0 = jnp.asarray(flat0, dtype=float)
    if prior_mean is not None and (
            jax.tree_util.tree_structure(prior_mean) != jax.tree_util.tree_structure(params0)
            or ravel_pytree(prior_mean)[0].shape != flat0.shape):
        raise ValueError("prior_mean: must have the structure and shapes of params0, got "
                         f"{val.fmt(prior_mean)}")
    model0 = build(params0)
    val.check_type(model0, "build", HDM, "a function returning a cpsych.HDM",
                   fix="build(params0) must return the model")
    model0 = model0.validate()
    y = jnp.asarray(check_data(model0, y))
    if eta is not None:
        _check_eta(model0, eta, y.shape[1])
    pm = flat0 if prior_mean is None else jnp.asarray(ravel_pytree(prior_mean)[0], float)
    if isinstance(prior_var, dict):  # one variance per key, broadcast over its leaf
        prior_var = {k: jnp.broadcast_to(jnp.asarray(prior_var[k], float), jnp.shape(v))
                     for k, v in params0.items()}
        pv = jnp.asarray(ravel_pytree(prior_var)[0], float)
    else:
        if np.ndim(prior_var) not in (0, 1) or np.size(prior_var) not in (1, flat0.size):
            raise ValueError(f"prior_var: expected a scalar or one variance per flattened "
                             f"parameter ({flat0.size}), got {val.fmt(prior_var)}")
        pv = jnp.broadcast_to(jnp.asarray(prior_var, float), flat0.shape)
    if not np.all(np.asarray(pv) > 0):
        raise ValueError(f"prior_var: prior variances must be positive, got {val.fmt(prior_var)}")
    eta_arr = None if eta is None else jnp.asarray(eta, float)

    def objective(p):
        model = build(unravel(p)).validate()
        prior = 0.5 * jnp.sum((p - pm) ** 2 / pv)
        return free_action(model, y, eta_arr) + prior

    res = lbfgs(objective, flat0, max_iter=max_iter, tol=tol)
    p, converged = res.x, res.converged
    H = jax.hessian(objective)(p)
    cov = np.linalg.inv(np.asarray(H))
    params = unravel(p)
    sd = unravel(jnp.sqrt(jnp.clip(jnp.diagonal(jnp.asarray(cov)), 0)))
    posterior = invert(build(params), np.asarray(y), eta)
    posterior.attrs["learned_free_action"] = float(objective(p))
    return LearnResult(params, cov, sd, res.history, posterior, converged)


def _learn_dem(build, y, params0, prior_mean, prior_var, eta, max_iter, hyper, linear
               ) -> LearnResult:
    """:func:`learn` with ``scheme="dem"``: run :func:`cpsych.dem.dem`, label its outcome."""
    res = dem(build, y, params0, hyper=tuple(hyper), prior_mean=prior_mean,
              prior_var=prior_var, eta=eta, n_iter=max_iter, linear=linear)
    flat, unravel = ravel_pytree({k: jnp.asarray(v, float) for k, v in params0.items()})
    index = unravel(jnp.arange(flat.size, dtype=float))
    pick = lambda keys: np.asarray(  # noqa: E731 - positions of a subset in the flat order
        ravel_pytree({k: index[k] for k in keys})[0], dtype=int)
    ip, ih = pick([k for k in params0 if k not in hyper]), pick(list(hyper))
    cov = np.zeros((flat.size, flat.size))
    cov[np.ix_(ip, ip)] = res.cov_p
    cov[np.ix_(ih, ih)] = res.cov_h
    params = {k: res.params[k] for k in params0}
    sd = unravel(jnp.sqrt(jnp.clip(jnp.diagonal(jnp.asarray(cov)), 0)))
    model = build(params).validate()
    y_arr = check_data(model, y)
    posterior = filter_dataset(model, res.states, y_arr, None, "bin",
                               {"scheme": "spm_DEM (last D-step)"})
    posterior.attrs["F_spm_dem"] = float(res.F[-1])
    posterior.attrs["dem_F"] = np.asarray(res.F)
    posterior.attrs["dem_S"] = np.asarray(res.S)
    return LearnResult(params, cov, sd, -np.asarray(res.F), posterior, res.converged,
                       np.asarray(res.F))
