"""Learning: parameters and log-precisions by descent on free action (the E- and M-steps).

DEM's E-step (parameters ``theta``) and M-step (log-precisions ``h, gamma``) minimise the free
action, the time integral of the Laplace free energy, under Gaussian priors (SPEC 3). cpsych
uses the same generalised-filtering core as inversion: the free action of a filter run is a
differentiable function of every number in the model, so the E- and M-steps become one
quasi-Newton descent (:func:`cpsych.optimise.lbfgs`) on

    A(p) = sum_t F_t(p) + 1/2 (p - p_E)' inv(C_p) (p - p_E),

with ``F_t = L_t + 1/2 ln|H_t|`` the free energy of bin ``t``. The posterior covariance of
``p`` is the inverse Hessian of ``A`` at its minimum (Laplace).
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
from .hdm import HDM
from .inversion import check_data, invert
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
    posterior : inversion of the data under the learned model.
    converged : whether the gradient norm fell below the tolerance.
    """

    params: Any
    cov: np.ndarray
    sd: Any
    history: np.ndarray
    posterior: xr.Dataset
    converged: bool


def learn(build: Callable[[Any], HDM], y: Any, params0: Any, *, prior_mean: Any = None,
          prior_var: Any = 1.0, eta: Any = None, max_iter: int = 100, tol: float = 1e-6
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
        Gaussian prior on the parameters (variance broadcast over leaves).
    max_iter, tol : iterations of L-BFGS and the gradient-norm tolerance.

    Returns
    -------
    LearnResult
    """
    flat0, unravel = ravel_pytree(params0)
    flat0 = jnp.asarray(flat0, dtype=float)
    model0 = build(params0).validate()
    y = jnp.asarray(check_data(model0, y))
    pm = flat0 if prior_mean is None else jnp.asarray(ravel_pytree(prior_mean)[0], float)
    pv = jnp.broadcast_to(jnp.asarray(prior_var, float), flat0.shape)
    if not np.all(np.asarray(pv) > 0):
        raise ValueError("prior_var: prior variances must be positive")
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
